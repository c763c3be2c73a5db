/* taskstore_s3_job.c - the S3 task store's plumbing (see taskstore_s3.h):
 * jobs and their lifetime, signed object and list calls, what S3's answers
 * mean, and the listing pager. */
#include "taskstore_s3.h"
#include "err.h"
#include "log.h"
#include "sigv4.h"
#include "upstream.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TS3_LIST_ANSWER_MAX (4u << 20) /* one ListObjectsV2 page of <= 1000 keys */

/* ---- jobs ------------------------------------------------------------------ */

int ts3_job_error(struct ts3_job *j, int rc, const char *fmt, ...)
{
    va_list ap;
    char msg[sizeof j->op->error];
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (j->rc == 0) {
        j->rc = rc;
        snprintf(j->op->error, sizeof j->op->error, "%s", msg);
    }
    if (rc != ERR_NOT_FOUND)
        log_warn("taskstore s3: %s", msg);
    return rc;
}

void *ts3_job_new(struct taskstore *st, struct taskstore_op *op, size_t size, void (*release)(void *job))
{
    struct ts3_job *j = size >= sizeof *j ? calloc(1, size) : NULL;
    if (!j)
        return NULL;
    j->s = st->priv;
    j->op = op;
    j->release = release;
    op->error[0] = '\0';
    return j;
}

static void job_free(struct ts3_job *j)
{
    if (j->release)
        j->release(j);
    free(j);
}

void ts3_job_done(struct ts3_job *j)
{
    struct taskstore_op *op = j->op;
    op->result = j->rc ? j->rc : j->result;
    job_free(j);
    op->done(op, op->arg);
}

int ts3_job_abort(struct ts3_job *j, struct taskstore_op *op, int rc, const char *msg)
{
    if (j && j->rc)
        rc = j->rc;
    else
        snprintf(op->error, sizeof op->error, "%s", msg);
    op->result = rc;
    if (j)
        job_free(j);
    return rc;
}

/* ---- calls ----------------------------------------------------------------- */

struct upstream_call *ts3_object_call(struct ts3 *s, const char *method, const char *key, char *body, size_t len,
                                      const char *content_type, size_t max_response)
{
    struct s3_request *rq = malloc(sizeof *rq);
    struct upstream_call *c = NULL;
    char hash[65];
    int rc;

    if (!rq)
        goto out;
    if (strcmp(method, "PUT") == 0) {
        sigv4_sha256_hex(body ? body : "", len, hash);
        rc = s3_sign_put(&s->ct.t, key, content_type, (unsigned long long)len, hash, time(NULL), rq);
    } else {
        rc = s3_sign_get(&s->ct.t, method, key, time(NULL), rq);
    }
    if (rc == 0)
        c = s3_call_new(rq, TS3_TIMEOUT_MS, max_response);
    if (c && body) {
        upstream_call_body(c, body, len);
        body = NULL;
    }
out:
    free(body);
    free(rq);
    return c;
}

static struct upstream_call *list_call(struct ts3 *s, const char *prefix, const char *start_after, const char *token,
                                       unsigned max_keys)
{
    struct s3_request *rq = malloc(sizeof *rq);
    struct upstream_call *c = NULL;

    if (rq && s3_sign_list(&s->ct.t, prefix, start_after, token, max_keys, time(NULL), rq) == 0)
        c = s3_call_new(rq, TS3_TIMEOUT_MS, TS3_LIST_ANSWER_MAX);
    free(rq);
    return c;
}

int ts3_job_submit(struct ts3_job *j, struct upstream_call *c, void (*fn)(struct upstream_call *, void *), void *arg)
{
    if (!c)
        return ts3_job_error(j, ERR_NOMEM, "out of memory or unsignable request (S3 task store)");
    c->done = fn;
    c->arg = arg;
    j->inflight++;
    if (upstream_submit(j->s->up, c)) {
        j->inflight--;
        upstream_call_free(c);
        return ts3_job_error(j, ERR_UPSTREAM, "the server is shutting down");
    }
    return 0;
}

