/* taskstore_s3_keys.c - the S3 task store's Idempotency-Keys (see
 * taskstore_s3.h): one object <p>k/<hex sha256 of the key>.json per key,
 * claimed with a conditional PUT (If-None-Match: *), read to learn whose it
 * is, taken over when stale or expired, overwritten with the answer (finish)
 * or deleted (release). */
#include "taskstore_s3.h"
#include "err.h"
#include "sigv4.h"
#include "upstream.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#define TS3_ANSWER_MAX (64 * 1024)          /* the answer an idempotency key replays */
#define TS3_KEYOBJ_MAX (7 * TS3_ANSWER_MAX) /* the key's object: the answer JSON-escaped (\u00XX) + the rest */
#define TS3_CLAIM_TRIES 3                   /* conditional PUTs one claim makes (a key released meanwhile) */

enum key_step {
    CLAIM_PUT, /* If-None-Match: * */
    CLAIM_GET, /* it existed: whose is it? */
    CLAIM_TAKE,
    FINISH_PUT,
    RELEASE_DELETE,
};

struct key_job {
    struct ts3_job job;
    enum key_step step;
    char *body; /* claim: the pending claim (owned; copied per PUT) */
    size_t body_len;
    int tries; /* claim: conditional PUTs made */
};

static void key_release(void *arg)
{
    struct key_job *kj = arg;
    free(kj->body);
}

static int valid_hash(const char *h)
{
    if (strnlen(h, 65) != 64)
        return 0;
    for (int i = 0; i < 64; i++)
        if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
            return 0;
    return 1;
}

/* The object of op->key in j->key, after checking the key. */
static int key_object(struct ts3_job *j)
{
    char h[65];
    size_t n = strnlen(j->op->key, sizeof j->op->key);
    if (n == 0 || n >= sizeof j->op->key)
        return ERR_INVALID;
    sigv4_sha256_hex(j->op->key, n, h);
    return ts3_make_key(j->s, j->key, sizeof j->key, "k/%s.json", h);
}

/* The key's object: {"hash","state","at"[,"status","answer","task_id"]}
 * (malloc'd, *len bytes), NULL when out of memory. */
static char *key_json(const struct taskstore_op *op, const char *state, size_t *len)
{
    cJSON *o = cJSON_CreateObject();
    char *text = NULL, *out = NULL;

    if (!o || !cJSON_AddStringToObject(o, "hash", op->hash) || !cJSON_AddStringToObject(o, "state", state) ||
        !cJSON_AddNumberToObject(o, "at", (double)op->now))
        goto out;
    if (strcmp(state, "done") == 0 &&
        (!cJSON_AddNumberToObject(o, "status", op->answer_status) ||
         !cJSON_AddStringToObject(o, "answer", op->answer) || !cJSON_AddStringToObject(o, "task_id", op->task_id)))
        goto out;
    text = cJSON_PrintUnformatted(o);
    if (text) {
        *len = strlen(text);
        out = malloc(*len + 1);
        if (out)
            memcpy(out, text, *len + 1);
    }
out:
    cJSON_free(text);
    cJSON_Delete(o);
    return out;
}

/* ---- claim ----------------------------------------------------------------- */

static void claim_put(struct key_job *kj, int conditional);

