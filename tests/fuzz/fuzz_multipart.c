/* fuzz_multipart.c - the whole POST /upload path of the real server.
 *
 * MHD's PostProcessor needs a real connection, so LLVMFuzzerInitialize starts
 * the daemon in-process (built like main.c's cmd_serve: config_load with a
 * fake environment, local storage in a temp UPLOAD_DIR, no rate limits,
 * MIN_FREE_DISK_MB=0) twice: once with the default MAX_UPLOAD_BYTES and once
 * with 4096 so the size limit is hit. Each input is sent to both, as the body
 * of one raw "POST /upload" with a fixed multipart boundary, over loopback.
 *
 * Checks: the status is 200/400/413/415/422/507 and the body is JSON; a 200
 * names a stored file (stored_name_check) that exists, has the announced size
 * and type (JPEG or PNG: the image pipeline re-encodes every upload) and is
 * within KIE's 10 MB; a non-200 leaves nothing in UPLOAD_DIR (no stored file,
 * no ".upload-*" spool). When the body is a strictly well-formed multipart
 * document, an independent parser predicts the status (a file part with an
 * image's magic bytes may decode or not: 200, 413 or 422). Stored files are
 * removed after each request. The image workers run in-process, like the
 * server's. */
#include "app.h"
#include "config.h"
#include "fuzz_check.h"
#include "http.h"
#include "image.h"
#include "imagepool.h"
#include "log.h"
#include "storage.h"
#include "validate.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define BOUNDARY "ppaFuzzBoundary7MA4YWxk"
#define DELIM "--" BOUNDARY
#define SMALL_LIMIT "4096"
#define MAX_ANSWER (256 * 1024)
#define MAX_FILE (16 * 1024 * 1024)

struct server {
    const char *max_bytes;
    char dir[512];
    struct config cfg;
    struct app app;
    int up;
};

/* libFuzzer gives the target no context pointer: the two servers live here,
 * set once in LLVMFuzzerInitialize. */
static struct server g_srv[2];
static char g_base[256];
static const struct server *g_loading; /* the server config_load is reading for */

static const char *fake_env(const char *name)
{
    static const char *const fixed[][2] = {
        {"PORT", "0"},           {"HOST", "127.0.0.1"},      {"MIN_FREE_DISK_MB", "0"},
        {"RATE_LIMIT_UPLOAD", "0"}, {"RATE_LIMIT_GENERATE", "0"}, {"THREAD_POOL_SIZE", "2"},
        {"LOG_LEVEL", "error"},  {"UPLOAD_TTL_HOURS", "0"},  {"CONNECTION_TIMEOUT", "10"},
        {"USE_S3", "0"},
    };
    if (strcmp(name, "UPLOAD_DIR") == 0)
        return g_loading->dir;
    if (strcmp(name, "MAX_UPLOAD_BYTES") == 0)
        return g_loading->max_bytes;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (strcmp(name, fixed[i][0]) == 0)
            return fixed[i][1];
    return NULL;
}

/* ---- files in UPLOAD_DIR ----------------------------------------------------- */

/* Files in `dir` (sub-directories are not looked at): stored files into
 * stored[] (up to 4), counts of stored, spool (".upload-*") and other files. */
struct listing {
    char stored[4][256];
    size_t n_stored;
    size_t n_spool;
    size_t n_other;
};

static void list_dir(const char *dir, struct listing *l)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    memset(l, 0, sizeof *l);
    FUZZ_CHECK(d != NULL, "cannot open %s", dir);
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
            continue; /* the server's own sub-directories (results/) */
        if (strncmp(e->d_name, ".upload-", 8) == 0) {
            l->n_spool++;
        } else if (stored_name_check(e->d_name) != IMAGE_UNKNOWN) {
            if (l->n_stored < 4)
                snprintf(l->stored[l->n_stored], sizeof l->stored[0], "%s", e->d_name);
            l->n_stored++;
        } else {
            l->n_other++;
        }
    }
    closedir(d);
}

static void remove_all(const char *dir, int rmdir_too)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[1024];

    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) != 0 && errno == EISDIR && rmdir_too)
            rmdir(path); /* empty sub-directories, at exit */
    }
    closedir(d);
}

/* Wait (up to 2 s) until no spool file is left: the answer can arrive
 * before MHD's completion callback has run. */
