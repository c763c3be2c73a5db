/* kieupload.c - see kieupload.h. */
#include "kieupload.h"
#include "err.h"
#include "metrics.h"
#include "upstream.h"
#include "validate.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KIEUPLOAD_MAX_ANSWER (64 * 1024)
#define BOUNDARY "ppaKieUpload7MA4YWxkTrZu0gW"

struct entry {
    char name[64];
    char url[2048];
    time_t at;
};

struct kieupload {
    pthread_mutex_t lock;
    struct entry *slots;
    size_t cap;
    size_t next; /* round robin: the oldest entry is replaced first */
};

struct kieupload *kieupload_new(size_t capacity)
{
    struct kieupload *k = calloc(1, sizeof *k);
    if (!k || capacity == 0)
        goto fail;
    k->slots = calloc(capacity, sizeof *k->slots);
    if (!k->slots)
        goto fail;
    k->cap = capacity;
    pthread_mutex_init(&k->lock, NULL);
    return k;
fail:
    free(k);
    return NULL;
}

void kieupload_free(struct kieupload *k)
{
    if (!k)
        return;
    pthread_mutex_destroy(&k->lock);
    free(k->slots);
    free(k);
}

int kieupload_lookup(struct kieupload *k, const char *name, time_t now, char *url, size_t cap)
{
    int found = 0;
    pthread_mutex_lock(&k->lock);
    for (size_t i = 0; i < k->cap; i++) {
        struct entry *e = &k->slots[i];
        if (e->name[0] && strcmp(e->name, name) == 0 && now - e->at < KIEUPLOAD_REUSE_SECONDS && now >= e->at &&
            strlen(e->url) < cap) {
            memcpy(url, e->url, strlen(e->url) + 1);
            found = 1;
            break;
        }
    }
    pthread_mutex_unlock(&k->lock);
    return found;
}

void kieupload_remember(struct kieupload *k, const char *name, const char *url, time_t now)
{
    struct entry *e = NULL;

    if (strlen(name) >= sizeof e->name || strlen(url) >= sizeof e->url)
        return;
    pthread_mutex_lock(&k->lock);
    for (size_t i = 0; i < k->cap && !e; i++)
        if (strcmp(k->slots[i].name, name) == 0)
            e = &k->slots[i];
    if (!e) {
        e = &k->slots[k->next];
        k->next = (k->next + 1) % k->cap;
    }
    snprintf(e->name, sizeof e->name, "%s", name);
    snprintf(e->url, sizeof e->url, "%s", url);
    e->at = now;
    pthread_mutex_unlock(&k->lock);
}

struct upstream_call *kieupload_call(const char *base_url, const char *api_key, const char *name, const char *mime,
                                     const void *data, size_t len, long timeout_ms)
{
    char url[1100];
    char head[1024];
    char auth[1100];
    static const char tail[] = "\r\n--" BOUNDARY "--\r\n";
    struct upstream_call *c;
    char *body;
    int hl;

    snprintf(url, sizeof url, "%s/api/file-stream-upload", base_url);
    hl = snprintf(head, sizeof head,
                  "--" BOUNDARY "\r\nContent-Disposition: form-data; name=\"uploadPath\"\r\n\r\n" KIEUPLOAD_PATH "\r\n"
                  "--" BOUNDARY "\r\nContent-Disposition: form-data; name=\"fileName\"\r\n\r\n%s\r\n"
                  "--" BOUNDARY "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\n"
                  "Content-Type: %s\r\n\r\n",
                  name, name, mime);
    if (hl < 0 || (size_t)hl >= sizeof head)
        return NULL;
    c = upstream_call_new("POST", url, timeout_ms, KIEUPLOAD_MAX_ANSWER);
    body = malloc((size_t)hl + len + sizeof tail);
    if (!c || !body)
        goto fail;
    c->target = TARGET_KIE_UPLOAD;
    memcpy(body, head, (size_t)hl);
    memcpy(body + hl, data, len);
    memcpy(body + (size_t)hl + len, tail, sizeof tail - 1);
    upstream_call_body(c, body, (size_t)hl + len + sizeof tail - 1);
    body = NULL;
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", api_key);
    if (upstream_call_header(c, auth) || upstream_call_header(c, "Accept: application/json") ||
        upstream_call_header(c, "Content-Type: multipart/form-data; boundary=" BOUNDARY) ||
        upstream_call_header(c, "Expect:"))
        goto fail;
    return c;
fail:
    free(body);
    upstream_call_free(c);
    return NULL;
}

