/* test_validate.c - magic bytes, stored names, URLs and KIE field checks. */
#include "test.h"
#include "validate.h"

int main(void)
{
    static const unsigned char png[] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13};
    static const unsigned char jpg[] = {0xff, 0xd8, 0xff, 0xe0, 0, 16, 'J', 'F', 'I', 'F', 0, 1};
    static const unsigned char webp[] = {'R', 'I', 'F', 'F', 30, 0, 0, 0, 'W', 'E', 'B', 'P'};
    static const unsigned char riff_wav[] = {'R', 'I', 'F', 'F', 30, 0, 0, 0, 'W', 'A', 'V', 'E'};
    static const unsigned char gif[] = {'G', 'I', 'F', '8', '9', 'a', 0, 0, 0, 0, 0, 0};
    struct url_parts u;

    TEST_ASSERT(image_detect(png, sizeof png) == IMAGE_PNG, "png");
    TEST_ASSERT(image_detect(jpg, sizeof jpg) == IMAGE_JPEG, "jpeg");
    TEST_ASSERT(image_detect(webp, sizeof webp) == IMAGE_WEBP, "webp");
    TEST_ASSERT(image_detect(riff_wav, sizeof riff_wav) == IMAGE_UNKNOWN, "RIFF WAVE is not webp");
    TEST_ASSERT(image_detect(gif, sizeof gif) == IMAGE_UNKNOWN, "gif refused");
    TEST_ASSERT(image_detect(png, 7) == IMAGE_UNKNOWN, "short png prefix");
    TEST_ASSERT(image_detect(jpg, 0) == IMAGE_UNKNOWN, "empty");
    TEST_STR_EQ(image_mime(IMAGE_WEBP), "image/webp", "mime");
    TEST_STR_EQ(image_ext(IMAGE_JPEG), "jpg", "ext");
    TEST_ASSERT(image_from_mime("image/png") == IMAGE_PNG, "from mime");
    TEST_ASSERT(image_from_mime("image/jpeg") == IMAGE_JPEG && image_from_mime("image/webp") == IMAGE_WEBP &&
                    image_from_mime(NULL) == IMAGE_UNKNOWN && image_from_mime("IMAGE/PNG") == IMAGE_UNKNOWN,
                "every mime, exactly");
    TEST_ASSERT(image_from_mime("image/gif") == IMAGE_UNKNOWN, "gif mime");
    TEST_ASSERT(image_from_mime("image/png; x=1") == IMAGE_UNKNOWN, "mime with params");

    TEST_ASSERT(stored_name_check("0f8fad5b-d9cb-469f-a165-70867728950e.png") == IMAGE_PNG, "name ok");
    TEST_ASSERT(stored_name_check("0f8fad5b-d9cb-469f-a165-70867728950e.webp") == IMAGE_WEBP, "webp ok");
    TEST_ASSERT(stored_name_check("0F8FAD5B-d9cb-469f-a165-70867728950e.png") == IMAGE_UNKNOWN, "uppercase");
    TEST_ASSERT(stored_name_check("0f8fad5b-d9cb-469f-a165-70867728950e.png/") == IMAGE_UNKNOWN, "slash");
    TEST_ASSERT(stored_name_check("0f8fad5b-d9cb-469f-a165-70867728950e.gif") == IMAGE_UNKNOWN, "gif");
    TEST_ASSERT(image_from_ext("jpg") == IMAGE_JPEG && image_from_ext("png") == IMAGE_PNG &&
                    image_from_ext("webp") == IMAGE_WEBP,
                "extensions");
    TEST_ASSERT(image_from_ext("jpeg") == IMAGE_UNKNOWN && image_from_ext("PNG") == IMAGE_UNKNOWN &&
                    image_from_ext("") == IMAGE_UNKNOWN && image_from_ext(NULL) == IMAGE_UNKNOWN,
                "other extensions");
    TEST_ASSERT(result_name_check("task_flux-2_1764.png") == IMAGE_PNG, "result name");
    TEST_ASSERT(result_name_check("task.v2.webp") == IMAGE_WEBP, "result name with a dot in the id");
    TEST_ASSERT(result_name_check(".png") == IMAGE_UNKNOWN && result_name_check("task.gif") == IMAGE_UNKNOWN &&
                    result_name_check("not a task.png") == IMAGE_UNKNOWN && result_name_check("task") == IMAGE_UNKNOWN &&
                    result_name_check("../x.png") == IMAGE_UNKNOWN && result_name_check(NULL) == IMAGE_UNKNOWN,
                "not result names");
    {
        char longid[140];
        memset(longid, 'a', 128);
        memcpy(longid + 128, ".jpg", 5);
        TEST_ASSERT(result_name_check(longid) == IMAGE_JPEG, "128-character task id");
        memset(longid, 'a', 129);
        memcpy(longid + 129, ".jpg", 5);
        TEST_ASSERT(result_name_check(longid) == IMAGE_UNKNOWN, "129-character task id");
    }
    TEST_ASSERT(stored_name_check("../8fad5b-d9cb-469f-a165-70867728950e.png") == IMAGE_UNKNOWN, "dots");
    TEST_ASSERT(stored_name_check("0f8fad5bxd9cb-469f-a165-70867728950e.png") == IMAGE_UNKNOWN, "dash pos");
    TEST_ASSERT(stored_name_check("") == IMAGE_UNKNOWN, "empty");
    TEST_ASSERT(stored_name_check(NULL) == IMAGE_UNKNOWN, "null");
    TEST_ASSERT(stored_name_check(".upload-abcdef") == IMAGE_UNKNOWN, "spool");

    TEST_ASSERT(url_parse("https://Shop.Example.com:8443/a/b?x=1", &u) == 0, "parse");
    TEST_STR_EQ(u.host, "shop.example.com", "host lowercased");
    TEST_ASSERT(u.port == 8443, "port");
    TEST_STR_EQ(u.path_and_query, "/a/b?x=1", "path");
    TEST_ASSERT(url_parse("http://[::1]:80/x", &u) == 0 && strcmp(u.host, "::1") == 0, "ipv6");
    TEST_ASSERT(url_parse("http://h", &u) == 0 && u.path_and_query[0] == '\0', "bare host");
    TEST_ASSERT(url_parse("ftp://h/x", &u) != 0, "ftp");
    TEST_ASSERT(url_parse("http://", &u) != 0, "no host");
    TEST_ASSERT(url_parse("http://user@evil.com/", &u) != 0, "userinfo");
    TEST_ASSERT(url_parse("http://a b/", &u) != 0, "space");
    TEST_ASSERT(url_parse("http://h:99999/", &u) != 0, "port range");
    TEST_ASSERT(url_parse("http://h:0/", &u) != 0, "port 0");
    TEST_ASSERT(url_parse("http://h:/", &u) != 0, "empty port");
    TEST_ASSERT(url_parse("http://h\\@x/", &u) != 0, "backslash");
    TEST_ASSERT(url_parse("/files/x.png", &u) != 0, "relative");
    TEST_ASSERT(url_parse("http://127.0.0.%31/x", &u) != 0, "escaped host");

    TEST_ASSERT(url_host_is_private("localhost"), "localhost");
    TEST_ASSERT(url_host_is_private("localhost."), "localhost.");
    TEST_ASSERT(url_host_is_private("app.localhost"), "*.localhost");
    TEST_ASSERT(url_host_is_private("127.0.0.1"), "loopback");
    TEST_ASSERT(url_host_is_private("127.1"), "short loopback");
    TEST_ASSERT(url_host_is_private("2130706433"), "decimal loopback");
    TEST_ASSERT(url_host_is_private("0x7f.0.0.1"), "hex loopback");
    TEST_ASSERT(url_host_is_private("10.0.0.1"), "10/8");
    TEST_ASSERT(url_host_is_private("172.16.0.1") && url_host_is_private("172.31.255.255"), "172.16/12");
    TEST_ASSERT(!url_host_is_private("172.32.0.1"), "172.32 is public");
    TEST_ASSERT(url_host_is_private("192.168.0.10"), "192.168/16");
    TEST_ASSERT(url_host_is_private("169.254.169.254"), "link-local / metadata");
    TEST_ASSERT(url_host_is_private("100.64.0.1"), "CGNAT");
    TEST_ASSERT(url_host_is_private("0.0.0.0"), "unspecified");
    TEST_ASSERT(url_host_is_private("::1") && url_host_is_private("::"), "v6 loopback");
    TEST_ASSERT(url_host_is_private("fd00::1") && url_host_is_private("fe80::1"), "ULA, link-local");
    TEST_ASSERT(url_host_is_private("::ffff:127.0.0.1"), "mapped loopback");
    TEST_ASSERT(url_host_is_private("api"), "single label");
    TEST_ASSERT(!url_host_is_private("8.8.8.8"), "public v4");
    TEST_ASSERT(!url_host_is_private("2001:db8::1"), "public v6");
    TEST_ASSERT(!url_host_is_private("abc.trycloudflare.com"), "tunnel host");
    TEST_ASSERT(!url_host_is_private("bucket.s3.us-east-1.amazonaws.com"), "s3 host");

    TEST_ASSERT(utf8_length("abc") == 3, "ascii");
    TEST_ASSERT(utf8_length("\xc3\xa9t\xc3\xa9") == 3, "accents");
    TEST_ASSERT(utf8_length("\xf0\x9f\x93\xb7") == 1, "emoji");
    TEST_ASSERT(utf8_length("\xc3") == -1, "truncated");
    TEST_ASSERT(utf8_length("\xc0\xaf") == -1, "overlong");
    TEST_ASSERT(utf8_length("\xff") == -1, "invalid byte");

    TEST_ASSERT(aspect_ratio_valid("16:9") && aspect_ratio_valid("auto"), "aspect ok");
    TEST_ASSERT(!aspect_ratio_valid("5:4") && !aspect_ratio_valid("") && !aspect_ratio_valid(NULL), "aspect bad");
    TEST_ASSERT(resolution_valid("2K") && !resolution_valid("4K") && !resolution_valid("1k"), "resolution");
    TEST_ASSERT(task_id_valid("task_flux-2_1765174753676"), "task id");
    TEST_ASSERT(!task_id_valid("a/b") && !task_id_valid("") && !task_id_valid("a b") && !task_id_valid("a&b=c"),
                "task id bad");
    {
        long long st = -1, ln = -1;
        TEST_ASSERT(range_parse("bytes=0-9", 100, &st, &ln) == 0 && st == 0 && ln == 10, "first ten");
        TEST_ASSERT(range_parse("bytes=90-", 100, &st, &ln) == 0 && st == 90 && ln == 10, "open end");
        TEST_ASSERT(range_parse("bytes=-20", 100, &st, &ln) == 0 && st == 80 && ln == 20, "suffix");
        TEST_ASSERT(range_parse("bytes=-500", 100, &st, &ln) == 0 && st == 0 && ln == 100, "suffix > size");
        TEST_ASSERT(range_parse("bytes=50-500", 100, &st, &ln) == 0 && st == 50 && ln == 50, "end clipped");
        TEST_ASSERT(range_parse("bytes=100-", 100, &st, &ln) == 1, "start past end: 416");
        TEST_ASSERT(range_parse("bytes=-0", 100, &st, &ln) == 1, "empty suffix: 416");
        TEST_ASSERT(range_parse("bytes=5-1", 100, &st, &ln) == -1, "reversed: ignored");
        TEST_ASSERT(range_parse("bytes=0-1,5-6", 100, &st, &ln) == -1, "several ranges: ignored");
        TEST_ASSERT(range_parse("items=0-1", 100, &st, &ln) == -1, "other unit: ignored");
        TEST_ASSERT(range_parse("bytes=99999999999999999999-", 100, &st, &ln) == -1, "huge: ignored");
        TEST_ASSERT(range_parse("bytes=x-1", 100, &st, &ln) == -1, "junk: ignored");
    }
    return test_report();
}