static void wait_no_spool(const char *dir, struct listing *l)
{
    for (int i = 0; i < 2000; i++) {
        list_dir(dir, l);
        if (l->n_spool == 0)
            return;
        usleep(1000);
    }
}

static unsigned char *read_whole(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    unsigned char *p = NULL;
    struct stat st;
    size_t got = 0;

    FUZZ_CHECK(fd >= 0, "stored file %s cannot be opened", path);
    FUZZ_CHECK(fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= MAX_FILE, "stored file %s", path);
    p = malloc((size_t)st.st_size + 1);
    FUZZ_CHECK(p != NULL, "out of memory");
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, p + got, (size_t)st.st_size - got);
        FUZZ_CHECK(n > 0, "reading %s failed", path);
        got += (size_t)n;
    }
    close(fd);
    *len = got;
    return p;
}

/* ---- the reference multipart parser -------------------------------------------- */

/* What a strict RFC 7578 reading of the body says. definite == 0 when the
 * body is not in the plain, unambiguous subset this parser understands
 * (then only the general invariants are checked). */
struct expect {
    int definite;
    size_t n_file;              /* parts named "file" */
    const unsigned char *file;  /* the first one's content */
    size_t file_len;
    const unsigned char *last;  /* the last one's content */
    size_t last_len;
};

static const unsigned char *find(const unsigned char *h, size_t hl, const char *needle)
{
    return memmem(h, hl, needle, strlen(needle));
}

static int starts(const unsigned char *p, const unsigned char *end, const char *s)
{
    size_t n = strlen(s);
    return (size_t)(end - p) >= n && memcmp(p, s, n) == 0;
}

/* A quoted value: 1-100 bytes, printable ASCII except '"' and '\\'. */
static const unsigned char *quoted(const unsigned char *p, const unsigned char *end, const unsigned char **v,
                                   size_t *vl)
{
    const unsigned char *s;

    if (p >= end || *p != '"')
        return NULL;
    s = ++p;
    while (p < end && *p != '"') {
        if (*p < 0x20 || *p > 0x7e || *p == '\\')
            return NULL;
        p++;
    }
    if (p >= end || p == s || p - s > 100)
        return NULL;
    *v = s;
    *vl = (size_t)(p - s);
    return p + 1;
}

/* One header line [p, end) (without CRLF). Sets *is_file for a
 * Content-Disposition naming "file". 0 when understood. */
static int header_line(const unsigned char *p, const unsigned char *end, int *seen_cd, int *seen_ct, int *is_file)
{
    const unsigned char *v;
    size_t vl;

    if (starts(p, end, "Content-Disposition: form-data; name=")) {
        if ((*seen_cd)++)
            return -1;
        p = quoted(p + 37, end, &v, &vl);
        if (!p || find(v, vl, "name") || find(v, vl, ";"))
            return -1;
        *is_file = vl == 4 && memcmp(v, "file", 4) == 0;
        if (p == end)
            return 0;
        if (!starts(p, end, "; filename="))
            return -1;
        p = quoted(p + 11, end, &v, &vl);
        return p == end && !find(v, vl, "name") && !find(v, vl, ";") ? 0 : -1;
    }
    if (starts(p, end, "Content-Type: ")) {
        if ((*seen_ct)++)
            return -1;
        p += 14;
        if (p == end || find(p, (size_t)(end - p), "multipart"))
            return -1; /* MHD parses nested multipart/mixed: out of scope */
        for (; p < end; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '/' || *p == '.' || *p == '+' ||
                  *p == '-'))
                return -1;
        return 0;
    }
    return -1;
}

