/* fuzz_generate.c - POST /generate body parsing (generate_parse) and, when it
 * accepts, the createTask body built from it (kie_create_body).
 *
 * Checks beyond "no crash": an accepted request satisfies every documented
 * limit, a refused one has a known error code, a message and nothing left to
 * free, and the createTask body parses back to exactly the accepted fields. */
#include "fuzz_check.h"
#include "generate.h"
#include "kie.h"
#include "validate.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const CODES[] = {"invalid_json",       "invalid_input_urls", "invalid_input_url",
                                    "invalid_prompt",     "invalid_aspect_ratio", "invalid_resolution",
                                    "invalid_keep_result", "invalid_photo_name", "unknown_field"};
static const char *const FIELDS[] = {"input_url", "input_urls", "prompt", "aspect_ratio", "resolution", "keep_result",
                                     "photo_name"};

/* An accepted body names only known fields, and has no NUL in it. */
static void check_fields(const cJSON *root, const uint8_t *data, size_t size)
{
    const cJSON *v;
    FUZZ_CHECK(memchr(data, 0, size) == NULL, "a body with a NUL byte was accepted");
    cJSON_ArrayForEach(v, root)
    {
        size_t i = 0;
        while (i < sizeof FIELDS / sizeof FIELDS[0] && strcmp(v->string, FIELDS[i]) != 0)
            i++;
        FUZZ_CHECK(i < sizeof FIELDS / sizeof FIELDS[0], "unknown field '%s' accepted", v->string);
    }
}

static int known_code(const char *code)
{
    for (size_t i = 0; i < sizeof CODES / sizeof CODES[0]; i++)
        if (strcmp(code, CODES[i]) == 0)
            return 1;
    return 0;
}

static const char *str_item(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int same(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

static void check_body(const struct generate_request *g, const char *callback)
{
    const char *model = "flux-2/pro-image-to-image";
    struct kie_input in = {model, g->input_urls, g->n_input_urls, g->prompt, g->aspect_ratio, g->resolution,
                           callback};
    char *text = kie_create_body(&in);
    cJSON *root = NULL;
    const cJSON *input;
    const cJSON *urls;
    size_t i = 0;
    const cJSON *u;

    FUZZ_CHECK(text != NULL, "kie_create_body failed on an accepted request");
    root = cJSON_Parse(text);
    FUZZ_CHECK(cJSON_IsObject(root), "createTask body is not a JSON object: %s", text);
    FUZZ_CHECK(same(str_item(root, "model"), model), "model lost");
    FUZZ_CHECK(callback ? same(str_item(root, "callBackUrl"), callback)
                        : cJSON_GetObjectItemCaseSensitive(root, "callBackUrl") == NULL,
               "callBackUrl wrong");
    input = cJSON_GetObjectItemCaseSensitive(root, "input");
    FUZZ_CHECK(cJSON_IsObject(input), "input missing");
    FUZZ_CHECK(same(str_item(input, "prompt"), g->prompt), "prompt changed on the way to KIE");
    FUZZ_CHECK(same(str_item(input, "aspect_ratio"), g->aspect_ratio), "aspect_ratio changed");
    FUZZ_CHECK(same(str_item(input, "resolution"), g->resolution), "resolution changed");
    urls = cJSON_GetObjectItemCaseSensitive(input, "input_urls");
    FUZZ_CHECK(cJSON_IsArray(urls) && (size_t)cJSON_GetArraySize(urls) == g->n_input_urls, "input_urls count");
    cJSON_ArrayForEach(u, urls)
    {
        FUZZ_CHECK(cJSON_IsString(u) && same(u->valuestring, g->input_urls[i]), "input_urls[%zu] changed", i);
        i++;
    }
    cJSON_Delete(root);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct generate_request g;
    char code[48];
    char msg[256];
    long plen;

    memset(code, 0, sizeof code);
    memset(msg, 0, sizeof msg);
    if (generate_parse((const char *)data, size, &g, code, sizeof code, msg, sizeof msg) != 0) {
        FUZZ_CHECK(known_code(code), "unknown error code '%s'", code);
        FUZZ_CHECK(msg[0] != '\0', "error without a message (code %s)", code);
        FUZZ_CHECK(g.root == NULL, "refused request still owns its JSON");
        return 0;
    }
    FUZZ_CHECK(g.root != NULL, "accepted request without JSON");
    check_fields(g.root, data, size);
    FUZZ_CHECK(g.n_input_urls >= 1 && g.n_input_urls <= MAX_INPUT_URLS, "%zu input urls", g.n_input_urls);
    for (size_t i = 0; i < g.n_input_urls; i++)
        FUZZ_CHECK(g.input_urls[i] && g.input_urls[i][0], "input url %zu empty", i);
    FUZZ_CHECK(g.prompt != NULL, "no prompt");
    plen = utf8_length(g.prompt);
    FUZZ_CHECK(plen >= PROMPT_MIN_CHARS && plen <= PROMPT_MAX_CHARS, "prompt of %ld characters accepted", plen);
    FUZZ_CHECK(aspect_ratio_valid(g.aspect_ratio), "aspect_ratio '%s' accepted", g.aspect_ratio);
    FUZZ_CHECK(resolution_valid(g.resolution), "resolution '%s' accepted", g.resolution);
    FUZZ_CHECK(g.keep_result == 0 || g.keep_result == 1, "keep_result %d", g.keep_result);
    FUZZ_CHECK(!g.photo_name || photo_name_valid(g.photo_name), "photo_name '%s' accepted", g.photo_name);
    check_body(&g, (size & 1) ? "https://pub.example.com/kie/callback?token=abc" : NULL);
    generate_request_free(&g);
    FUZZ_CHECK(g.root == NULL, "generate_request_free left root set");
    return 0;
}
