/* resultsig.h - the stable_url of a kept result is a capability:
 * /results/<id>?exp=<unix>&sig=<hex HMAC-SHA256(key, "<id>|<exp>")>. It works
 * without API_TOKEN until exp, so <img> tags, the page and shared links keep
 * working while /results itself needs the token. Pure functions. */
#ifndef PPA_RESULTSIG_H
#define PPA_RESULTSIG_H

#include <stddef.h>
#include <time.h>

#define RESULTSIG_KEY_LEN 32

/* Fill out with "exp=<unix>&sig=<64 hex>" for task_id valid until exp. */
int resultsig_query(const unsigned char key[RESULTSIG_KEY_LEN], const char *task_id, time_t exp, char *out,
                    size_t cap);

/* 1 when sig (hex) signs task_id|exp with key and exp (decimal) is not past
 * `now`; constant-time comparison. */
int resultsig_ok(const unsigned char key[RESULTSIG_KEY_LEN], const char *task_id, const char *exp, const char *sig,
                 time_t now);

/* The key: HMAC-SHA256(secret, "product-photo-api results v1"). */
void resultsig_key(const char *secret, size_t len, unsigned char key[RESULTSIG_KEY_LEN]);

#endif