/* Whose is the key's object? Sets the result, or starts the take-over. */
static void claim_decide(struct key_job *kj, const struct buf *b)
{
    struct ts3_job *j = &kj->job;
    struct taskstore_op *op = j->op;
    cJSON *o = cJSON_ParseWithLength(buf_str(b), b->len);
    cJSON *hash = cJSON_GetObjectItemCaseSensitive(o, "hash");
    cJSON *state = cJSON_GetObjectItemCaseSensitive(o, "state");
    cJSON *at = cJSON_GetObjectItemCaseSensitive(o, "at");
    cJSON *status = cJSON_GetObjectItemCaseSensitive(o, "status");
    cJSON *answer = cJSON_GetObjectItemCaseSensitive(o, "answer");
    int done, pending;
    double age;

    if (!cJSON_IsString(hash) || !cJSON_IsString(state) || !cJSON_IsNumber(at)) {
        ts3_job_error(j, ERR_UPSTREAM, "unreadable idempotency record %s", j->key);
        goto out;
    }
    done = strcmp(state->valuestring, "done") == 0;
    pending = strcmp(state->valuestring, "pending") == 0;
    age = (double)op->now - at->valuedouble;
    if (!done && !pending) {
        ts3_job_error(j, ERR_UPSTREAM, "unreadable idempotency record %s", j->key);
    } else if ((pending && age > IDEMPOTENCY_STALE_SECONDS) || (done && age > IDEMPOTENCY_TTL_SECONDS)) {
        cJSON_Delete(o);
        claim_put(kj, 0); /* a crashed request's claim, or an expired answer: ours now */
        return;
    } else if (strcmp(hash->valuestring, op->hash) != 0) {
        j->result = TS_MISMATCH;
    } else if (pending) {
        j->result = TS_BUSY;
    } else if (!cJSON_IsString(answer) || !cJSON_IsNumber(status) || status->valuedouble < 100 ||
               status->valuedouble > 599) {
        ts3_job_error(j, ERR_UPSTREAM, "unreadable idempotency record %s", j->key);
    } else if (!(op->text = strdup(answer->valuestring))) {
        ts3_job_error(j, ERR_NOMEM, "out of memory");
    } else {
        op->answer_status = (int)status->valuedouble;
        j->result = TS_REPLAY;
    }
out:
    cJSON_Delete(o);
    ts3_job_done(j);
}

static void on_claim_get(struct upstream_call *c, void *arg)
{
    struct key_job *kj = arg;
    struct ts3_job *j = &kj->job;

    j->inflight--;
    if (ts3_answered(j, c, j->key) == 0) {
        if (c->http_status == 200) {
            claim_decide(kj, &c->response);
            upstream_call_free(c);
            return;
        }
        if (c->http_status == 404 && kj->tries < TS3_CLAIM_TRIES) {
            upstream_call_free(c); /* released meanwhile: try again */
            claim_put(kj, 1);
            return;
        }
        if (c->http_status == 404)
            j->result = TS_BUSY;
        else
            ts3_refused(j, c, j->key);
    }
    upstream_call_free(c);
    ts3_job_done(j);
}

static void on_claim_put(struct upstream_call *c, void *arg)
{
    struct key_job *kj = arg;
    struct ts3_job *j = &kj->job;
    int conditional = kj->step == CLAIM_PUT;

    j->inflight--;
    if (ts3_answered(j, c, j->key) == 0) {
        if (c->http_status == 200) {
            j->result = TS_CLAIMED;
        } else if (conditional && c->http_status == 412) {
            /* it exists: read it */
            upstream_call_free(c);
            kj->step = CLAIM_GET;
            if (ts3_job_submit(j, ts3_object_call(j->s, "GET", j->key, NULL, 0, NULL, TS3_KEYOBJ_MAX), on_claim_get,
                               kj))
                ts3_job_done(j);
            return;
        } else if (conditional && c->http_status == 409) {
            /* S3: a concurrent conditional write of the same key is in progress */
            if (kj->tries < TS3_CLAIM_TRIES) {
                upstream_call_free(c);
                claim_put(kj, 1);
                return;
            }
            j->result = TS_BUSY;
        } else {
            ts3_refused(j, c, j->key);
        }
    }
    upstream_call_free(c);
    ts3_job_done(j);
}

/* A copy of the pending claim for one PUT (the call takes it); NULL when out of memory. */
static char *claim_body(const struct key_job *kj)
{
    char *body = malloc(kj->body_len + 1);
    if (body)
        memcpy(body, kj->body, kj->body_len + 1);
    return body;
}

/* A PUT of body (taken), If-None-Match: * when conditional. NULL when out of
 * memory or it cannot be signed. */
static struct upstream_call *claim_call(struct key_job *kj, char *body, int conditional)
{
    struct ts3_job *j = &kj->job;
    struct upstream_call *c =
        ts3_object_call(j->s, "PUT", j->key, body, kj->body_len, "application/json", TS3_ERROR_MAX);