static int failed(unsigned *status, unsigned st, char *code, size_t code_cap, const char *cd, char *msg,
                  size_t msg_cap, const char *fmt, ...) __attribute__((format(printf, 8, 9)));

static int failed(unsigned *status, unsigned st, char *code, size_t code_cap, const char *cd, char *msg,
                  size_t msg_cap, const char *fmt, ...)
{
    va_list ap;
    *status = st;
    snprintf(code, code_cap, "%s", cd);
    va_start(ap, fmt);
    vsnprintf(msg, msg_cap, fmt, ap);
    va_end(ap);
    return ERR_UPSTREAM;
}

#define FAIL(st, cd, ...) failed(status, st, code, code_cap, cd, msg, msg_cap, __VA_ARGS__)

int kieupload_parse(const struct upstream_call *c, long timeout_s, char *url, size_t cap, unsigned *status,
                    char *code, size_t code_cap, char *msg, size_t msg_cap)
{
    cJSON *j = NULL;
    const cJSON *ok, *kcode, *kmsg, *dl;
    struct url_parts u;
    int rc;

    if (c->result == ERR_TIMEOUT)
        return FAIL(504, "kie_upload_timeout",
                    "KIE's file upload did not answer within %ld s, so the photo could not be sent to KIE; try again.",
                    timeout_s);
    if (c->result && c->http_status == 0)
        return FAIL(502, "kie_upload_unreachable", "KIE's file upload could not be reached (%s).", c->error);
    j = cJSON_ParseWithLength(c->response.data ? c->response.data : "", c->response.len);
    kcode = cJSON_GetObjectItemCaseSensitive(j, "code");
    kmsg = cJSON_GetObjectItemCaseSensitive(j, "msg");
    ok = cJSON_GetObjectItemCaseSensitive(j, "success");
    if (c->http_status == 401 || c->http_status == 403 || (cJSON_IsNumber(kcode) && kcode->valuedouble == 401)) {
        rc = FAIL(502, "kie_upload_unauthorized",
                  "KIE's file upload refused the API key (HTTP %ld%s%.200s): check KIE_API_KEY.", c->http_status,
                  cJSON_IsString(kmsg) ? ", " : "", cJSON_IsString(kmsg) ? kmsg->valuestring : "");
        goto out;
    }
    if (c->http_status != 200 || !cJSON_IsObject(j) || cJSON_IsFalse(ok) ||
        (cJSON_IsNumber(kcode) && kcode->valuedouble != 200)) {
        rc = FAIL(502, "kie_upload_failed", "KIE's file upload failed (HTTP %ld%s%.0f%s%.200s), so the photo could "
                  "not be sent to KIE; try again.", c->http_status, cJSON_IsNumber(kcode) ? ", code " : "",
                  cJSON_IsNumber(kcode) ? kcode->valuedouble : 0.0, cJSON_IsString(kmsg) ? ": " : "",
                  cJSON_IsString(kmsg) ? kmsg->valuestring : "");
        goto out;
    }
    dl = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "data"), "downloadUrl");
    if (!cJSON_IsString(dl) || url_parse(dl->valuestring, &u) != 0 || strlen(dl->valuestring) >= cap) {
        rc = FAIL(502, "kie_upload_bad_answer",
                  "KIE's file upload answered without a usable data.downloadUrl, so the photo could not be sent to "
                  "KIE; try again.");
        goto out;
    }
    memcpy(url, dl->valuestring, strlen(dl->valuestring) + 1);
    rc = 0;
out:
    cJSON_Delete(j);
    return rc;
}
