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

static const char *const KNOWN_FIELDS[] = {"input_url", "input_urls", "prompt", "aspect_ratio", "resolution",
                                           "keep_result", "photo_name"};
#define N_KNOWN_FIELDS (sizeof KNOWN_FIELDS / sizeof KNOWN_FIELDS[0])

/* Edit distance of a and b, lowercased and without '_' or '-' (so
 * "aspectRatio" is 0 from "aspect_ratio"); names are short (<= 64). */
static size_t name_distance(const char *a, const char *b)
{
    char x[65], y[65];
    size_t n = 0, m = 0, row[65];

    for (; *a && n < 64; a++)
        if (*a != '_' && *a != '-')
            x[n++] = (char)((*a >= 'A' && *a <= 'Z') ? *a + 32 : *a);
    for (; *b && m < 64; b++)
        if (*b != '_' && *b != '-')
            y[m++] = (char)((*b >= 'A' && *b <= 'Z') ? *b + 32 : *b);
    for (size_t j = 0; j <= m; j++)
        row[j] = j;
    for (size_t i = 1; i <= n; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= m; j++) {
            size_t up = row[j];
            size_t best = diag + (x[i - 1] != y[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[m];
}

/* The known field closest to `name`, or NULL when none is close. */
static const char *closest_field(const char *name)
{
    const char *best = NULL;
    size_t best_d = 4; /* more than 3 edits away: no suggestion */
    if (strlen(name) > 64)
        return NULL;
    for (size_t i = 0; i < N_KNOWN_FIELDS; i++) {
        size_t d = name_distance(name, KNOWN_FIELDS[i]);
        if (d < best_d) {
            best_d = d;
            best = KNOWN_FIELDS[i];
        }
    }
    return best;
}

/* JSON's \u0000 escape (any case): a NUL inside a string, which C strings
 * cannot carry faithfully. */
static int has_nul_escape(const char *p, size_t len)
{
    for (size_t i = 0; i + 6 <= len; i++)
        if (p[i] == '\\' && (p[i + 1] == 'u' || p[i + 1] == 'U') && memcmp(p + i + 2, "0000", 4) == 0) {
            size_t bs = 0; /* an escaped backslash before it makes it text */
            for (size_t k = i; k > 0 && p[k - 1] == '\\'; k--)
                bs++;
            if (bs % 2 == 0)
                return 1;
        }
    return 0;
}

int generate_parse(const char *body, size_t len, struct generate_request *out, char *code, size_t code_cap,
                   char *msg, size_t msg_cap)
{
    cJSON *v;
    const char *end = NULL;
    long plen;

    memset(out, 0, sizeof *out);
    out->aspect_ratio = "auto";
    out->resolution = "1K";
    if (memchr(body, '\0', len) || has_nul_escape(body, len))
        return FAIL("invalid_json", "The body contains a NUL character, which no field may hold.");
    out->root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!cJSON_IsObject(out->root))
        return FAIL("invalid_json", "The body must be a JSON object: {\"input_url\":...,\"prompt\":...,"
                                    "\"aspect_ratio\":...,\"resolution\":...}.");
    while (end && end < body + len && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
        end++;
    if (!end || end != body + len)
        return FAIL("invalid_json", "The body has more after the JSON object (%zu bytes): send exactly one object.",
                    end ? (size_t)(body + len - end) : len);
    cJSON_ArrayForEach(v, out->root)
    {
        size_t i = 0;
        while (i < N_KNOWN_FIELDS && strcmp(v->string, KNOWN_FIELDS[i]) != 0)
            i++;
        if (i == N_KNOWN_FIELDS) {
            const char *near = closest_field(v->string);
            if (near)
                return FAIL("unknown_field", "Unknown field \"%.64s\": did you mean \"%s\"?", v->string, near);
            return FAIL("unknown_field",
                        "Unknown field \"%.64s\": the fields are input_url (or input_urls), prompt, aspect_ratio, "
                        "resolution, keep_result and photo_name.",
                        v->string);
        }
    }
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
    v = cJSON_GetObjectItemCaseSensitive(out->root, "photo_name");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsString(v) || !photo_name_valid(v->valuestring))
            return FAIL("invalid_photo_name",
                        "photo_name must be the photo's file name: 1 to %d bytes of UTF-8 without control "
                        "characters, '/' or '\\'.",
                        PHOTO_NAME_MAX);
        out->photo_name = v->valuestring;
    }
    return 0;
}

void generate_request_free(struct generate_request *g)
{
    cJSON_Delete(g->root);
    g->root = NULL;
}
