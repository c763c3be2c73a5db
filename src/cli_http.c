/* cli_http.c - the clients' HTTP exchanges with the server: see cli_http.h.
 * One blocking libcurl easy handle per call; JSON answers are read into a
 * bounded buffer (CLI_MAX_REPLY); the server's {"error":{"message"}} is what
 * the user is shown when a call fails. */
#include "cli_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <strings.h>

#define CLI_BAR_WIDTH 30

static size_t cli_write_buf(char *data, size_t size, size_t n, void *arg)
{
    struct buf *b = arg;
    return buf_append(b, data, size * n) ? 0 : size * n;
}

static int cli_xferinfo(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    struct cli_progress *p = arg;
    double t = cli_now();
    int pct;
    char done[32];
    char total[32];
    char bar[CLI_BAR_WIDTH + 1];
    int fill;

    (void)dltotal;
    (void)dlnow;
    if (ultotal <= 0)
        return 0;
    pct = (int)((ulnow * 100) / ultotal);
    if (pct == p->last_pct || (pct < 100 && t - p->last_draw < 0.1))
        return 0;
    p->last_pct = pct;
    p->last_draw = t;
    fill = pct * CLI_BAR_WIDTH / 100;
    for (int i = 0; i < CLI_BAR_WIDTH; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[CLI_BAR_WIDTH] = '\0';
    cli_human((double)ulnow, done, sizeof done);
    cli_human((double)ultotal, total, sizeof total);
    fprintf(stderr, "\r\033[KUploading %s [%s] %3d%%  %s / %s", p->name, bar, pct, done, total);
    fflush(stderr);
    return 0;
}

/* The value of header line `line` (n bytes, "Name: value\r\n") when its name is
 * `name`, trimmed into out[cap]; 0 when it is another header. */
static int cli_header_value(const char *line, size_t n, const char *name, char *out, size_t cap)
{
    size_t k = strlen(name);
    size_t end = n;

    if (n <= k || line[k] != ':' || strncasecmp(line, name, k) != 0)
        return 0;
    line += k + 1;
    end -= k + 1;
    while (end > 0 && (*line == ' ' || *line == '\t')) {
        line++;
        end--;
    }
    while (end > 0 && (line[end - 1] == '\r' || line[end - 1] == '\n' || line[end - 1] == ' '))
        end--;
    if (end >= cap)
        end = cap - 1;
    memcpy(out, line, end);
    out[end] = '\0';
    return 1;
}

/* Response headers the clients act on: Idempotent-Replayed, Retry-After. */
static size_t cli_header(char *data, size_t size, size_t n, void *arg)
{
    struct cli_reply *r = arg;
    size_t len = size * n;
    char v[32];
    char *end;

    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) { /* a new answer (after a 100 or a redirect) */
        r->replayed = 0;
        r->retry_after = -1;
    } else if (cli_header_value(data, len, "Idempotent-Replayed", v, sizeof v)) {
        r->replayed = strcasecmp(v, "true") == 0;
    } else if (cli_header_value(data, len, "Retry-After", v, sizeof v)) {
        long secs = strtol(v, &end, 10);
        if (end != v && *end == '\0' && secs >= 0)
            r->retry_after = secs;
    }
    return len;
}

/* The options every exchange shares, then the transfer: 0 when an HTTP
 * answer came back (r->status set), -1 on a transport error. */
static int cli_perform(CURL *h, const char *url, struct curl_slist *hdrs, long timeout_s, struct cli_progress *pg,
                       struct cli_reply *r)
{
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "product-photo-api-cli/1.0");
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, CLI_CONNECT_TIMEOUT_S);
    if (timeout_s > 0)
        curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout_s);
    /* a stalled upload: less than 1 byte/s for 60 s */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r->err);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, cli_write_buf);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r->body);
    if (pg) {
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, cli_xferinfo);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, pg);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    }
    r->code = curl_easy_perform(h);
    if (r->code != CURLE_OK)
        return -1;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    return 0;
}

int cli_call(const struct cli_conn *c, const char *url, const char *json, const char *header, const char *photo,
             const char *photo_type, long timeout_s, struct cli_progress *pg, struct cli_reply *r)
{
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    struct curl_slist *tmp;
    curl_mime *mime = NULL;
    char auth[CLI_TOKEN_MAX + 64];
    int rc = -1;

    r->code = CURLE_OUT_OF_MEMORY;
    r->status = 0;
    r->replayed = 0;
    r->retry_after = -1;
    r->err[0] = '\0';
    if (!h)
        goto out;
    tmp = curl_slist_append(hdrs, "Accept: application/json");
    if (!tmp)
        goto out;
    hdrs = tmp;
    if (c->token && c->token[0]) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token);
        tmp = curl_slist_append(hdrs, auth);
        if (!tmp)
            goto out;
        hdrs = tmp;
    }
    if (header) {
        tmp = curl_slist_append(hdrs, header);
        if (!tmp)
            goto out;
        hdrs = tmp;
    }
    if (json) {
        tmp = curl_slist_append(hdrs, "Content-Type: application/json");
        if (!tmp)
            goto out;
        hdrs = tmp;
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, json);
    } else if (photo) {
        curl_mimepart *part;
        const char *base = strrchr(photo, '/');
        mime = curl_mime_init(h);
        part = mime ? curl_mime_addpart(mime) : NULL;
        if (!part || curl_mime_name(part, "file") != CURLE_OK || curl_mime_filedata(part, photo) != CURLE_OK ||
            curl_mime_filename(part, base ? base + 1 : photo) != CURLE_OK ||
            curl_mime_type(part, photo_type) != CURLE_OK)
            goto out;
        curl_easy_setopt(h, CURLOPT_MIMEPOST, mime);
    }
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, cli_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    rc = cli_perform(h, url, hdrs, timeout_s, pg, r);
out:
    if (r->code != CURLE_OK && !r->err[0])
        snprintf(r->err, sizeof r->err, "%s", curl_easy_strerror(r->code));
    curl_mime_free(mime);
    curl_slist_free_all(hdrs);
    if (h)
        curl_easy_cleanup(h);
    return rc;
}

