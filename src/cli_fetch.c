/* cli_fetch.c - saving the result: GET the result URL into a temp file beside
 * the final name (bounded, checked to be an image), fsync, rename. See
 * cli_job.h. */
#include "cli_job.h"
#include "cli_http.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CLI_MAX_RESULT (200L * 1024 * 1024) /* the downloaded image */

/* A download in progress: the temp file and what has been written. */
struct cli_sink {
    FILE *f;
    long size;
    unsigned char head[12];
    size_t head_len;
    int too_large;
};

/* The default output name: result-<task>.<ext of the URL's path, else png>. */
void cli_result_ext(const char *url, char *ext, size_t cap)
{
    const char *p = strstr(url, "://");
    const char *end;
    const char *slash;
    const char *dot = NULL;

    snprintf(ext, cap, "png");
    p = p ? p + 3 : url;
    end = p + strcspn(p, "?#");
    slash = memchr(p, '/', (size_t)(end - p));
    if (slash) {
        for (const char *q = end; q > slash; q--) {
            if (q[-1] == '/')
                break;
            if (q[-1] == '.') {
                dot = q;
                break;
            }
        }
    }
    if (dot && end - dot >= 1 && end - dot < 8 && (size_t)(end - dot) < cap) {
        size_t n = (size_t)(end - dot);
        for (size_t i = 0; i < n; i++) {
            char c = dot[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
                return;
        }
        memcpy(ext, dot, n);
        ext[n] = '\0';
    }
}

void cli_default_name(const char *task, const char *url, char *out, size_t cap)
{
    char safe[CLI_TASK_MAX];
    char ext[8];
    size_t i;

    for (i = 0; task[i] && i + 1 < sizeof safe; i++) {
        char c = task[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                 c == '_';
        safe[i] = ok ? c : '_';
    }
    safe[i] = '\0';
    cli_result_ext(url, ext, sizeof ext);
    snprintf(out, cap, "result-%s.%s", safe, ext);
}

static size_t cli_write_file(char *data, size_t size, size_t n, void *arg)
{
    struct cli_sink *s = arg;
    size_t len = size * n;

    if ((long)len > CLI_MAX_RESULT - s->size) {
        s->too_large = 1;
        return 0;
    }
    if (s->head_len < sizeof s->head) {
        size_t take = sizeof s->head - s->head_len < len ? sizeof s->head - s->head_len : len;
        memcpy(s->head + s->head_len, data, take);
        s->head_len += take;
    }
    if (fwrite(data, 1, len, s->f) != len)
        return 0;
    s->size += (long)len;
    return len;
}

static int cli_is_image(const unsigned char *h, size_t n)
{
    return (n >= 3 && h[0] == 0xFF && h[1] == 0xD8 && h[2] == 0xFF) ||
           (n >= 8 && memcmp(h, "\x89PNG\r\n\x1a\n", 8) == 0) ||
           (n >= 12 && memcmp(h, "RIFF", 4) == 0 && memcmp(h + 8, "WEBP", 4) == 0);
}

/* Download `url` to `path` via a temp file in the same directory and a
 * rename, so `path` is either the whole image or untouched. 0 or -1. */
int cli_fetch(struct cli_job *j, const char *url, const char *path)
{
    CURL *h = curl_easy_init();
    struct cli_sink sink = {0};
    char tmp[CLI_PATH_MAX + 32];
    char err[CURL_ERROR_SIZE] = "";
    char *msg = j->err;
    CURLcode code;
    long status = 0;
    int fd = -1;
    int rc = -1;
    mode_t mask;

    tmp[0] = '\0';
    snprintf(msg, sizeof j->err, "download: out of memory.");
    if (!h)
        goto out;
    if (snprintf(tmp, sizeof tmp, "%s.part-XXXXXX", path) >= (int)sizeof tmp) {
        tmp[0] = '\0';
        snprintf(msg, sizeof j->err, "the output path is too long.");
        goto out;
    }
    fd = mkstemp(tmp);
    if (fd < 0) {
        snprintf(msg, sizeof j->err, "cannot create a temp file beside %s: %s", path, strerror(errno));
        tmp[0] = '\0';
        goto out;
    }
    mask = umask(0);
    umask(mask);
    if (fchmod(fd, 0666 & ~mask) != 0 || !(sink.f = fdopen(fd, "wb"))) {
        snprintf(msg, sizeof j->err, "cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    fd = -1; /* owned by sink.f */
    if (!j->g->c.quiet)
        fprintf(stderr, "Downloading %s\n", url);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "product-photo-api-cli/1.0");
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, CLI_CONNECT_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, err);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, cli_write_file);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);
    code = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (code != CURLE_OK) {
        if (sink.too_large)
            snprintf(msg, sizeof j->err, "download of %s: the result is larger than %ld bytes.", url, CLI_MAX_RESULT);
        else
            snprintf(msg, sizeof j->err, "download of %s failed: %s", url, err[0] ? err : curl_easy_strerror(code));
        goto out;
    }
    if (!cli_is_image(sink.head, sink.head_len)) {
        snprintf(msg, sizeof j->err, "download of %s: the answer (HTTP %ld, %ld bytes) is not an image.", url, status,
                 sink.size);
        goto out;
    }
    if (fflush(sink.f) != 0 || fsync(fileno(sink.f)) != 0) {
        snprintf(msg, sizeof j->err, "cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (fclose(sink.f) != 0) {
        sink.f = NULL;
        snprintf(msg, sizeof j->err, "cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    sink.f = NULL;
    if (rename(tmp, path) != 0) {
        snprintf(msg, sizeof j->err, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto out;
    }
    tmp[0] = '\0';
    rc = 0;
out:
    if (sink.f)
        fclose(sink.f);
    if (fd >= 0)
        close(fd);
    if (tmp[0])
        unlink(tmp);
    if (h)
        curl_easy_cleanup(h);
    return rc;
}
