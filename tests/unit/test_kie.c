/* test_kie.c - createTask bodies and the mapping of every kind of KIE answer. */
#include "kie.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

static unsigned map(const char *body, long http, int is_status, struct kie_outcome *o)
{
    kie_map(KIE_OK, NULL, 30, http, body, body ? strlen(body) : 0, is_status, "createTask", o);
    return o->status;
}

int main(void)
{
    const char *urls[] = {"https://x.example/a.png", "https://x.example/b.png"};
    struct kie_input in = {"flux-2/pro-image-to-image", urls, 2, "a \"quoted\" prompt", "4:3", "2K", NULL};
    struct kie_outcome o;
    cJSON *j;
    char *body = kie_create_body(&in);

    j = cJSON_Parse(body);
    TEST_ASSERT(j != NULL, "body is JSON");
    TEST_STR_EQ(cJSON_GetObjectItem(j, "model")->valuestring, "flux-2/pro-image-to-image", "model");
    TEST_ASSERT(cJSON_GetObjectItem(j, "callBackUrl") == NULL, "no callback");
    {
        cJSON *input = cJSON_GetObjectItem(j, "input");
        TEST_ASSERT(cJSON_GetArraySize(cJSON_GetObjectItem(input, "input_urls")) == 2, "two urls");
        TEST_STR_EQ(cJSON_GetObjectItem(input, "prompt")->valuestring, "a \"quoted\" prompt", "prompt escaped");
        TEST_STR_EQ(cJSON_GetObjectItem(input, "aspect_ratio")->valuestring, "4:3", "aspect");
        TEST_STR_EQ(cJSON_GetObjectItem(input, "resolution")->valuestring, "2K", "resolution");
    }
    cJSON_Delete(j);
    free(body);
    in.callback_url = "https://pub.example/kie/callback?token=abc";
    body = kie_create_body(&in);
    TEST_ASSERT(strstr(body, "\"callBackUrl\":\"https://pub.example/kie/callback?token=abc\"") != NULL, "callback");
    free(body);

    TEST_ASSERT(map("{\"code\":200,\"msg\":\"success\",\"data\":{\"taskId\":\"t1\"}}", 200, 0, &o) == 200, "ok");
    TEST_ASSERT(o.json != NULL, "json kept");
    kie_outcome_free(&o);
    TEST_ASSERT(map("{\"code\":402,\"msg\":\"Insufficient credits\"}", 200, 0, &o) == 402, "402 in 200");
    TEST_ASSERT(strstr(o.message, "Insufficient credits") && strstr(o.message, "credits"), "message kept");
    TEST_ASSERT(o.kie_code == 402, "kie code");
    TEST_ASSERT(map("{\"code\":401,\"msg\":\"You do not have access permissions\"}", 401, 0, &o) == 401, "401");
    TEST_ASSERT(strstr(o.message, "KIE_API_KEY") != NULL, "401 hint names the key");
    TEST_ASSERT(map("{\"code\":429,\"msg\":\"rate\"}", 429, 0, &o) == 429, "429");
    TEST_ASSERT(map("{\"code\":455,\"msg\":\"maintenance\"}", 200, 0, &o) == 503, "455 -> 503");
    TEST_ASSERT(map("{\"code\":501,\"msg\":\"failed\"}", 200, 0, &o) == 501, "501 kept");
    TEST_ASSERT(map("{\"code\":200000,\"msg\":\"odd\"}", 200, 0, &o) == 502, "odd code -> 502");
    TEST_ASSERT(map("{\"code\":99,\"msg\":\"odd\"}", 200, 0, &o) == 502, "low code -> 502");
    TEST_ASSERT(map("<html>oops</html>", 200, 0, &o) == 502 && strcmp(o.code, "upstream_bad_response") == 0,
                "non-JSON");
    TEST_ASSERT(map("Internal error", 500, 0, &o) == 502 && strcmp(o.code, "upstream_error") == 0, "HTTP 500");
    TEST_ASSERT(map("{}", 503, 0, &o) == 502, "HTTP 503 without code");
    TEST_ASSERT(map("{\"msg\":\"no code\"}", 200, 0, &o) == 502, "missing code");
    TEST_ASSERT(map("[1,2]", 200, 0, &o) == 502, "array");
    TEST_ASSERT(map(NULL, 200, 0, &o) == 502, "empty body");
    TEST_ASSERT(map("too many", 429, 0, &o) == 429, "429 HTML");
    kie_map(KIE_TIMEOUT, "timeout", 30, 0, NULL, 0, 0, "createTask", &o);
    TEST_ASSERT(o.status == 504 && strstr(o.message, "KIE_TIMEOUT_SECONDS"), "timeout 504");
    kie_map(KIE_UNREACHABLE, "Connection refused", 30, 0, NULL, 0, 0, "createTask", &o);
    TEST_ASSERT(o.status == 502 && strstr(o.message, "Connection refused"), "unreachable 502");

    /* recordInfo: resultUrls parsed from the resultJson string */
    TEST_ASSERT(map("{\"code\":200,\"message\":\"success\",\"data\":{\"taskId\":\"t\",\"state\":\"success\","
                    "\"resultJson\":\"{\\\"resultUrls\\\":[\\\"https://r.example/1.png\\\"]}\"}}",
                    200, 1, &o) == 200,
                "status ok");
    {
        cJSON *urls_j = cJSON_GetObjectItem(cJSON_GetObjectItem(o.json, "data"), "resultUrls");
        TEST_ASSERT(cJSON_GetArraySize(urls_j) == 1 &&
                        strcmp(cJSON_GetArrayItem(urls_j, 0)->valuestring, "https://r.example/1.png") == 0,
                    "resultUrls added");
    }
    kie_outcome_free(&o);
    TEST_ASSERT(map("{\"code\":200,\"data\":{\"state\":\"generating\",\"resultJson\":\"\"}}", 200, 1, &o) == 200,
                "no result yet");
    TEST_ASSERT(cJSON_GetObjectItem(cJSON_GetObjectItem(o.json, "data"), "resultUrls") == NULL, "no resultUrls");
    kie_outcome_free(&o);
    TEST_ASSERT(map("{\"code\":200,\"data\":{\"state\":\"success\",\"resultJson\":\"{broken\"}}", 200, 1, &o) == 200,
                "broken resultJson tolerated");
    kie_outcome_free(&o);
    TEST_ASSERT(map("{\"code\":422,\"msg\":\"recordInfo is null\",\"data\":null}", 200, 1, &o) == 422,
                "recordInfo is null");
    return test_report();
}