static void reference_parse(const unsigned char *b, size_t n, struct expect *x)
{
    const unsigned char *end = b + n;
    const unsigned char *p = b;
    size_t delims = 0;

    memset(x, 0, sizeof *x);
    /* the boundary may appear nowhere but in delimiters */
    for (const unsigned char *q = b; (q = find(q, (size_t)(end - q), BOUNDARY)) != NULL; q++)
        delims++;
    if (!starts(p, end, DELIM "\r\n"))
        return;
    p += strlen(DELIM) + 2;
    for (size_t parts = 1;; parts++) {
        int seen_cd = 0, seen_ct = 0, is_file = 0;
        const unsigned char *content;
        const unsigned char *next;

        for (;;) { /* headers */
            const unsigned char *eol = find(p, (size_t)(end - p), "\r\n");
            if (!eol)
                return;
            if (eol == p) {
                p += 2;
                break;
            }
            if (header_line(p, eol, &seen_cd, &seen_ct, &is_file))
                return;
            p = eol + 2;
        }
        if (!seen_cd)
            return;
        content = p;
        next = find(p, (size_t)(end - p), "\r\n" DELIM);
        if (!next)
            return;
        if (is_file) {
            if (x->n_file++ == 0) {
                x->file = content;
                x->file_len = (size_t)(next - content);
            }
            x->last = content;
            x->last_len = (size_t)(next - content);
        }
        p = next + 2 + strlen(DELIM);
        if (starts(p, end, "--")) {
            p += 2;
            if (p != end && !(end - p == 2 && starts(p, end, "\r\n")))
                return;
            x->definite = delims == parts + 1;
            return;
        }
        if (!starts(p, end, "\r\n"))
            return;
        p += 2;
    }
}

/* ---- HTTP over loopback ------------------------------------------------------ */

struct answer {
    unsigned status;
    char *raw;   /* whole answer, NUL-terminated */
    size_t len;
    const char *body;
};

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1; /* the server may answer early and close */
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* libFuzzer's SIGALRM timer can interrupt connect(); the connection then
 * completes asynchronously, so wait for it instead of retrying. */
