/* test_jsonprint.c - jsonprint_consume prints exactly what cJSON_PrintUnformatted
 * prints, for integers on both sides of int's range and of 2^53, fractions,
 * negative zero, 1e15 (where cJSON turns to exponents), huge and tiny doubles, nested arrays and objects, and KIE's
 * recordInfo answer. */
#include "jsonprint.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>

/* Parse `text` twice: print one tree with cJSON, the other with ours. */
static void same_as_cjson(const char *text)
{
    cJSON *a = cJSON_Parse(text);
    cJSON *b = cJSON_Parse(text);
    char *want = a ? cJSON_PrintUnformatted(a) : NULL;
    char *got = jsonprint_consume(b);

    TEST_ASSERT(a && b, "parses: %s", text);
    TEST_STR_EQ(got, want, text);
    cJSON_free(want);
    cJSON_free(got);
    cJSON_Delete(a);
    cJSON_Delete(b);
}

int main(void)
{
    static const char *const cases[] = {
        "0", "-0", "-0.0", "1", "-1", "200", "2147483647", "2147483648", "-2147483648", "-2147483649",
        "1765174761676", "-1765174761676", "999999999999999", "1000000000000000", "9007199254740991",
        "-9007199254740991", "9007199254740992", "9007199254740993", "18446744073709551616", "1e300", "-1e300",
        "1.5", "0.1", "-0.000001", "3.14159265358979", "123456789.123", "1e-300", "5e-324", "1.7976931348623157e308",
        "[1,2.5,[3,[4,{\"a\":5}]],-6e20]", "{\"a\":{\"b\":[1765174761676,{\"c\":0.25}]},\"d\":\"7\",\"e\":true,\"f\":null}",
        "{\"code\":200,\"message\":\"success\",\"data\":{\"taskId\":\"task_flux-2_1765174753676\",\"state\":\"success\","
        "\"resultJson\":\"{\\\"resultUrls\\\":[\\\"https://x/h.png\\\"]}\",\"costTime\":8,"
        "\"completeTime\":1765174761676,\"createTime\":1765174753676,\"updateTime\":1765174761676,"
        "\"creditsConsumed\":2.5}}",
        "[]", "{}", "\"text\"", "[[[[[[[[[[1765174761676]]]]]]]]]]",
    };
    char big[96]; /* three 20-digit numbers and the rest */

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        same_as_cjson(cases[i]);
    for (long long v = 1; v < 9007199254740992LL; v = v * 3 + 1) { /* every magnitude up to 2^53 */
        snprintf(big, sizeof big, "[%lld,%lld,%lld.5]", v, -v, v);
        same_as_cjson(big);
    }
    {
        /* numbers made in code, not parsed (valueint saturates past int) */
        cJSON *a = cJSON_CreateObject(), *b = cJSON_CreateObject();
        char *want, *got;
        double vals[] = {1765174761676.0, 4294967296.0, -3.0, 0.5, 1e17};
        for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
            snprintf(big, sizeof big, "k%zu", i);
            cJSON_AddNumberToObject(a, big, vals[i]);
            cJSON_AddNumberToObject(b, big, vals[i]);
        }
        want = cJSON_PrintUnformatted(a);
        got = jsonprint_consume(b);
        TEST_STR_EQ(got, want, "numbers added in code");
        cJSON_free(want);
        cJSON_free(got);
        cJSON_Delete(a);
        cJSON_Delete(b);
    }
    TEST_ASSERT(jsonprint_consume(NULL) == NULL, "NULL tree");
    return test_report();
}
