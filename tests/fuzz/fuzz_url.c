/* fuzz_url.c - the pure checks on hostile strings in validate.h: url_parse,
 * url_host_is_private, stored_name_check, task_id_valid, utf8_length, each on
 * a NUL-terminated copy of the input.
 *
 * Oracles: what url_parse accepts obeys its contract (scheme, host charset,
 * port range, no userinfo/space/control/backslash, <= 2048 bytes); a host
 * that glibc's inet_aton reads as a private IPv4 address (including legacy
 * forms such as "127.1" or "0x7f.1") is reported private; stored names and
 * task ids are compared against straightforward re-implementations of their
 * one-line specs; utf8_length against a strict RFC 3629 decoder. */
#include "fuzz_check.h"
#include "validate.h"

#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Strict RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF. */
static long ref_utf8_length(const unsigned char *p)
{
    long n = 0;

    while (*p) {
        unsigned c = p[0];
        if (c < 0x80) {
            p += 1;
        } else if (c >= 0xc2 && c <= 0xdf) {
            if ((p[1] & 0xc0) != 0x80)
                return -1;
            p += 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            unsigned lo = c == 0xe0 ? 0xa0 : 0x80;
            unsigned hi = c == 0xed ? 0x9f : 0xbf;
            if (p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80)
                return -1;
            p += 3;
        } else if (c >= 0xf0 && c <= 0xf4) {
            unsigned lo = c == 0xf0 ? 0x90 : 0x80;
            unsigned hi = c == 0xf4 ? 0x8f : 0xbf;
            if (p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
                return -1;
            p += 4;
        } else {
            return -1;
        }
        n++;
    }
    return n;
}

/* "<8>-<4>-<4>-<4>-<12>" lowercase hex, ".", then jpg|png|webp. */
static enum image_type ref_stored_name(const char *s)
{
    size_t len = strlen(s);

    if (len != 40 && len != 41)
        return IMAGE_UNKNOWN;
    for (size_t i = 0; i < 36; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        char c = s[i];
        if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return IMAGE_UNKNOWN;
    }
    if (s[36] != '.')
        return IMAGE_UNKNOWN;
    if (strcmp(s + 37, "jpg") == 0)
        return IMAGE_JPEG;
    if (strcmp(s + 37, "png") == 0)
        return IMAGE_PNG;
    if (strcmp(s + 37, "webp") == 0)
        return IMAGE_WEBP;
    return IMAGE_UNKNOWN;
}

static int ref_task_id(const char *s)
{
    size_t n = strlen(s);

    if (n < 1 || n > 128)
        return 0;
    return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

static int v4_private(uint32_t a)
{
    unsigned b0 = a >> 24;
    unsigned b1 = (a >> 16) & 0xff;

    return b0 == 0 || b0 == 10 || b0 == 127 || (b0 == 169 && b1 == 254) || (b0 == 172 && b1 >= 16 && b1 <= 31) ||
           (b0 == 192 && b1 == 168) || (b0 == 100 && b1 >= 64 && b1 <= 127) || b0 >= 224;
}

#define HOST_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.:_%"

static void check_host(const char *host)
{
    struct in_addr a;
    size_t hl = strlen(host);
    int priv = url_host_is_private(host);

    FUZZ_CHECK(priv == 0 || priv == 1, "url_host_is_private returned %d", priv);
    if (strspn(host, HOST_CHARS) != hl)
        return; /* not something url_parse hands out as a host */
    if (inet_aton(host, &a) == 1 && v4_private(ntohl(a.s_addr)))
        FUZZ_CHECK(priv, "'%s' is a private IPv4 address for the resolver but was judged public", host);
    while (hl > 0 && host[hl - 1] == '.')
        hl--;
    if ((hl == 9 && strncasecmp(host, "localhost", 9) == 0) ||
        (hl > 10 && strncasecmp(host + hl - 10, ".localhost", 10) == 0))
        FUZZ_CHECK(priv, "'%s' is a localhost name but was judged public", host);
}

static void check_url(const char *s)
{
    struct url_parts u;
    const char *after;
    size_t len = strlen(s);

    if (url_parse(s, &u) != 0)
        return;
    FUZZ_CHECK(len <= 2048, "url of %zu bytes accepted", len);
    for (const char *p = s; *p; p++)
        FUZZ_CHECK((unsigned char)*p > 0x20 && *p != 0x7f && *p != '\\', "url with byte 0x%02x accepted",
                   (unsigned char)*p);
    if (strcmp(u.scheme, "http") == 0)
        FUZZ_CHECK(strncasecmp(s, "http://", 7) == 0, "scheme http but url is %s", s);
    else
        FUZZ_CHECK(strcmp(u.scheme, "https") == 0 && strncasecmp(s, "https://", 8) == 0, "scheme '%s'", u.scheme);
    after = s + strlen(u.scheme) + 3;
    FUZZ_CHECK(memchr(after, '@', strcspn(after, "/?#")) == NULL, "userinfo accepted in %s", s);
    FUZZ_CHECK(u.host[0] != '\0', "empty host accepted");
    FUZZ_CHECK(strnlen(u.host, sizeof u.host) < sizeof u.host, "host not terminated");
    for (const char *h = u.host; *h; h++)
        FUZZ_CHECK(strchr("abcdefghijklmnopqrstuvwxyz0123456789-.:_%", *h) != NULL,
                   "host '%s' has byte 0x%02x", u.host, (unsigned char)*h);
    FUZZ_CHECK(u.port <= 65535, "port %u", u.port);
    FUZZ_CHECK(u.path_and_query >= s && u.path_and_query <= s + len, "path_and_query outside the url");
    FUZZ_CHECK(*u.path_and_query == '\0' || strchr("/?#", *u.path_and_query), "path starts with 0x%02x",
               (unsigned char)*u.path_and_query);
    check_host(u.host);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    long got;
    long want;

    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';

    check_url(s);
    check_host(s);
    FUZZ_CHECK(stored_name_check(s) == ref_stored_name(s), "stored_name_check disagrees on '%s'", s);
    FUZZ_CHECK(task_id_valid(s) == ref_task_id(s), "task_id_valid disagrees on '%s'", s);
    got = utf8_length(s);
    want = ref_utf8_length((const unsigned char *)s);
    FUZZ_CHECK(got == want, "utf8_length %ld, strict UTF-8 says %ld", got, want);
    free(s);
    return 0;
}
