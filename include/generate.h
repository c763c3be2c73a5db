/* generate.h - parsing and validation of a POST /generate body, as a pure
 * function (no I/O) so it can be unit-tested and fuzzed. */
#ifndef PPA_GENERATE_H
#define PPA_GENERATE_H

#include "validate.h"

#include <cjson/cJSON.h>
#include <stddef.h>

struct generate_request {
    const char *input_urls[MAX_INPUT_URLS]; /* point into `root` */
    size_t n_input_urls;
    const char *prompt;
    const char *aspect_ratio; /* default "auto" */
    const char *resolution;   /* default "1K" */
    int keep_result;
    const char *photo_name;   /* the photo's original file name, or NULL: names downloads (results.zip) */
    cJSON *root;              /* owns the strings above */
};

/* Parse `len` bytes of JSON. On success returns 0 and the caller frees with
 * generate_request_free. On failure returns ERR_INVALID with our error code
 * (e.g. "invalid_prompt") and a message naming the field; nothing to free. */
int generate_parse(const char *body, size_t len, struct generate_request *out, char *code, size_t code_cap,
                   char *msg, size_t msg_cap);
void generate_request_free(struct generate_request *g);

#endif
