/* test_generate.c - the POST /generate body: fields, unknown fields with a
 * suggestion, trailing bytes, NUL characters. */
#include "generate.h"
#include "test.h"

#include <string.h>

static int parse(const char *body, size_t len, char *code, char *msg)
{
    struct generate_request g;
    int rc = generate_parse(body, len, &g, code, 48, msg, 512);
    if (rc == 0)
        generate_request_free(&g);
    return rc;
}

#define PARSE(s) parse(s, sizeof(s) - 1, code, msg)

int main(void)
{
    char code[48], msg[512];
    struct generate_request g;

    TEST_ASSERT(PARSE("{\"input_url\":\"/files/x\",\"prompt\":\"studio shot\"}") == 0, "minimal");
    TEST_ASSERT(PARSE("  {\"input_url\":\"/files/x\",\"prompt\":\"studio shot\"} \r\n") == 0, "whitespace around");
    TEST_ASSERT(PARSE("{\"input_url\":\"/files/x\",\"prompt\":\"studio shot\",\"aspectRatio\":\"1:1\"}") != 0 &&
                    strcmp(code, "unknown_field") == 0 && strstr(msg, "\"aspectRatio\"") &&
                    strstr(msg, "did you mean \"aspect_ratio\""),
                "aspectRatio: %s %s", code, msg);
    TEST_ASSERT(PARSE("{\"input_url\":\"/files/x\",\"prompt\":\"studio shot\",\"resolutoin\":\"1K\"}") != 0 &&
                    strstr(msg, "did you mean \"resolution\""),
                "typo: %s", msg);
    TEST_ASSERT(PARSE("{\"input_url\":\"/files/x\",\"prompt\":\"studio shot\",\"zzzzzzzzzzzz\":1}") != 0 &&
                    strcmp(code, "unknown_field") == 0 && !strstr(msg, "did you mean") && strstr(msg, "keep_result"),
                "far: %s", msg);
    TEST_ASSERT(PARSE("{\"input_url\":\"/files/x\",\"prompt\":\"studio shot\"}xyz") != 0 &&
                    strcmp(code, "invalid_json") == 0 && strstr(msg, "more after"),
                "trailing bytes: %s %s", code, msg);
    TEST_ASSERT(PARSE("{\"input_url\":\"/files/x\",\"prompt\":\"studio shot\"}{}") != 0, "two objects");
    TEST_ASSERT(PARSE("{\"input_url\":\"/files/x\",\"prompt\":\"studio\\u0000 shot\"}") != 0 &&
                    strstr(msg, "NUL"),
                "escaped NUL: %s", msg);
    TEST_ASSERT(PARSE("{\"input_url\":\"/files/x\",\"prompt\":\"studio\\\\u0000 shot\"}") == 0,
                "an escaped backslash before u0000 is text: %s", msg);
    {
        static const char raw[] = "{\"input_url\":\"/files/x\",\"prompt\":\"studio\0 shot\"}";
        TEST_ASSERT(parse(raw, sizeof raw - 1, code, msg) != 0 && strstr(msg, "NUL"), "raw NUL: %s", msg);
    }
    static const char several[] = "{\"input_urls\":[\"a\",\"b\"],\"prompt\":\"abc\",\"keep_result\":true}";
    TEST_ASSERT(generate_parse(several, sizeof several - 1, &g, code, 48, msg, 512) == 0 &&
                    g.n_input_urls == 2 && g.keep_result == 1 && strcmp(g.aspect_ratio, "auto") == 0,
                "several urls: %s", msg);
    generate_request_free(&g);
    return test_report();
}