    if (c && conditional && upstream_call_header(c, "If-None-Match: *")) {
        upstream_call_free(c);
        c = NULL;
    }
    return c;
}

/* PUT our pending claim again: If-None-Match: * (claim), or over a stale one. */
static void claim_put(struct key_job *kj, int conditional)
{
    char *body = claim_body(kj);

    kj->tries++;
    kj->step = conditional ? CLAIM_PUT : CLAIM_TAKE;
    if (ts3_job_submit(&kj->job, body ? claim_call(kj, body, conditional) : NULL, on_claim_put, kj))
        ts3_job_done(&kj->job);
}

int ts3_claim(struct taskstore *st, struct taskstore_op *op)
{
    struct key_job *kj = ts3_job_new(st, op, sizeof *kj, key_release);
    struct ts3_job *j = kj ? &kj->job : NULL;
    char *body;

    if (!j)
        return ts3_job_abort(NULL, op, ERR_NOMEM, "out of memory");
    if (!valid_hash(op->hash))
        return ts3_job_abort(j, op, ERR_INVALID, "invalid request hash");
    if (key_object(j))
        return ts3_job_abort(j, op, ERR_INVALID, "invalid idempotency key");
    kj->body = key_json(op, "pending", &kj->body_len);
    body = kj->body ? claim_body(kj) : NULL;
    if (!body)
        return ts3_job_abort(j, op, ERR_NOMEM, "out of memory");
    kj->tries = 1;
    kj->step = CLAIM_PUT;
    return ts3_job_start(j, claim_call(kj, body, 1), on_claim_put, kj);
}

/* ---- finish / release -------------------------------------------------------- */

static void on_key_done(struct upstream_call *c, void *arg)
{
    struct key_job *kj = arg;
    struct ts3_job *j = &kj->job;
    if (ts3_answered(j, c, j->key) == 0) {
        int ok = kj->step == RELEASE_DELETE ? c->http_status == 204 || c->http_status == 200 || c->http_status == 404
                                            : c->http_status == 200;
        if (!ok)
            ts3_refused(j, c, j->key);
    }
    upstream_call_free(c);
    ts3_job_done(j);
}

int ts3_finish(struct taskstore *st, struct taskstore_op *op)
{
    struct key_job *kj = ts3_job_new(st, op, sizeof *kj, key_release);
    struct ts3_job *j = kj ? &kj->job : NULL;
    char *body;
    size_t len = 0;

    if (!j)
        return ts3_job_abort(NULL, op, ERR_NOMEM, "out of memory");
    if (!valid_hash(op->hash))
        return ts3_job_abort(j, op, ERR_INVALID, "invalid request hash");
    if (key_object(j))
        return ts3_job_abort(j, op, ERR_INVALID, "invalid idempotency key");
    if (!op->answer || op->answer_status < 100 || op->answer_status > 599)
        return ts3_job_abort(j, op, ERR_INVALID, "no answer to store");
    if (strnlen(op->answer, TS3_ANSWER_MAX + 1) > TS3_ANSWER_MAX)
        return ts3_job_abort(j, op, ERR_TOO_LARGE, "answer too large to store");
    body = key_json(op, "done", &len);
    if (!body)
        return ts3_job_abort(j, op, ERR_NOMEM, "out of memory");
    kj->step = FINISH_PUT;
    return ts3_job_start(j, ts3_object_call(j->s, "PUT", j->key, body, len, "application/json", TS3_ERROR_MAX),
                         on_key_done, kj);
}

int ts3_release(struct taskstore *st, struct taskstore_op *op)
{
    struct key_job *kj = ts3_job_new(st, op, sizeof *kj, key_release);
    struct ts3_job *j = kj ? &kj->job : NULL;

    if (!j)
        return ts3_job_abort(NULL, op, ERR_NOMEM, "out of memory");
    if (key_object(j))
        return ts3_job_abort(j, op, ERR_INVALID, "invalid idempotency key");
    kj->step = RELEASE_DELETE;
    return ts3_job_start(j, ts3_object_call(j->s, "DELETE", j->key, NULL, 0, NULL, TS3_ERROR_MAX), on_key_done, kj);
}