int cli_put_file(const char *url, const char *content_type, const char *path, struct cli_progress *pg,
                 struct cli_reply *r)
{
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    struct curl_slist *tmp;
    char ct[300];
    FILE *f = fopen(path, "rb");
    struct stat st;
    int rc = -1;

    r->code = CURLE_OUT_OF_MEMORY;
    r->status = 0;
    r->replayed = 0;
    r->retry_after = -1;
    r->err[0] = '\0';
    if (!f || fstat(fileno(f), &st) != 0) {
        r->code = CURLE_READ_ERROR;
        snprintf(r->err, sizeof r->err, "cannot read %s", path);
        goto out;
    }
    if (!h)
        goto out;
    snprintf(ct, sizeof ct, "Content-Type: %s", content_type);
    /* exactly the signed headers: no Authorization (the URL is the credential), no Expect */
    tmp = curl_slist_append(hdrs, ct);
    if (!tmp)
        goto out;
    hdrs = tmp;
    tmp = curl_slist_append(hdrs, "Expect:");
    if (!tmp)
        goto out;
    hdrs = tmp;
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_READDATA, f);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)st.st_size);
    rc = cli_perform(h, url, hdrs, 0, pg, r);
out:
    if (r->code != CURLE_OK && !r->err[0])
        snprintf(r->err, sizeof r->err, "%s", curl_easy_strerror(r->code));
    if (f)
        fclose(f);
    curl_slist_free_all(hdrs);
    if (h)
        curl_easy_cleanup(h);
    return rc;
}

void cli_describe_failure(const struct cli_conn *c, const char *what, const struct cli_reply *r, char *msg,
                          size_t cap)
{
    cJSON *j;
    const cJSON *err;
    const cJSON *m;
    const cJSON *code;

    if (r->code != CURLE_OK) {
        if (r->code == CURLE_COULDNT_CONNECT || r->code == CURLE_COULDNT_RESOLVE_HOST)
            snprintf(msg, cap,
                     "%s: could not connect to the server at %s (%s). Is it running? Start it with "
                     "'product-photo-api serve' (or 'make sim' to try it without a KIE key), or point --server / "
                     "PPA_SERVER at it.",
                     what, c->server, r->err);
        else if (r->code == CURLE_OPERATION_TIMEDOUT)
            snprintf(msg, cap, "%s: the server at %s did not answer in time (%s).", what, c->server, r->err);
        else
            snprintf(msg, cap, "%s: talking to the server at %s failed: %s.", what, c->server, r->err);
        return;
    }
    j = cJSON_ParseWithLength(buf_str(&r->body), r->body.len);
    err = cJSON_GetObjectItemCaseSensitive(j, "error");
    m = cJSON_GetObjectItemCaseSensitive(err, "message");
    code = cJSON_GetObjectItemCaseSensitive(err, "code");
    if (cJSON_IsString(m) && m->valuestring[0])
        snprintf(msg, cap, "%s failed (HTTP %ld%s%s): %s%s", what, r->status, cJSON_IsString(code) ? ", " : "",
                 cJSON_IsString(code) ? code->valuestring : "", m->valuestring,
                 r->status == 401 ? " Pass --token or set PPA_API_TOKEN." : "");
    else if (r->status == 200)
        snprintf(msg, cap, "%s: the server's answer is not the JSON expected.", what);
    else
        snprintf(msg, cap, "%s failed: the server answered HTTP %ld with no JSON error message.", what, r->status);
    cJSON_Delete(j);
}

cJSON *cli_json_ok(const struct cli_conn *c, const char *what, const struct cli_reply *r, char *msg, size_t cap)
{
    cJSON *j;

    if (r->code != CURLE_OK || r->status != 200) {
        cli_describe_failure(c, what, r, msg, cap);
        return NULL;
    }
    j = cJSON_ParseWithLength(buf_str(&r->body), r->body.len);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        snprintf(msg, cap, "%s: the server answered 200 but not with a JSON object.", what);
        return NULL;
    }
    return j;
}

void cli_error_code(const struct cli_reply *r, char *out, size_t cap)
{
    cJSON *j = cJSON_ParseWithLength(buf_str(&r->body), r->body.len);
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "error"), "code");

    snprintf(out, cap, "%s", cJSON_IsString(code) ? code->valuestring : "");
    cJSON_Delete(j);
}

int cli_copy_string(const cJSON *v, char *out, size_t cap)
{
    if (!cJSON_IsString(v) || !v->valuestring[0] || strlen(v->valuestring) >= cap)
        return -1;
    snprintf(out, cap, "%s", v->valuestring);
    return 0;
}

