/* generate.c - see generate.h. Limits are KIE's documented ones for
 * flux-2/pro-image-to-image: prompt 3-5000 characters, 1-8 input URLs,
 * aspect_ratio and resolution from fixed sets. Both input_url (one) and
 * input_urls (several) are accepted. */
#include "generate.h"
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int fail(struct generate_request *g, char *code, size_t code_cap, const char *c, char *msg, size_t msg_cap,
                const char *fmt, ...) __attribute__((format(printf, 7, 8)));

static int fail(struct generate_request *g, char *code, size_t code_cap, const char *c, char *msg, size_t msg_cap,
                const char *fmt, ...)
{
    va_list ap;
    snprintf(code, code_cap, "%s", c);
    va_start(ap, fmt);
    vsnprintf(msg, msg_cap, fmt, ap);
    va_end(ap);
    generate_request_free(g);
    return ERR_INVALID;
}

#define FAIL(c, ...) fail(out, code, code_cap, c, msg, msg_cap, __VA_ARGS__)

int generate_parse(const char *body, size_t len, struct generate_request *out, char *code, size_t code_cap,
                   char *msg, size_t msg_cap)
{
    cJSON *v;
    long plen;

    memset(out, 0, sizeof *out);
    out->aspect_ratio = "auto";
    out->resolution = "1K";
    out->root = cJSON_ParseWithLength(body, len);
    if (!cJSON_IsObject(out->root))
        return FAIL("invalid_json", "The body must be a JSON object: {\"input_url\":...,\"prompt\":...,"
                                    "\"aspect_ratio\":...,\"resolution\":...}.");
    v = cJSON_GetObjectItemCaseSensitive(out->root, "input_urls");
    if (v) {
        cJSON *item;
        int n = cJSON_GetArraySize(v);
        if (!cJSON_IsArray(v) || n < 1 || n > MAX_INPUT_URLS)
            return FAIL("invalid_input_urls", "input_urls must be an array of 1 to %d URLs.", MAX_INPUT_URLS);
        cJSON_ArrayForEach(item, v)
        {
            if (!cJSON_IsString(item) || !item->valuestring[0])
                return FAIL("invalid_input_urls", "input_urls must contain only non-empty strings.");
            out->input_urls[out->n_input_urls++] = item->valuestring;
        }
    } else {
        v = cJSON_GetObjectItemCaseSensitive(out->root, "input_url");
        if (!cJSON_IsString(v) || !v->valuestring[0])
            return FAIL("invalid_input_url",
                        "input_url is required: the URL (or /files/<name> path) that /upload returned.");
        out->input_urls[out->n_input_urls++] = v->valuestring;
    }
    v = cJSON_GetObjectItemCaseSensitive(out->root, "prompt");
    plen = cJSON_IsString(v) ? utf8_length(v->valuestring) : -1;
    if (plen < PROMPT_MIN_CHARS || plen > PROMPT_MAX_CHARS)
        return FAIL("invalid_prompt", "prompt must be UTF-8 text of %d to %d characters.", PROMPT_MIN_CHARS,
                    PROMPT_MAX_CHARS);
    out->prompt = v->valuestring;
    v = cJSON_GetObjectItemCaseSensitive(out->root, "aspect_ratio");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsString(v) || !aspect_ratio_valid(v->valuestring))
            return FAIL("invalid_aspect_ratio",
                        "aspect_ratio must be one of 1:1, 4:3, 3:4, 16:9, 9:16, 3:2, 2:3, auto.");
        out->aspect_ratio = v->valuestring;
    }
    v = cJSON_GetObjectItemCaseSensitive(out->root, "resolution");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsString(v) || !resolution_valid(v->valuestring))
            return FAIL("invalid_resolution", "resolution must be 1K or 2K.");
        out->resolution = v->valuestring;
    }
    v = cJSON_GetObjectItemCaseSensitive(out->root, "keep_result");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsBool(v))
            return FAIL("invalid_keep_result", "keep_result must be true or false.");
        out->keep_result = cJSON_IsTrue(v);
    }
    return 0;
}

void generate_request_free(struct generate_request *g)
{
    cJSON_Delete(g->root);
    g->root = NULL;
}
