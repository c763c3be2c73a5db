/* zipstream.c - a stored ZIP archive produced while it is read (see
 * zipstream.h). Layout (PKWARE APPNOTE 6.3.x): per entry a local header with
 * general-purpose bit 3 set (CRC and sizes follow the data), the data, a data
 * descriptor; then the central directory and the end record. */
#include "zipstream.h"

#include "err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define LOCAL_LEN 30u
#define DESC_LEN 16u
#define CENTRAL_LEN 46u
#define END_LEN 22u
#define FLAG_DESCRIPTOR 0x0008u
#define FLAG_UTF8 0x0800u
#define VERSION_NEEDED 20u                /* 2.0: data descriptors */
#define VERSION_MADE_BY (0x0300u | 20u)   /* Unix, 2.0: external attributes are a mode */
#define UNIX_FILE_0644 (0100644u << 16)

struct zentry {
    char *name;
    size_t name_len;
    char *key;           /* file entry: what open() is given */
    unsigned char *data; /* data entry: the bytes */
    uint64_t size;
    uint64_t offset;     /* of the local header */
    uint32_t crc;        /* known once the data went out */
    uint16_t dos_time, dos_date, flags;
};

enum phase { NEXT_ENTRY, DATA_BEGIN, DATA, NEXT_CENTRAL, FINISH, DONE, FAILED };

struct zipstream {
    struct zentry *e;
    size_t n, cap;
    zipstream_open_fn open;
    void *open_arg;
    uint64_t local_bytes;   /* headers, data and descriptors of every entry */
    uint64_t central_bytes; /* the central directory */
    /* reading */
    enum phase phase;
    int started;
    size_t cur;
    int fd;
    uint64_t sent;          /* of the current entry's data */
    uint32_t crc;
    uint64_t pos;           /* archive bytes produced */
    uint64_t central_offset;
    unsigned char hdr[CENTRAL_LEN + ZIPSTREAM_NAME_MAX];
    size_t hdr_len, hdr_off;
    char error[256];
};

static void put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)(v & 0xff);
    p[1] = (unsigned char)((v >> 8) & 0xff);
}

static void put32(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)((v >> (8 * i)) & 0xff);
}

struct zipstream *zipstream_new(size_t max_entries, zipstream_open_fn open, void *open_arg)
{
    struct zipstream *z;

    if (max_entries < 1 || max_entries > ZIPSTREAM_MAX_ENTRIES)
        return NULL;
    z = calloc(1, sizeof *z);
    if (!z)
        return NULL;
    z->e = calloc(max_entries, sizeof *z->e);
    if (!z->e) {
        free(z);
        return NULL;
    }
    z->cap = max_entries;
    z->open = open;
    z->open_arg = open_arg;
    z->fd = -1;
    return z;
}

void zipstream_free(struct zipstream *z)
{
    if (!z)
        return;
    if (z->fd >= 0)
        close(z->fd);
    for (size_t i = 0; i < z->n; i++) {
        free(z->e[i].name);
        free(z->e[i].key);
        free(z->e[i].data);
    }
    free(z->e);
    free(z);
}

/* A relative '/'-separated path without "..", backslashes or control
 * characters; *utf8 = 1 when it has non-ASCII bytes (general-purpose bit 11). */
static int name_ok(const char *name, int *utf8)
{
    size_t n = strlen(name);
    const char *seg = name;

    *utf8 = 0;
    if (n < 1 || n > ZIPSTREAM_NAME_MAX || name[0] == '/' || name[n - 1] == '/')
        return 0;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        if (*p < 0x20 || *p == 0x7f || *p == '\\')
            return 0;
        if (*p >= 0x80)
            *utf8 = 1;
        if (*p == '/' || !p[1]) {
            size_t len = (size_t)((const char *)p - seg) + (*p == '/' ? 0 : 1);
            if (len == 0 || (len == 2 && seg[0] == '.' && seg[1] == '.') || (len == 1 && seg[0] == '.'))
                return 0;
            seg = (const char *)p + 1;
        }
    }
    return 1;
}