int ts3_job_start(struct ts3_job *j, struct upstream_call *c, void (*fn)(struct upstream_call *, void *), void *arg)
{
    struct taskstore_op *op = j->op;
    int rc = ts3_job_submit(j, c, fn, arg);
    return rc ? ts3_job_abort(j, op, rc, "") : TASKSTORE_PENDING;
}

/* ---- answers --------------------------------------------------------------- */

static const char *method_of(const struct upstream_call *c)
{
    return c->method ? c->method : "?";
}

int ts3_answered(struct ts3_job *j, const struct upstream_call *c, const char *what)
{
    if (c->result == ERR_TIMEOUT)
        return ts3_job_error(j, ERR_TIMEOUT, "S3 did not answer %s %s within %d s", method_of(c), what,
                             TS3_TIMEOUT_MS / 1000);
    if (c->result == ERR_TOO_LARGE)
        return ts3_job_error(j, ERR_TOO_LARGE, "S3's answer to %s %s is larger than %zu bytes", method_of(c), what,
                             c->max_response);
    if (c->result || c->http_status == 0)
        return ts3_job_error(j, ERR_UPSTREAM, "could not reach S3 for %s %s: %s", method_of(c), what,
                             c->error[0] ? c->error : "no answer");
    return 0;
}

int ts3_refused(struct ts3_job *j, const struct upstream_call *c, const char *what)
{
    char code[128], msg[160];
    if (s3_parse_error(buf_str(&c->response), c->response.len, code, sizeof code, msg, sizeof msg) != 0) {
        code[0] = '\0';
        msg[0] = '\0';
    }
    return ts3_job_error(j, ERR_UPSTREAM, "S3 answered HTTP %ld to %s %s%s%s%s%s", c->http_status, method_of(c), what,
                         code[0] ? ": " : "", code, msg[0] ? " - " : "", msg);
}

/* S3 says 404 only when s3:ListBucket covers the request; the templates
 * grant ListBucket with an s3:prefix condition (listings of S3_TASKS_PREFIX
 * only), which a GET does not carry, so a missing key there is 403
 * AccessDenied. Other 403s (a bad signature, a wrong key id) are errors. */
int ts3_absent(const struct upstream_call *c)
{
    char code[64];
    if (c->http_status == 404)
        return 1;
    return c->http_status == 403 &&
           s3_parse_error(buf_str(&c->response), c->response.len, code, sizeof code, NULL, 0) == 0 &&
           strcmp(code, "AccessDenied") == 0;
}

/* ---- the listing pager ----------------------------------------------------- */

int ts3_pager_init(struct ts3_pager *p, struct ts3_job *j, const char *sub, int (*on_key)(const char *key, void *arg),
                   void (*on_page)(void *arg, int truncated, size_t undecodable), void *arg)
{
    int rc = ts3_make_key(j->s, p->prefix, sizeof p->prefix, "%s", sub);

    if (rc)
        p->prefix[0] = '\0';
    p->j = j;
    p->token[0] = '\0';
    p->on_key = on_key;
    p->on_page = on_page;
    p->arg = arg;
    return rc;
}

struct upstream_call *ts3_pager_call(struct ts3_pager *p, const char *start_after, unsigned max_keys)
{
    if (!p->prefix[0])
        return NULL;
    return list_call(p->j->s, p->prefix, start_after, p->token, max_keys);
}

void ts3_pager_done(struct upstream_call *c, void *arg)
{
    struct ts3_pager *p = arg;
    struct ts3_job *j = p->j;
    char what[TS3_PREFIX_MAX + 16];
    int truncated = 0;
    size_t undecodable = 0;

    snprintf(what, sizeof what, "%s (list)", p->prefix);
    j->inflight--;
    if (ts3_answered(j, c, what) == 0) {
        if (c->http_status != 200)
            ts3_refused(j, c, what);
        else if (s3_parse_list(buf_str(&c->response), c->response.len, p->on_key, p->arg, &truncated, p->token,
                               sizeof p->token, &undecodable) < 0)
            ts3_job_error(j, ERR_UPSTREAM, "S3's answer to GET %s is not a ListObjectsV2 result", what);
    }
    upstream_call_free(c);
    p->on_page(p->arg, truncated, undecodable);
}