static int connect_loopback(int fd, const struct sockaddr_in *sa)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT, .revents = 0};
    int soerr = 0;
    socklen_t len = sizeof soerr;

    if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0)
        return 0;
    if (errno != EINTR)
        return -1;
    for (;;) {
        int r = poll(&p, 1, 15000);
        if (r > 0)
            break;
        if (r == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (errno != EINTR)
            return -1;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
        return -1;
    errno = soerr;
    return soerr == 0 ? 0 : -1;
}

/* Complete once the headers and Content-Length bytes of body are in. */
static int answer_complete(const char *raw, size_t len)
{
    const char *eoh = memmem(raw, len, "\r\n\r\n", 4);
    const char *cl;
    unsigned long want;

    if (!eoh)
        return 0;
    cl = strcasestr(raw, "\r\nContent-Length:");
    if (!cl || cl > eoh)
        return 0; /* wait for EOF */
    want = strtoul(cl + 17, NULL, 10);
    return (size_t)(eoh + 4 - raw) + want <= len;
}

static void do_request(const struct server *s, const uint8_t *data, size_t size, struct answer *a)
{
    struct sockaddr_in sa;
    struct timeval tv = {.tv_sec = 15, .tv_usec = 0};
    char head[512];
    int hl;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    size_t cap = 4096;
    int sent;

    memset(a, 0, sizeof *a);
    FUZZ_CHECK(fd >= 0, "socket: %s", strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)s->app.port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    FUZZ_CHECK(connect_loopback(fd, &sa) == 0, "connect: %s", strerror(errno));
    hl = snprintf(head, sizeof head,
                  "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                  "Content-Type: multipart/form-data; boundary=" BOUNDARY "\r\nContent-Length: %zu\r\n\r\n",
                  size);
    sent = send_all(fd, head, (size_t)hl) == 0 && send_all(fd, (const char *)data, size) == 0;
    a->raw = malloc(cap);
    FUZZ_CHECK(a->raw != NULL, "out of memory");
    for (;;) {
        ssize_t n;
        if (a->len + 1 == cap) {
            FUZZ_CHECK(cap < MAX_ANSWER, "answer larger than %d bytes", MAX_ANSWER);
            cap *= 2;
            a->raw = realloc(a->raw, cap);
            FUZZ_CHECK(a->raw != NULL, "out of memory");
        }
        n = recv(fd, a->raw + a->len, cap - 1 - a->len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        FUZZ_CHECK(n >= 0 || errno == ECONNRESET, "no answer within 15 s (%s, body %s)", strerror(errno),
                   sent ? "sent" : "cut short");
        if (n <= 0)
            break;
        a->len += (size_t)n;
        a->raw[a->len] = '\0';
        if (answer_complete(a->raw, a->len))
            break;
    }
    close(fd);
    a->raw[a->len] = '\0';
    FUZZ_CHECK(a->len > 0, "connection closed without an answer (body %s)", sent ? "sent" : "cut short");
    FUZZ_CHECK(sscanf(a->raw, "HTTP/1.1 %3u ", &a->status) == 1, "bad status line: %.80s", a->raw);
    a->body = strstr(a->raw, "\r\n\r\n");
    FUZZ_CHECK(a->body != NULL, "answer without end of headers");
    a->body += 4;
}

/* ---- one request --------------------------------------------------------------- */

static unsigned long long limit_of(const struct server *s)
{
    return (unsigned long long)s->cfg.max_upload_bytes;
}

static int magic_ok(const unsigned char *p, size_t n)
{
    return image_detect(p, n < IMAGE_MAGIC_LEN ? n : IMAGE_MAGIC_LEN) != IMAGE_UNKNOWN;
}

/* The status the strict reading predicts; 0 when it allows more than one. */
static unsigned predict(const struct expect *x, unsigned long long max, unsigned got)
{
    if (x->n_file == 0)
        return 400; /* missing_file */
    if (x->n_file > 1) {
        /* too_many_files once a first file was taken. When the first "file"
         * part is empty (or itself fails) the answer is not pinned down:
         * MHD's iterator cannot tell an empty part from a part whose data
         * has not arrived yet, so an empty "file" part followed by another
         * is accepted as that other one (checked in check_ok). */
        if (x->file_len > 0 && x->file_len <= max && magic_ok(x->file, x->file_len))
            return 400;
        return 0;
    }
    if (x->file_len == 0)
        return 400; /* empty_file */
    if (x->file_len > max) {
        /* a bad magic in the first chunk may be seen before the size */
        if (!magic_ok(x->file, x->file_len) && got == 415)
            return 415;
        return 413;
    }
    /* the right bytes: decoding decides (200, 413 pixels, 422 unreadable) */
    return magic_ok(x->file, x->file_len) ? (got == 200 || got == 413 || got == 422 ? got : 200) : 415;
}

static void check_ok(const struct server *s, const cJSON *j, const uint8_t *data, size_t size,
                     const struct expect *x)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "filename");
    const cJSON *jsize = cJSON_GetObjectItemCaseSensitive(j, "size");
    const cJSON *ctype = cJSON_GetObjectItemCaseSensitive(j, "content_type");
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(j, "url");
    enum image_type t;
    struct listing l;
    char path[1024];
    unsigned char *stored;
    size_t len;

    FUZZ_CHECK(cJSON_IsString(name) && cJSON_IsNumber(jsize) && cJSON_IsString(ctype) && cJSON_IsString(url),
               "200 without filename/size/content_type/url");
    t = stored_name_check(name->valuestring);
    FUZZ_CHECK(t != IMAGE_UNKNOWN, "stored name '%s' is not one the server produces", name->valuestring);
    FUZZ_CHECK(strcmp(ctype->valuestring, image_mime(t)) == 0, "content_type %s for %s", ctype->valuestring,
               name->valuestring);
    wait_no_spool(s->dir, &l);
    FUZZ_CHECK(l.n_spool == 0 && l.n_other == 0, "after 200: %zu spool and %zu other files left in %s", l.n_spool,
               l.n_other, s->dir);
    FUZZ_CHECK(l.n_stored == 1 && strcmp(l.stored[0], name->valuestring) == 0,
               "after 200: %zu stored files, expected only %s", l.n_stored, name->valuestring);
    snprintf(path, sizeof path, "%s/%s", s->dir, name->valuestring);
    stored = read_whole(path, &len);
    FUZZ_CHECK((double)len == jsize->valuedouble, "stored %zu bytes, answer says %.0f", len, jsize->valuedouble);
    FUZZ_CHECK(len > 0 && (long long)len <= IMAGE_KIE_MAX_BYTES, "stored %zu bytes, over KIE's limit", len);
    FUZZ_CHECK(t == IMAGE_JPEG || t == IMAGE_PNG, "stored as %s: the pipeline writes JPEG or PNG", image_mime(t));
    FUZZ_CHECK(image_detect(stored, len < IMAGE_MAGIC_LEN ? len : IMAGE_MAGIC_LEN) == t,
               "stored bytes are not a %s", image_mime(t));
    (void)data;
    (void)size;
    (void)x;
    free(stored);
    unlink(path);
}