static void dos_time(time_t t, uint16_t *tm_out, uint16_t *date_out)
{
    struct tm tm;

    if (!gmtime_r(&t, &tm) || tm.tm_year < 80) {
        *tm_out = 0;
        *date_out = (uint16_t)((1u << 5) | 1u); /* 1980-01-01 */
        return;
    }
    if (tm.tm_year > 80 + 127)
        tm.tm_year = 80 + 127;
    *tm_out = (uint16_t)(((unsigned)tm.tm_hour << 11) | ((unsigned)tm.tm_min << 5) | ((unsigned)tm.tm_sec / 2));
    *date_out = (uint16_t)(((unsigned)(tm.tm_year - 80) << 9) | ((unsigned)(tm.tm_mon + 1) << 5) |
                           (unsigned)tm.tm_mday);
}

static int add(struct zipstream *z, const char *name, const char *key, const void *data, size_t data_len,
               uint64_t size, time_t mtime)
{
    struct zentry *e;
    int utf8;
    size_t n;
    uint64_t cost;

    if (z->started || z->n >= z->cap || !name_ok(name, &utf8))
        return ERR_INVALID;
    n = strlen(name);
    cost = LOCAL_LEN + n + size + DESC_LEN + CENTRAL_LEN + n;
    if (size > ZIPSTREAM_MAX_BYTES || z->local_bytes + z->central_bytes + cost + END_LEN > ZIPSTREAM_MAX_BYTES)
        return ERR_TOO_LARGE;
    e = &z->e[z->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    if (key)
        e->key = strdup(key);
    else if (data_len) {
        e->data = malloc(data_len);
        if (e->data)
            memcpy(e->data, data, data_len);
    }
    if (!e->name || (key && !e->key) || (!key && data_len && !e->data)) {
        free(e->name);
        free(e->key);
        free(e->data);
        memset(e, 0, sizeof *e);
        return ERR_NOMEM;
    }
    e->name_len = n;
    e->size = size;
    e->offset = z->local_bytes;
    e->flags = (uint16_t)(FLAG_DESCRIPTOR | (utf8 ? FLAG_UTF8 : 0u));
    dos_time(mtime, &e->dos_time, &e->dos_date);
    z->local_bytes += LOCAL_LEN + n + size + DESC_LEN;
    z->central_bytes += CENTRAL_LEN + n;
    z->n++;
    return 0;
}

int zipstream_add_file(struct zipstream *z, const char *name, const char *key, uint64_t size, time_t mtime)
{
    if (!key || !z->open)
        return ERR_INVALID;
    return add(z, name, key, NULL, 0, size, mtime);
}

int zipstream_add_data(struct zipstream *z, const char *name, const void *data, size_t len, time_t mtime)
{
    return add(z, name, NULL, data, len, len, mtime);
}

uint64_t zipstream_size(const struct zipstream *z)
{
    return z->local_bytes + z->central_bytes + END_LEN;
}

const char *zipstream_error(const struct zipstream *z)
{
    return z->error;
}

static void set_hdr(struct zipstream *z, size_t len)
{
    z->hdr_len = len;
    z->hdr_off = 0;
}

static void local_header(struct zipstream *z, const struct zentry *e)
{
    unsigned char *p = z->hdr;

    memset(p, 0, LOCAL_LEN);
    put32(p, 0x04034b50u);
    put16(p + 4, VERSION_NEEDED);
    put16(p + 6, e->flags);
    put16(p + 8, 0); /* stored */
    put16(p + 10, e->dos_time);
    put16(p + 12, e->dos_date);
    /* CRC and sizes are 0 here: bit 3, they follow the data */
    put16(p + 26, (unsigned)e->name_len);
    memcpy(p + LOCAL_LEN, e->name, e->name_len);
    set_hdr(z, LOCAL_LEN + e->name_len);
}

static void descriptor(struct zipstream *z, const struct zentry *e)
{
    unsigned char *p = z->hdr;

    put32(p, 0x08074b50u);
    put32(p + 4, e->crc);
    put32(p + 8, e->size);
    put32(p + 12, e->size);
    set_hdr(z, DESC_LEN);
}

static void central_header(struct zipstream *z, const struct zentry *e)
{
    unsigned char *p = z->hdr;

    memset(p, 0, CENTRAL_LEN);
    put32(p, 0x02014b50u);
    put16(p + 4, VERSION_MADE_BY);
    put16(p + 6, VERSION_NEEDED);
    put16(p + 8, e->flags);
    put16(p + 10, 0);
    put16(p + 12, e->dos_time);
    put16(p + 14, e->dos_date);
    put32(p + 16, e->crc);
    put32(p + 20, e->size);
    put32(p + 24, e->size);
    put16(p + 28, (unsigned)e->name_len);
    /* extra, comment, disk, internal attributes: 0 */
    put32(p + 38, UNIX_FILE_0644);
    put32(p + 42, e->offset);
    memcpy(p + CENTRAL_LEN, e->name, e->name_len);
    set_hdr(z, CENTRAL_LEN + e->name_len);
}

static void end_record(struct zipstream *z)
{
    unsigned char *p = z->hdr;

    memset(p, 0, END_LEN);
    put32(p, 0x06054b50u);
    put16(p + 8, (unsigned)z->n);
    put16(p + 10, (unsigned)z->n);
    put32(p + 12, z->central_bytes);
    put32(p + 16, z->central_offset);
    set_hdr(z, END_LEN);
}

static int fail(struct zipstream *z, const char *what, const struct zentry *e)
{
    snprintf(z->error, sizeof z->error, "%s %s: %s", what, e->name, errno ? strerror(errno) : "changed size");
    if (z->fd >= 0)
        close(z->fd);
    z->fd = -1;
    z->phase = FAILED;
    return -1;
}

/* Open the current entry's file and check it still has the promised size. */
static int data_begin(struct zipstream *z, struct zentry *e)
{
    struct stat sb;

    z->sent = 0;
    z->crc = (uint32_t)crc32(0L, Z_NULL, 0);
    if (!e->key)
        return 0;
    errno = 0;
    z->fd = z->open(z->open_arg, e->key);
    if (z->fd < 0)
        return fail(z, "cannot open", e);
    if (fstat(z->fd, &sb))
        return fail(z, "cannot read", e);
    if ((uint64_t)sb.st_size != e->size) {
        errno = 0;
        return fail(z, "cannot send", e);
    }
    return 0;
}

/* Up to `max` bytes of the current entry's data into buf; the count, or -1. */
static ssize_t data_chunk(struct zipstream *z, struct zentry *e, char *buf, size_t max)
{
    uint64_t left = e->size - z->sent;
    size_t want = left < max ? (size_t)left : max;
    ssize_t got;

    if (e->key) {
        errno = 0;
        do
            got = read(z->fd, buf, want);
        while (got < 0 && errno == EINTR);
        if (got <= 0)
            return fail(z, "cannot read", e);
    } else {
        memcpy(buf, e->data + z->sent, want);
        got = (ssize_t)want;
    }
    z->crc = (uint32_t)crc32(z->crc, (const Bytef *)buf, (uInt)got);
    z->sent += (uint64_t)got;
    return got;
}

ssize_t zipstream_read(struct zipstream *z, char *buf, size_t max)
{
    size_t out = 0;

    z->started = 1;
    if (max > 0x40000000u)
        max = 0x40000000u; /* crc32 takes a uInt */
    while (out < max) {
        struct zentry *e = z->cur < z->n ? &z->e[z->cur] : NULL;

        if (z->hdr_off < z->hdr_len) {
            size_t k = z->hdr_len - z->hdr_off;
            if (k > max - out)
                k = max - out;
            memcpy(buf + out, z->hdr + z->hdr_off, k);
            z->hdr_off += k;
            out += k;
            z->pos += k;
            continue;
        }
        switch (z->phase) {
        case NEXT_ENTRY:
            if (!e) {
                z->central_offset = z->pos;
                z->cur = 0;
                z->phase = NEXT_CENTRAL;
                break;
            }
            local_header(z, e);
            z->phase = DATA_BEGIN;
            break;
        case DATA_BEGIN:
            if (data_begin(z, e))
                return out ? (ssize_t)out : -1;
            z->phase = DATA;
            break;
        case DATA:
            if (z->sent == e->size) {
                if (z->fd >= 0)
                    close(z->fd);
                z->fd = -1;
                e->crc = z->crc;
                descriptor(z, e);
                z->cur++;
                z->phase = NEXT_ENTRY;
                break;
            } else {
                ssize_t got = data_chunk(z, e, buf + out, max - out);
                if (got < 0)
                    return out ? (ssize_t)out : -1;
                out += (size_t)got;
                z->pos += (uint64_t)got;
            }
            break;
        case NEXT_CENTRAL:
            if (!e) {
                end_record(z);
                z->phase = FINISH;
                break;
            }
            central_header(z, e);
            z->cur++;
            break;
        case FINISH:
            z->phase = DONE;
            return (ssize_t)out;
        case DONE:
            return (ssize_t)out;
        case FAILED:
            return out ? (ssize_t)out : -1;
        }
    }
    return (ssize_t)out;
}
