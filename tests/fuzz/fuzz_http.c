/* fuzz_http.c - raw bytes into the HTTP front end of the real server.
 *
 * LLVMFuzzerInitialize starts the daemon in-process (built like main.c's
 * cmd_serve: config_load with a fake environment, local storage and the
 * local task store in a temp UPLOAD_DIR, no KIE key, no rate limits). Each
 * input is sent as it is over one loopback connection (request line,
 * headers, chunked bodies, pipelined requests: whatever the bytes are), the
 * write side is shut, and everything the server answers is read until it
 * closes.
 *
 * Checks: the server answers within 15 s and closes; what it sends is a
 * sequence of complete responses, each starting with "HTTP/1.1 <3 digits> "
 * or "HTTP/1.0 <3 digits> ", with a status from 100 to 599; a response to a
 * request with smuggling-prone framing (two Content-Length, Content-Length
 * with Transfer-Encoding, a Transfer-Encoding other than chunked, a header
 * name that is not a token) is a 400 and the last thing on the connection;
 * nothing is left in UPLOAD_DIR but the task store and what the server made
 * itself (stored names), and no ".upload-*" spool file survives the
 * connection. ASan/UBSan catch the rest. */
#include "app.h"
#include "config.h"
#include "fuzz_check.h"
#include "http.h"
#include "image.h"
#include "imagepool.h"
#include "log.h"
#include "storage.h"
#include "taskcache.h"
#include "tasklog.h"
#include "taskstore.h"
#include "validate.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
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

#define MAX_ANSWER (1024 * 1024)

struct server {
    char dir[512];
    struct config cfg;
    struct app app;
    int up;
};

/* libFuzzer gives the target no context pointer. */
static struct server g_srv;
static char g_base[256];

static const char *fake_env(const char *name)
{
    static const char *const fixed[][2] = {
        {"PORT", "0"},           {"HOST", "127.0.0.1"},      {"MIN_FREE_DISK_MB", "0"},
        {"RATE_LIMIT_UPLOAD", "0"}, {"RATE_LIMIT_GENERATE", "0"}, {"RATE_LIMIT_RESULTS", "0"},
        {"THREAD_POOL_SIZE", "2"}, {"LOG_LEVEL", "error"},  {"UPLOAD_TTL_HOURS", "0"},
        {"CONNECTION_TIMEOUT", "5"}, {"UPLOAD_TIMEOUT", "10"}, {"USE_S3", "0"},
        {"MAX_UPLOAD_BYTES", "65536"},
    };
    if (strcmp(name, "UPLOAD_DIR") == 0)
        return g_srv.dir;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (strcmp(name, fixed[i][0]) == 0)
            return fixed[i][1];
    return NULL;
}

/* libFuzzer's SIGALRM timer can interrupt connect(); wait for it then. */
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
        if (r == 0 || errno != EINTR)
            return -1;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
        return -1;
    errno = soerr;
    return soerr == 0 ? 0 : -1;
}

static void send_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* the server may answer early and close */
        p += w;
        n -= (size_t)w;
    }
}

