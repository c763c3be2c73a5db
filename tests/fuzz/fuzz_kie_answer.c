/* fuzz_kie_answer.c - kie_map() on arbitrary KIE answers.
 *
 * Input: byte 0 picks the HTTP status (low nibble), is_status (bit 4) and the
 * transport outcome (bits 5-6); the rest is the answer body, handed over with
 * its exact length (not NUL-terminated). Checks: the status we would answer
 * is a real HTTP error or 200; 200 carries a JSON object and nothing else
 * does; errors have a code and a message; a well-formed success is never
 * turned into an error; recordInfo resultUrls are resultJson's string URLs. */
#include "fuzz_check.h"
#include "kie.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const long STATUSES[16] = {200, 200, 0, 201, 400, 401, 402, 404, 422, 429, 455, 500, 502, 503, 504, 302};

/* recordInfo: when data.resultJson is a JSON string holding a resultUrls
 * array, data.resultUrls must be exactly its string items, in order. (Other
 * shapes are passed through as KIE sent them; clients check the type.) */
static void check_result_urls(const cJSON *json)
{
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(json, "data");
    const cJSON *rj = cJSON_GetObjectItemCaseSensitive(data, "resultJson");
    const cJSON *urls = cJSON_GetObjectItemCaseSensitive(data, "resultUrls");
    cJSON *parsed;
    const cJSON *want;
    const cJSON *w;
    const cJSON *u;

    if (!cJSON_IsObject(data) || !cJSON_IsString(rj))
        return;
    parsed = cJSON_Parse(rj->valuestring);
    want = cJSON_GetObjectItemCaseSensitive(parsed, "resultUrls");
    if (cJSON_IsArray(want)) {
        FUZZ_CHECK(cJSON_IsArray(urls), "resultJson has resultUrls but data.resultUrls is not an array");
        u = urls->child;
        cJSON_ArrayForEach(w, want)
        {
            if (!cJSON_IsString(w))
                continue;
            FUZZ_CHECK(u && cJSON_IsString(u) && strcmp(u->valuestring, w->valuestring) == 0,
                       "data.resultUrls does not match resultJson");
            u = u->next;
        }
        FUZZ_CHECK(u == NULL, "data.resultUrls has more items than resultJson");
    }
    cJSON_Delete(parsed);
}

/* Does the body say "success" the way KIE does: an object with code 200? */
static int body_is_success(const char *body, size_t len)
{
    cJSON *j = len ? cJSON_ParseWithLength(body, len) : NULL;
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(j, "code");
    int ok = cJSON_IsObject(j) && cJSON_IsNumber(code) && code->valuedouble == 200.0;

    cJSON_Delete(j);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kie_outcome o;
    long http;
    int is_status;
    unsigned transport;
    const char *body;
    size_t len;
    char terr[64];
    char *printed;

    if (size < 1)
        return 0;
    http = STATUSES[data[0] & 0x0f];
    is_status = (data[0] >> 4) & 1;
    transport = (data[0] >> 5) & 3;
    body = (const char *)data + 1;
    len = size - 1;
    if (transport == 3)
        transport = KIE_OK;
    memset(terr, 0, sizeof terr);
    memcpy(terr, body, len < sizeof terr - 1 ? len : sizeof terr - 1);

    kie_map((enum kie_transport)transport, terr, 30, http, len ? body : NULL, len, is_status,
            is_status ? "recordInfo" : "createTask", &o);

    FUZZ_CHECK(o.status >= 200 && o.status <= 599 && o.status != 201, "answer status %u", o.status);
    FUZZ_CHECK(memchr(o.code, 0, sizeof o.code) && memchr(o.message, 0, sizeof o.message) &&
                   memchr(o.kie_msg, 0, sizeof o.kie_msg),
               "unterminated text in the outcome");
    if (transport == KIE_TIMEOUT)
        FUZZ_CHECK(o.status == 504 && strcmp(o.code, "upstream_timeout") == 0, "timeout -> %u %s", o.status, o.code);
    if (transport == KIE_UNREACHABLE)
        FUZZ_CHECK(o.status == 502 && strcmp(o.code, "upstream_unreachable") == 0, "unreachable -> %u", o.status);
    if (o.status == 200) {
        FUZZ_CHECK(cJSON_IsObject(o.json), "200 without a JSON object");
        FUZZ_CHECK(o.code[0] == '\0', "200 with error code %s", o.code);
        FUZZ_CHECK(http == 200 || http == 0, "HTTP %ld answered as success", http);
        if (is_status)
            check_result_urls(o.json);
        printed = cJSON_PrintUnformatted(o.json);
        FUZZ_CHECK(printed != NULL, "outcome JSON cannot be printed");
        cJSON_free(printed);
    } else {
        FUZZ_CHECK(o.json == NULL, "error %u still holds JSON", o.status);
        FUZZ_CHECK(o.code[0] != '\0' && o.message[0] != '\0', "error %u without code or message", o.status);
    }
    if (transport == KIE_OK && http == 200 && body_is_success(body, len))
        FUZZ_CHECK(o.status == 200, "KIE success (HTTP 200, code 200) mapped to %u %s", o.status, o.code);
    kie_outcome_free(&o);
    FUZZ_CHECK(o.json == NULL, "kie_outcome_free left json set");
    return 0;
}
