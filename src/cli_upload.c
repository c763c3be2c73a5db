/* cli_upload.c - getting the photo to the server: POST /upload (multipart,
 * streamed from disk), or in S3 mode the direct upload (POST /upload-url, PUT
 * to the bucket, POST /upload-complete). See cli_job.h. */
#include "cli_job.h"
#include "cli_http.h"
#include "cli_pace.h"
#include "validate.h"

#include <string.h>
#include <sys/stat.h>

#define CLI_UPLOAD_RETRIES 4 /* a batch: 429 / 502-504 / dropped connection, then the photo fails */

static const char *cli_sniff_type(const char *path)
{
    unsigned char h[IMAGE_MAGIC_LEN] = {0};
    size_t n = 0;
    FILE *f = fopen(path, "rb");
    const char *mime;

    if (f) {
        n = fread(h, 1, sizeof h, f);
        fclose(f);
    }
    mime = image_mime(image_detect(h, n));
    return mime ? mime : "application/octet-stream"; /* the server decides (415) */
}

/* The server's upload limit from GET /config (-1 when it does not say), and
 * whether it offers direct uploads to S3 (then *direct_limit is theirs). */
static double cli_server_limit(const struct cli_job *j, int *direct, double *direct_limit)
{
    struct cli_reply r;
    char url[CLI_URL_MAX];
    double limit = -1;
    cJSON *cfg;
    const cJSON *m;

    *direct = 0;
    *direct_limit = -1;
    buf_init(&r.body, CLI_MAX_REPLY);
    snprintf(url, sizeof url, "%s/config", j->g->c.server);
    cli_call(&j->g->c, url, NULL, NULL, NULL, NULL, CLI_API_TIMEOUT_S, NULL, &r);
    if (r.code == CURLE_OK && r.status == 200) {
        cfg = cJSON_ParseWithLength(buf_str(&r.body), r.body.len);
        m = cJSON_GetObjectItemCaseSensitive(cfg, "max_upload_bytes");
        if (cJSON_IsNumber(m) && m->valuedouble > 0)
            limit = m->valuedouble;
        *direct = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "direct_upload"));
        m = cJSON_GetObjectItemCaseSensitive(cfg, "max_direct_upload_bytes");
        if (cJSON_IsNumber(m) && m->valuedouble > 0)
            *direct_limit = m->valuedouble;
        cJSON_Delete(cfg);
    }
    buf_free(&r.body);
    return limit;
}

/* S3 mode: POST /upload-url, PUT the photo straight to the bucket (it never
 * passes through the server, or API Gateway's 6 MB on Lambda), then POST
 * /upload-complete, whose answer is /upload's. Fills *answer (caller
 * deletes). 0, or -1 with msg set. */
static int cli_direct_upload(const struct cli_job *j, long long size, struct cli_progress *pg, cJSON **answer,
                             char *msg, size_t cap)
{
    struct cli_reply r;
    char url[CLI_URL_MAX];
    char body[256];
    char put_url[CLI_URL_MAX];
    char upload_id[64];
    const char *type = cli_sniff_type(j->photo);
    cJSON *ticket = NULL;
    int rc = -1;

    *answer = NULL;
    buf_init(&r.body, CLI_MAX_REPLY);
    snprintf(url, sizeof url, "%s/upload-url", j->g->c.server);
    snprintf(body, sizeof body, "{\"content_type\":\"%s\",\"size\":%lld}", type, size);
    cli_call(&j->g->c, url, body, NULL, NULL, NULL, CLI_API_TIMEOUT_S, NULL, &r);
    ticket = cli_json_ok(&j->g->c, "upload-url", &r, msg, cap);
    if (!ticket)
        goto out;
    if (cli_copy_string(cJSON_GetObjectItemCaseSensitive(ticket, "upload_url"), put_url, sizeof put_url) ||
        cli_copy_string(cJSON_GetObjectItemCaseSensitive(ticket, "upload_id"), upload_id, sizeof upload_id)) {
        snprintf(msg, cap, "upload-url: the server's answer has no upload_url or upload_id.");
        goto out;
    }
    buf_free(&r.body);
    buf_init(&r.body, CLI_MAX_REPLY);
    cli_put_file(put_url, type, j->photo, pg, &r);
    if (pg && pg->last_pct >= 0)
        fputc('\n', stderr);
    if (r.code != CURLE_OK || r.status < 200 || r.status > 299) {
        if (r.code != CURLE_OK)
            snprintf(msg, cap, "upload to the bucket failed: %s", r.err);
        else
            snprintf(msg, cap, "the bucket refused the upload (HTTP %ld): %.300s", r.status, buf_str(&r.body));
        goto out;
    }
    buf_free(&r.body);
    buf_init(&r.body, CLI_MAX_REPLY);
    snprintf(url, sizeof url, "%s/upload-complete", j->g->c.server);
    snprintf(body, sizeof body, "{\"upload_id\":\"%s\"}", upload_id);
    cli_call(&j->g->c, url, body, NULL, NULL, NULL, CLI_API_TIMEOUT_S, NULL, &r);
    *answer = cli_json_ok(&j->g->c, "upload-complete", &r, msg, cap);
    rc = *answer ? 0 : -1;
out:
    cJSON_Delete(ticket);
    buf_free(&r.body);
    return rc;
}

/* One POST /upload (or direct upload). 0 with the answer in *answer, 1 when
 * worth trying again (*retry_after: its Retry-After or -1), -1 (j->err). */