/* Everything the server sends on one connection with `data` as the request bytes. */
static char *exchange(const uint8_t *data, size_t size, size_t *len)
{
    struct sockaddr_in sa;
    struct timeval tv = {.tv_sec = 15, .tv_usec = 0};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    size_t cap = 4096;
    char *raw;

    FUZZ_CHECK(fd >= 0, "socket: %s", strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)g_srv.app.port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    FUZZ_CHECK(connect_loopback(fd, &sa) == 0, "connect: %s", strerror(errno));
    send_all(fd, data, size);
    shutdown(fd, SHUT_WR); /* end of input: an unfinished request is abandoned */
    raw = malloc(cap);
    FUZZ_CHECK(raw != NULL, "out of memory");
    *len = 0;
    for (;;) {
        ssize_t n;
        if (*len + 1 == cap) {
            FUZZ_CHECK(cap < MAX_ANSWER, "answer larger than %d bytes", MAX_ANSWER);
            cap *= 2;
            raw = realloc(raw, cap);
            FUZZ_CHECK(raw != NULL, "out of memory");
        }
        n = recv(fd, raw + *len, cap - 1 - *len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        FUZZ_CHECK(n >= 0 || errno == ECONNRESET, "the server did not close within 15 s (%s)", strerror(errno));
        if (n <= 0)
            break;
        *len += (size_t)n;
    }
    raw[*len] = '\0';
    close(fd);
    return raw;
}

/* "GET|POST|HEAD|OPTIONS /<visible ASCII> HTTP/1.1": a request line
 * libmicrohttpd takes as it is, so our own checks decide. */
static int request_line_ok(const uint8_t *p, size_t n)
{
    static const char *const methods[] = {"GET /", "POST /", "HEAD /", "OPTIONS /"};
    size_t m = 0;
    for (size_t i = 0; i < 4; i++)
        if (n > strlen(methods[i]) && memcmp(p, methods[i], strlen(methods[i])) == 0)
            m = strlen(methods[i]);
    if (!m || n < m + 9 || memcmp(p + n - 9, " HTTP/1.1", 9) != 0)
        return 0;
    for (size_t i = m; i < n - 9; i++)
        if (p[i] <= 0x20 || p[i] > 0x7e)
            return 0;
    return 1;
}

/* The first request's framing is one a proxy could read otherwise. */
static int framing_suspect(const uint8_t *data, size_t size)
{
    const uint8_t *eoh = memmem(data, size, "\r\n\r\n", 4);
    const uint8_t *line;
    int n_cl = 0;
    int n_te = 0;
    int te_chunked = 0;
    int bad_name = 0;

    if (!eoh || eoh - data > 2048 || memchr(data, '\0', (size_t)(eoh - data)))
        return 0; /* libmicrohttpd's own limits and rules answer first */
    line = memmem(data, (size_t)(eoh - data), "\r\n", 2);
    if (!line || !request_line_ok(data, (size_t)(line - data)))
        return 0;
    for (const uint8_t *q = data; q < eoh; q++)
        if (*q == '\n' && (q == data || q[-1] != '\r'))
            return 0; /* a bare LF: libmicrohttpd splits lines its own way */
    while (line && line < eoh) {
        const uint8_t *start = line + 2;
        const uint8_t *end = memmem(start, (size_t)(eoh + 2 - start), "\r\n", 2);
        const uint8_t *colon;
        size_t name_len;
        if (!end)
            break;
        colon = memchr(start, ':', (size_t)(end - start));
        if (!colon || colon == start || *start == ' ' || *start == '\t')
            return 0; /* not a header line, a nameless or a folded one: libmicrohttpd's own rules apply */
        name_len = (size_t)(colon - start);
        for (size_t i = 0; i < name_len; i++)
            if (!strchr("!#$%&'*+-.^_`|~", start[i]) && !((start[i] | 0x20) >= 'a' && (start[i] | 0x20) <= 'z') &&
                !(start[i] >= '0' && start[i] <= '9'))
                bad_name = 1;
        if (name_len == 14 && strncasecmp((const char *)start, "Content-Length", 14) == 0)
            n_cl++;
        if (name_len == 17 && strncasecmp((const char *)start, "Transfer-Encoding", 17) == 0) {
            const uint8_t *v = colon + 1;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            n_te++;
            te_chunked = (size_t)(end - v) == 7 && strncasecmp((const char *)v, "chunked", 7) == 0;
        }
        line = end;
    }
    return bad_name || n_cl > 1 || (n_te && n_cl) || n_te > 1 || (n_te && !te_chunked);
}

/* 1 when the header block at b (through its blank line) repeats the one at
 * a[0..a_len), Date lines aside (a second may pass between the two). */
static int same_header_block(const char *a, size_t a_len, const char *b, const char *end)
{
    const char *a_end = a + a_len;

    while (a < a_end && b < end) {
        const char *ae = memmem(a, (size_t)(a_end - a), "\r\n", 2);
        const char *be = memmem(b, (size_t)(end - b), "\r\n", 2);
        if (!ae || !be)
            return 0;
        if (!(strncasecmp(a, "Date:", 5) == 0 && strncasecmp(b, "Date:", 5) == 0) &&
            ((ae - a) != (be - b) || memcmp(a, b, (size_t)(ae - a)) != 0))
            return 0;
        if (ae == a) /* the blank line: both blocks ended together */
            return 1;
        a = ae + 2;
        b = be + 2;
    }
    return 0;
}

/* Each response: a status line, headers, and Content-Length bytes of body. */
static void check_answer(const char *raw, size_t len, int suspect, int head)
{
    const char *p = raw;
    const char *end = raw + len;
    unsigned first = 0;
    int n = 0;

    while (p < end) {
        unsigned status = 0;
        const char *eoh;
        const char *cl;
        unsigned long body;
        FUZZ_CHECK((strncmp(p, "HTTP/1.1 ", 9) == 0 || strncmp(p, "HTTP/1.0 ", 9) == 0) &&
                       sscanf(p + 9, "%3u", &status) == 1 && status >= 100 && status <= 599,
                   "response %d does not start with a status line: %.80s", n, p);
        eoh = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (!eoh)
            break; /* cut off by a close: allowed only at the end */
        cl = strcasestr(p, "\r\nContent-Length:");
        if (!cl || cl > eoh)
            break; /* body until close */
        body = strtoul(cl + 17, NULL, 10);
        if (n == 0)
            first = status;
        n++;
        if (same_header_block(p, (size_t)(eoh + 4 - p), eoh + 4, end)) {
            /* libmicrohttpd 0.9.75 repeats the header block of its own error
             * responses (e.g. an invalid Content-Length): one response, then
             * close. (The answer to a HEAD is followed by the next answer, which
             * may have the same status: only an identical block is a repeat.) */
            FUZZ_CHECK(status >= 400 && strcasestr(p, "\r\nConnection: close\r\n") &&
                           strcasestr(p, "\r\nConnection: close\r\n") < eoh,
                       "a repeated header block that is not libmicrohttpd's closing error: %.80s", p);
            if (n == 1 && suspect)
                FUZZ_CHECK(status == 400, "smuggling-prone framing answered %u", status);
            return;
        }
        if (head && (eoh + 4 == end || strncmp(eoh + 4, "HTTP/1.", 7) == 0))
            body = 0; /* the answer to a HEAD: headers only */
        FUZZ_CHECK((size_t)(end - (eoh + 4)) >= body, "response %d shorter than its Content-Length", n);
        p = eoh + 4 + body;
        if (n == 1 && suspect) {
            FUZZ_CHECK(first == 400, "smuggling-prone framing answered %u", first);
            FUZZ_CHECK(p == end, "something answered after the 400 for smuggling-prone framing");
        }
    }
}

static void check_dir(void)
{
    DIR *d;
    struct dirent *e;

    for (int tries = 0; tries < 200; tries++) { /* the spool goes with the connection, within a second */
        int spool = 0;
        d = opendir(g_srv.dir);
        FUZZ_CHECK(d != NULL, "opendir");
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
                continue;
            if (strncmp(e->d_name, ".upload-", 8) == 0) {
                spool = 1;
                continue;
            }
            FUZZ_CHECK(strcmp(e->d_name, "results") == 0 || strncmp(e->d_name, "tasks.db", 8) == 0 ||
                           strcmp(e->d_name, ".results-secret") == 0 || stored_name_check(e->d_name) != IMAGE_UNKNOWN,
                       "unexpected file in UPLOAD_DIR: %s", e->d_name);
            if (stored_name_check(e->d_name) != IMAGE_UNKNOWN)
                unlinkat(dirfd(d), e->d_name, 0); /* a stored upload: fine, but keep the dir small */
        }
        closedir(d);
        if (!spool)
            return;
        usleep(5000);
    }
    FUZZ_CHECK(0, "a .upload-* spool file outlived its connection by a second");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t len = 0;
    char *raw = exchange(data, size, &len);

    check_answer(raw, len, framing_suspect(data, size), memmem(data, size, "HEAD", 4) != NULL);
    free(raw);
    check_dir();
    return 0;
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[1024];

    if (!d)
        return;
    while ((e = readdir(d))) {
        struct stat st;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(path);
        else
            unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static void stop_all(void)
{
    if (!g_srv.up)
        return;
    imagepool_free(g_srv.app.images);
    MHD_stop_daemon(g_srv.app.daemon);
    storage_close(g_srv.app.store);
    taskstore_close(g_srv.app.taskstore);
    tasklog_queue_free(g_srv.app.updates);
    credits_cache_free(g_srv.app.credits);
    taskcache_free(g_srv.app.tasks);
    config_free(&g_srv.cfg);
    pthread_mutex_destroy(&g_srv.app.public_lock);
    remove_tree(g_base);
    g_srv.up = 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *tmp = getenv("TMPDIR");
    sigset_t alarm_only;
    sigset_t old_mask;
    char errors[2048];
    char err[512];

    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    log_setup(LOG_ERROR, 0);
    snprintf(g_base, sizeof g_base, "%s/ppa-fuzz-http-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    FUZZ_CHECK(mkdtemp(g_base) != NULL, "mkdtemp: %s", strerror(errno));
    snprintf(g_srv.dir, sizeof g_srv.dir, "%s/up", g_base);
    FUZZ_CHECK(mkdir(g_srv.dir, 0700) == 0, "mkdir %s: %s", g_srv.dir, strerror(errno));
    /* the server threads inherit a mask without SIGALRM (libFuzzer's timer) */
    sigemptyset(&alarm_only);
    sigaddset(&alarm_only, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &alarm_only, &old_mask);
    FUZZ_CHECK(image_lib_init("fuzz_http", 1, err, sizeof err) == 0, "%s", err);
    FUZZ_CHECK(config_load(&g_srv.cfg, NULL, fake_env, errors, sizeof errors) == 0, "config: %s", errors);
    memset(&g_srv.app, 0, sizeof g_srv.app);
    pthread_mutex_init(&g_srv.app.public_lock, NULL);
    g_srv.app.cfg = &g_srv.cfg;
    g_srv.app.started = time(NULL);
    g_srv.app.store = storage_open(&g_srv.cfg, NULL, err, sizeof err);
    FUZZ_CHECK(g_srv.app.store != NULL, "storage: %s", err);
    g_srv.app.taskstore = taskstore_open(&g_srv.cfg, NULL, err, sizeof err);
    FUZZ_CHECK(g_srv.app.taskstore != NULL, "task store: %s", err);
    g_srv.app.tasks = taskcache_new(256);
    g_srv.app.credits = credits_cache_new();
    g_srv.app.updates = tasklog_queue_new();
    g_srv.app.images = imagepool_new(1, 4, image_lib_thread_done);
    FUZZ_CHECK(g_srv.app.tasks && g_srv.app.credits && g_srv.app.updates && g_srv.app.images, "out of memory");
    g_srv.app.daemon = http_start(&g_srv.app, err, sizeof err);
    FUZZ_CHECK(g_srv.app.daemon != NULL, "http_start: %s", err);
    g_srv.up = 1;
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    atexit(stop_all);
    return 0;
}
