/* s3call.c - see s3call.h. */
#include "s3call.h"
#include "config.h"
#include "err.h"
#include "metrics.h"
#include "upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char *dup_or_null(const char *s, int *oom)
{
    char *d;
    if (!s)
        return NULL;
    d = strdup(s);
    if (!d)
        *oom = 1;
    return d;
}

int s3_config_target_init(struct s3_config_target *ct, const struct config *cfg, char *err, size_t cap)
{
    struct s3_request *probe = NULL;
    int oom = 0;
    int rc = 0;

    memset(ct, 0, sizeof *ct);
    ct->bucket = dup_or_null(cfg->s3_bucket, &oom);
    ct->region = dup_or_null(cfg->aws_region, &oom);
    ct->endpoint = dup_or_null(cfg->s3_endpoint, &oom);
    ct->ak = dup_or_null(cfg->aws_access_key_id, &oom);
    ct->sk = dup_or_null(cfg->aws_secret_access_key, &oom);
    ct->token = dup_or_null(cfg->aws_session_token, &oom);
    if (oom) {
        snprintf(err, cap, "out of memory");
        return ERR_NOMEM;
    }
    ct->t.endpoint = ct->endpoint;
    ct->t.path_style = cfg->s3_force_path_style;
    ct->t.bucket = ct->bucket;
    ct->t.region = ct->region;
    ct->t.creds.access_key = ct->ak;
    ct->t.creds.secret_key = ct->sk;
    ct->t.creds.session_token = ct->token;
    /* validate bucket/endpoint/region once, now, rather than on every request */
    probe = malloc(sizeof *probe);
    if (!probe) {
        snprintf(err, cap, "out of memory");
        return ERR_NOMEM;
    }
    if (s3_presign_get(&ct->t, "probe", 60, time(NULL), probe)) {
        snprintf(err, cap,
                 "S3 settings are invalid: check S3_BUCKET (3-63 of a-z 0-9 . -), AWS_REGION and S3_ENDPOINT "
                 "(scheme://host[:port])");
        rc = ERR_INVALID;
    }
    free(probe);
    return rc;
}

void s3_config_target_free(struct s3_config_target *ct)
{
    free(ct->bucket);
    free(ct->region);
    free(ct->endpoint);
    free(ct->ak);
    free(ct->sk);
    free(ct->token);
    memset(ct, 0, sizeof *ct);
}

/* upstream_call keeps the method as a static string. */
static const char *static_method(const char *m)
{
    static const char *const methods[] = {"GET", "HEAD", "PUT", "DELETE"};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (strcmp(m, methods[i]) == 0)
            return methods[i];
    return NULL;
}

struct upstream_call *s3_call_new(const struct s3_request *rq, long timeout_ms, size_t max_response)
{
    const char *method = static_method(rq->method);
    struct upstream_call *c = method ? upstream_call_new(method, rq->url, timeout_ms, max_response) : NULL;

    if (!c)
        return NULL;
    c->target = TARGET_S3;
    for (size_t i = 0; i < rq->nheaders; i++)
        if (upstream_call_header(c, rq->headers[i]))
            goto fail;
    if (upstream_call_header(c, "Expect:"))
        goto fail;
    return c;
fail:
    upstream_call_free(c);
    return NULL;
}
