/* kie.h - the KIE API protocol, as pure functions: request bodies for
 * createTask and the mapping of any KIE answer (or failure to get one) to the
 * HTTP status and JSON we give our client. No I/O here (see upstream.h). */
#ifndef PPA_KIE_H
#define PPA_KIE_H

#include <cjson/cJSON.h>
#include <stddef.h>

struct kie_input {
    const char *model;
    const char *const *input_urls;
    size_t n_input_urls;
    const char *prompt;
    const char *aspect_ratio;
    const char *resolution;
    const char *callback_url; /* NULL: none */
};

/* The createTask JSON body as a malloc'd string (caller frees), or NULL. */
char *kie_create_body(const struct kie_input *in);

/* The outcome of one KIE call, for our client. */
struct kie_outcome {
    unsigned status;    /* HTTP status to answer */
    cJSON *json;        /* success: KIE's JSON (owned by the outcome) */
    char code[48];      /* error: our error code */
    char message[768];  /* error: a sentence a person can act on */
    long kie_code;      /* KIE's `code` when there was one, else 0 */
    char kie_msg[512];  /* KIE's `msg`/`message` */
};

enum kie_transport { KIE_OK = 0, KIE_TIMEOUT, KIE_UNREACHABLE };

/* The transport outcome of an upstream call's result (0, ERR_TIMEOUT, or
 * any other ERR_*: no usable answer arrived). */
enum kie_transport kie_transport_of(int result);

/* 1 when a recordInfo outcome is KIE's "no such task" (code 422, "recordInfo
 * is null"): unknown, expired, or created a moment ago and not yet known. */
int kie_unknown_task(const struct kie_outcome *o);

/* Map an answer. `transport` says whether an HTTP answer arrived at all;
 * `http_status`, `body`, `len` are the answer. For recordInfo answers
 * (`is_status`), data.resultUrls is added from the resultJson string.
 * `what` names the call in messages ("createTask"). Fills *out; the caller
 * calls kie_outcome_free. */
void kie_map(enum kie_transport transport, const char *transport_error, long timeout_s, long http_status,
             const char *body, size_t len, int is_status, const char *what, struct kie_outcome *out);
void kie_outcome_free(struct kie_outcome *out);
/* The extra members of our error for a failed KIE call: {"kie":{"code","msg"}}
 * when KIE gave a code, else NULL. The caller owns the object. */
cJSON *kie_error_extra(const struct kie_outcome *o);

/* From a recordInfo/callback `data` object: add "resultUrls" parsed from the
 * "resultJson" string when present. 0, or ERR_INVALID when absent/bad. */
int kie_add_result_urls(cJSON *data);

#endif