static int cli_upload_once(struct cli_job *j, cJSON **answer, long *retry_after)
{
    const struct cli_conn *c = &j->g->c;
    struct cli_reply r;
    struct cli_progress pg = {c, NULL, -1, 0.0};
    char url[CLI_URL_MAX];
    struct stat st;
    const char *base = strrchr(j->photo, '/');
    int direct = 0;
    double direct_limit = -1;
    int rc = -1;

    *answer = NULL;
    *retry_after = -1;
    buf_init(&r.body, CLI_MAX_REPLY);
    pg.name = base ? base + 1 : j->photo;
    snprintf(url, sizeof url, "%s/upload", c->server);
    if (stat(j->photo, &st) == 0) {
        double limit = cli_server_limit(j, &direct, &direct_limit);
        if (direct)
            limit = direct_limit;
        if (limit > 0 && (double)st.st_size > limit) {
            char size[32], lim[32];
            cli_human((double)st.st_size, size, sizeof size);
            cli_human(limit, lim, sizeof lim);
            snprintf(j->err, sizeof j->err, "%s is %s; the server accepts photos up to %s (%s).", pg.name, size,
                     lim, direct ? "MAX_DIRECT_UPLOAD_BYTES" : "MAX_UPLOAD_BYTES");
            goto out;
        }
    }
    if (!c->quiet && !c->tty) {
        char size[32];
        cli_human(stat(j->photo, &st) == 0 ? (double)st.st_size : 0.0, size, sizeof size);
        fprintf(stderr, "Uploading %s (%s) to %s%s\n", pg.name, size, c->server,
                direct ? " (straight to its S3 bucket)" : "");
    }
    if (direct) {
        rc = cli_direct_upload(j, (long long)st.st_size, !c->quiet && c->tty ? &pg : NULL, answer, j->err,
                               sizeof j->err);
        goto out;
    }
    cli_call(c, url, NULL, NULL, j->photo, cli_sniff_type(j->photo), 0, !c->quiet && c->tty ? &pg : NULL, &r);
    if (!c->quiet && c->tty && pg.last_pct >= 0)
        fputc('\n', stderr);
    *answer = cli_json_ok(c, "upload", &r, j->err, sizeof j->err);
    if (*answer)
        rc = 0;
    else if (r.code == CURLE_OK ? r.status == 429 || r.status == 502 || r.status == 503 || r.status == 504
                                : r.code == CURLE_COULDNT_CONNECT || r.code == CURLE_SEND_ERROR ||
                                      r.code == CURLE_RECV_ERROR || r.code == CURLE_GOT_NOTHING)
        rc = 1;
    *retry_after = r.retry_after;
out:
    buf_free(&r.body);
    return rc;
}

int cli_upload(struct cli_job *j, char *input_url, size_t cap)
{
    const struct cli_conn *c = &j->g->c;
    cJSON *ans = NULL;
    const cJSON *u;
    long retry_after;
    int rc;

    for (int attempt = 1;; attempt++) {
        rc = cli_upload_once(j, &ans, &retry_after);
        if (rc <= 0 || attempt > CLI_UPLOAD_RETRIES || !j->g->pace) /* one photo: fails at once, as before */
            break;
        if (!c->quiet)
            fprintf(stderr, "warning: %s (retrying)\n", j->err);
        if (cli_job_sleep(j, retry_after > 0 ? retry_after * 1000L
                                             : cli_pace_backoff(j->g->pace, attempt, 500L, 8000L)))
            return CLI_STOPPED;
    }
    if (rc)
        return -1;
    rc = -1;
    u = cJSON_GetObjectItemCaseSensitive(ans, "public_url");
    if (!cJSON_IsString(u) || !u->valuestring[0])
        u = cJSON_GetObjectItemCaseSensitive(ans, "url");
    if (cli_copy_string(u, input_url, cap)) {
        snprintf(j->err, sizeof j->err, "upload: the server's answer has no usable \"url\".");
        goto out;
    }
    if (!c->quiet) {
        const cJSON *w = cJSON_GetObjectItemCaseSensitive(ans, "width");
        const cJSON *hh = cJSON_GetObjectItemCaseSensitive(ans, "height");
        const cJSON *orig = cJSON_GetObjectItemCaseSensitive(ans, "original");
        const cJSON *ow = cJSON_GetObjectItemCaseSensitive(orig, "width");
        const cJSON *oh = cJSON_GetObjectItemCaseSensitive(orig, "height");
        const cJSON *ot = cJSON_GetObjectItemCaseSensitive(orig, "content_type");
        const cJSON *st_t = cJSON_GetObjectItemCaseSensitive(ans, "content_type");
        if (cJSON_IsNumber(w) && cJSON_IsNumber(hh) && cJSON_IsNumber(ow) && cJSON_IsNumber(oh) && cJSON_IsString(ot) &&
            cJSON_IsString(st_t))
            fprintf(stderr, "Uploaded: %s (%.0fx%.0f %s -> %.0fx%.0f %s)\n", input_url, ow->valuedouble,
                    oh->valuedouble, ot->valuestring, w->valuedouble, hh->valuedouble, st_t->valuestring);
        else
            fprintf(stderr, "Uploaded: %s\n", input_url);
    }
    rc = 0;
out:
    cJSON_Delete(ans);
    return rc;
}