static void one(const struct server *s, const uint8_t *data, size_t size, const struct expect *x)
{
    struct answer a;
    cJSON *j;
    struct listing l;
    unsigned want;

    do_request(s, data, size, &a);
    FUZZ_CHECK(a.status == 200 || a.status == 400 || a.status == 413 || a.status == 415 || a.status == 422 ||
                   a.status == 507,
               "status %u (limit %llu): %.300s", a.status, limit_of(s), a.body);
    j = cJSON_Parse(a.body);
    FUZZ_CHECK(cJSON_IsObject(j), "answer %u is not a JSON object: %.300s", a.status, a.body);
    if (x->definite) {
        want = predict(x, limit_of(s), a.status);
        FUZZ_CHECK(want == 0 || want == a.status, "well-formed body (%zu file parts, %zu bytes, limit %llu): "
                   "expected %u, got %u: %.300s", x->n_file, x->file_len, limit_of(s), want, a.status, a.body);
    }
    if (a.status == 200) {
        check_ok(s, j, data, size, x);
    } else {
        const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(err, "code");
        FUZZ_CHECK(cJSON_IsString(code) && code->valuestring[0], "error answer without error.code: %.300s", a.body);
        wait_no_spool(s->dir, &l);
        FUZZ_CHECK(l.n_spool == 0, "after %u %s: %zu spool file(s) left in %s", a.status, code->valuestring,
                   l.n_spool, s->dir);
        FUZZ_CHECK(l.n_stored == 0 && l.n_other == 0, "after %u: %zu stored file(s) in %s", a.status, l.n_stored,
                   s->dir);
    }
    cJSON_Delete(j);
    free(a.raw);
    remove_all(s->dir, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct expect x;

    reference_parse(data, size, &x);
    for (size_t i = 0; i < 2; i++)
        one(&g_srv[i], data, size, &x);
    return 0;
}

/* ---- server start-up ------------------------------------------------------------ */

static void stop_all(void)
{
    for (size_t i = 0; i < 2; i++) {
        struct server *s = &g_srv[i];
        if (!s->up)
            continue;
        imagepool_free(s->app.images);
        MHD_stop_daemon(s->app.daemon);
        storage_close(s->app.store);
        config_free(&s->cfg);
        pthread_mutex_destroy(&s->app.public_lock);
        remove_all(s->dir, 1);
        rmdir(s->dir);
        s->up = 0;
    }
    rmdir(g_base);
}

static void start(struct server *s, const char *max_bytes, const char *sub)
{
    char errors[2048];
    char err[512];

    s->max_bytes = max_bytes;
    snprintf(s->dir, sizeof s->dir, "%s/%s", g_base, sub);
    FUZZ_CHECK(mkdir(s->dir, 0700) == 0, "mkdir %s: %s", s->dir, strerror(errno));
    g_loading = s;
    FUZZ_CHECK(config_load(&s->cfg, NULL, fake_env, errors, sizeof errors) == 0, "config: %s", errors);
    g_loading = NULL;
    memset(&s->app, 0, sizeof s->app);
    pthread_mutex_init(&s->app.public_lock, NULL);
    s->app.cfg = &s->cfg;
    s->app.started = time(NULL);
    s->app.store = storage_open(&s->cfg, NULL, err, sizeof err);
    FUZZ_CHECK(s->app.store != NULL, "storage: %s", err);
    s->app.images = imagepool_new(1, 4, image_lib_thread_done);
    FUZZ_CHECK(s->app.images != NULL, "image workers");
    s->app.daemon = http_start(&s->app, err, sizeof err);
    FUZZ_CHECK(s->app.daemon != NULL, "http_start: %s", err);
    s->up = 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *tmp = getenv("TMPDIR");
    sigset_t alarm_only;
    sigset_t old_mask;

    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    log_setup(LOG_ERROR, 0);
    snprintf(g_base, sizeof g_base, "%s/ppa-fuzz-multipart-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    FUZZ_CHECK(mkdtemp(g_base) != NULL, "mkdtemp: %s", strerror(errno));
    /* The server threads inherit a mask without SIGALRM, so libFuzzer's
     * timer only ever interrupts this thread, whose calls handle EINTR. */
    sigemptyset(&alarm_only);
    sigaddset(&alarm_only, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &alarm_only, &old_mask);
    {
        char err[256];
        FUZZ_CHECK(image_lib_init("fuzz_multipart", 1, err, sizeof err) == 0, "%s", err);
    }
    start(&g_srv[0], "10485760", "default");
    start(&g_srv[1], SMALL_LIMIT, "small");
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    atexit(stop_all);
    return 0;
}
