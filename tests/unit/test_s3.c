/* test_s3.c - the S3 request builder: URL shapes, key encoding, signed
 * headers and presigned URLs (expected values from botocore with a frozen
 * clock, via sigv4_oracle.py), and the XML error and ListObjectsV2 parsers
 * on hostile input.
 * usage: build/test_s3
 */
#include "s3.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

#define T0 ((time_t)1795521600) /* 20261124T120000Z */
#define UUID "0f8fad5b-d9cb-469f-a165-70867728950e"
#define WEIRD_KEY "uploads/it's (1)!*~ \xc3\xa9+x.png"
#define WEIRD_ENC "uploads/it%27s%20%281%29%21%2A~%20%C3%A9%2Bx.png"
#define LOCAL "http://127.0.0.1:4569"

static const struct s3_target local = {LOCAL, 1, "test-bucket", "us-east-1", {"S3RVER", "S3RVER", NULL}};

static void test_keys_and_urls(void)
{
    char key[S3_KEY_MAX + 1], url[S3_URL_MAX];
    struct s3_target t = {
        NULL, 0, "my-bucket", "eu-west-3", {"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", NULL}};

    TEST_ASSERT(s3_make_key("uploads/", UUID, "png", key, sizeof(key)) == 0, "make key");
    TEST_STR_EQ(key, "uploads/" UUID ".png", "key shape");
    TEST_ASSERT(s3_make_key("", UUID, "jpg", key, sizeof(key)) == 0 && strcmp(key, UUID ".jpg") == 0,
                "key without prefix");
    TEST_ASSERT(s3_make_key("uploads/", UUID, "p/ng", key, sizeof(key)) < 0 && key[0] == '\0',
                "ext with slash refused");
    TEST_ASSERT(s3_make_key("uploads/", "../x", "png", key, sizeof(key)) < 0, "bad uuid refused");
    TEST_ASSERT(s3_make_key("uploads/", UUID, "png", key, 20) < 0 && key[0] == '\0', "key overflow refused");

    TEST_ASSERT(s3_object_url(&t, "uploads/" UUID ".png", url, sizeof(url)) == 0, "vhost URL");
    TEST_STR_EQ(url, "https://my-bucket.s3.eu-west-3.amazonaws.com/uploads/" UUID ".png",
                "default endpoint is virtual-host style");
    t.path_style = 1;
    s3_object_url(&t, "uploads/" UUID ".png", url, sizeof(url));
    TEST_STR_EQ(url, "https://s3.eu-west-3.amazonaws.com/my-bucket/uploads/" UUID ".png",
                "default endpoint, path style");
    s3_object_url(&local, WEIRD_KEY, url, sizeof(url));
    TEST_STR_EQ(url, LOCAL "/test-bucket/" WEIRD_ENC, "path style local endpoint, key encoded");

    t.endpoint = "http://localhost:9000/";
    t.path_style = 0;
    s3_object_url(&t, "a b", url, sizeof(url));
    TEST_STR_EQ(url, "http://my-bucket.localhost:9000/a%20b", "vhost on a custom endpoint");
    t.endpoint = "https://minio.test:443";
    t.path_style = 1;
    s3_object_url(&t, "k", url, sizeof(url));
    TEST_STR_EQ(url, "https://minio.test/my-bucket/k", "default https port dropped");
    t.endpoint = "http://127.0.0.1:80";
    s3_object_url(&t, "k", url, sizeof(url));
    TEST_STR_EQ(url, "http://127.0.0.1/my-bucket/k", "default http port dropped");

    static const char *const bad_endpoints[] = {
        "ftp://127.0.0.1",  "127.0.0.1:4569",    "http://",         "http://user@127.0.0.1",
        "http://h/base",    "http://h:",         "http://h:12x",    "http://:80",
        "http://h:1234567", "http://[::1]:4569", "http://h\r\nX: y"};
    for (size_t i = 0; i < sizeof(bad_endpoints) / sizeof(bad_endpoints[0]); i++) {
        t.endpoint = bad_endpoints[i];
        TEST_ASSERT(s3_object_url(&t, "k", url, sizeof(url)) < 0 && url[0] == '\0', "bad endpoint refused: %s",
                    bad_endpoints[i]);
    }
    t.endpoint = LOCAL;
    t.bucket = "Bad_Bucket";
    TEST_ASSERT(s3_object_url(&t, "k", url, sizeof(url)) < 0, "bad bucket refused");
    t.bucket = "ab";
    TEST_ASSERT(s3_object_url(&t, "k", url, sizeof(url)) < 0, "short bucket refused");
    t.bucket = "my-bucket";
    t.region = "us east";
    TEST_ASSERT(s3_object_url(&t, "k", url, sizeof(url)) < 0, "bad region refused");
    t.region = "us-east-1";
    TEST_ASSERT(s3_object_url(&t, "", url, sizeof(url)) < 0, "empty key refused");
    TEST_ASSERT(s3_object_url(&t, "a\nb", url, sizeof(url)) < 0, "control char in key refused");
    {
        char *longkey = malloc(S3_KEY_MAX + 2);
        if (longkey != NULL) {
            memset(longkey, 'k', S3_KEY_MAX);
            longkey[S3_KEY_MAX] = '\0';
            TEST_ASSERT(s3_object_url(&t, longkey, url, sizeof(url)) == 0, "1024-byte key accepted");
            longkey[S3_KEY_MAX] = 'k';
            longkey[S3_KEY_MAX + 1] = '\0';
            TEST_ASSERT(s3_object_url(&t, longkey, url, sizeof(url)) < 0, "1025-byte key refused");
            free(longkey);
        }
    }
    TEST_ASSERT(s3_object_url(&local, "k", url, 30) < 0 && url[0] == '\0', "URL overflow refused");
}

static void test_signed_requests(void)
{
    struct s3_request *rq = malloc(sizeof(*rq));
    struct s3_target tok = local;
    if (rq == NULL)
        return;

    /* botocore: sign GET <weird key> --payload e3b0... */
    TEST_ASSERT(s3_sign_get(&local, "GET", WEIRD_KEY, T0, rq) == 0, "sign GET");
    TEST_STR_EQ(rq->method, "GET", "GET method");
    TEST_STR_EQ(rq->url, LOCAL "/test-bucket/" WEIRD_ENC, "GET URL");
    TEST_ASSERT(rq->nheaders == 3, "GET header count %zu", rq->nheaders);
    TEST_STR_EQ(rq->headers[0], "x-amz-content-sha256: " SIGV4_EMPTY_SHA256, "GET payload header");
    TEST_STR_EQ(rq->headers[1], "x-amz-date: 20261124T120000Z", "GET date header");
    TEST_STR_EQ(rq->headers[2],
                "Authorization: AWS4-HMAC-SHA256 Credential=S3RVER/20261124/us-east-1/s3/"
                "aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="
                "28685d11f5b1a3636a1687ad48361a0ba8c51cb00368f0e4c017850fc3121bde",
                "GET Authorization (botocore)");
    TEST_ASSERT(s3_sign_get(&local, "HEAD", WEIRD_KEY, T0, rq) == 0 && strcmp(rq->method, "HEAD") == 0 &&
                    rq->nheaders == 3,
                "sign HEAD");
    TEST_ASSERT(s3_sign_get(&local, "POST", WEIRD_KEY, T0, rq) < 0 && rq->nheaders == 0 && rq->url[0] == '\0',
                "sign_get refuses POST");

    /* botocore: sign PUT <weird key> Content-Type: image/png, UNSIGNED-PAYLOAD */
    TEST_ASSERT(s3_sign_put(&local, WEIRD_KEY, "image/png", 20000, NULL, T0, rq) == 0, "sign PUT");
    TEST_STR_EQ(rq->method, "PUT", "PUT method");
    TEST_ASSERT(rq->nheaders == 5, "PUT header count %zu", rq->nheaders);
    TEST_STR_EQ(rq->headers[0], "Content-Type: image/png", "PUT content type");
    TEST_STR_EQ(rq->headers[1], "Content-Length: 20000", "PUT content length");
    TEST_STR_EQ(rq->headers[2], "x-amz-content-sha256: UNSIGNED-PAYLOAD", "PUT payload header");
    TEST_STR_EQ(rq->headers[4],
                "Authorization: AWS4-HMAC-SHA256 Credential=S3RVER/20261124/us-east-1/s3/"
                "aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date, "
                "Signature=76f3de989996b881ef04d9f556f229fe35b82c88720737dca90001fc5f5c5cad",
                "PUT Authorization (botocore)");

    /* botocore: session token as a signed header */
    tok.creds =
        (struct sigv4_creds){"ASIAEXAMPLE", "secret/with+chars", "FwoGZXIvYXdzEBYaDExampleSessionToken/with+plus=="};
    TEST_ASSERT(s3_sign_put(&tok, "uploads/x.png", "image/png", 21,
                            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072", T0, rq) == 0 &&
                    rq->nheaders == 6,
                "sign PUT with token");
    TEST_STR_EQ(rq->headers[4],
                "x-amz-security-token: FwoGZXIvYXdzEBYaDExampleSessionToken/with+plus==", "token header");
    TEST_STR_EQ(rq->headers[5],
                "Authorization: AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/20261124/us-east-1/s3/"
                "aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;"
                "x-amz-security-token, Signature="
                "274058b549394996e6478edf6651338700044d6461d802f7fb4580252b3dab8d",
                "PUT with token Authorization (botocore)");

    TEST_ASSERT(s3_sign_put(&local, "k", "image/png\r\nX-Evil: 1", 1, NULL, T0, rq) < 0 && rq->nheaders == 0,
                "CR/LF in content type refused");
    TEST_ASSERT(s3_sign_put(&local, "k", "image/png", 1, "ABC", T0, rq) < 0, "bad hash refused");
    TEST_ASSERT(s3_sign_put(&local, "k", "", 1, NULL, T0, rq) < 0, "empty content type refused");
    tok.creds.secret_key = "";
    TEST_ASSERT(s3_sign_get(&tok, "GET", "k", T0, rq) < 0, "empty secret refused");
    tok.creds = (struct sigv4_creds){"S3RVER", "S3RVER", "bad\ntoken"};
    TEST_ASSERT(s3_sign_get(&tok, "GET", "k", T0, rq) < 0, "token with newline refused");
    free(rq);
}

static void test_presigned(void)
{
    struct s3_request *rq = malloc(sizeof(*rq));
    const struct s3_target aws = {
        NULL, 0, "my-bucket", "eu-west-3", {"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", NULL}};
    struct s3_target tok = local;
    if (rq == NULL)
        return;

    /* botocore client-presign GET, virtual-host style, eu-west-3, 600 s */
    TEST_ASSERT(s3_presign_get(&aws, "uploads/" UUID ".png", 600, T0, rq) == 0, "presign vhost");
    TEST_STR_EQ(rq->url,
                "https://my-bucket.s3.eu-west-3.amazonaws.com/uploads/" UUID ".png?X-Amz-Algorithm="
                "AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20261124%2Feu-west-3%2F"
                "s3%2Faws4_request&X-Amz-Date=20261124T120000Z&X-Amz-Expires=600"
                "&X-Amz-SignedHeaders=host&X-Amz-Signature="
                "cc7a01e44faeccf689402ba29f8b55643ea0eaae84b936a1a44d97aad2520f73",
                "presigned GET, default endpoint (botocore)");
    TEST_ASSERT(rq->nheaders == 0 && strcmp(rq->method, "GET") == 0, "presigned GET: no headers");

    TEST_ASSERT(s3_presign_get(&local, WEIRD_KEY, 900, T0, rq) == 0, "presign path style");
    TEST_STR_EQ(rq->url,
                LOCAL "/test-bucket/" WEIRD_ENC "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                      "&X-Amz-Credential=S3RVER%2F20261124%2Fus-east-1%2Fs3%2Faws4_request"
                      "&X-Amz-Date=20261124T120000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host"
                      "&X-Amz-Signature="
                      "4d5d78e02a00dd24321d24fc416d135cad60c5a52c6e69bd399c2b951b05dea6",
                "presigned GET, weird key (botocore)");

    TEST_ASSERT(s3_presign_put(&local, WEIRD_KEY, "image/png", 900, T0, rq) == 0, "presign PUT");
    TEST_STR_EQ(rq->url,
                LOCAL "/test-bucket/" WEIRD_ENC "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                      "&X-Amz-Credential=S3RVER%2F20261124%2Fus-east-1%2Fs3%2Faws4_request"
                      "&X-Amz-Date=20261124T120000Z&X-Amz-Expires=900"
                      "&X-Amz-SignedHeaders=content-type%3Bhost&X-Amz-Signature="
                      "d5d9cf644f25e652e90e93aa1d90e94afb4c064896662b322cd277231f99c5f9",
                "presigned PUT signing content-type (botocore)");
    TEST_ASSERT(rq->nheaders == 1 && strcmp(rq->method, "PUT") == 0, "presigned PUT: 1 header");
    TEST_STR_EQ(rq->headers[0], "Content-Type: image/png", "presigned PUT: header to send");

    tok.creds.session_token = "tok/en+=";
    TEST_ASSERT(s3_presign_get(&tok, "k", 60, T0, rq) == 0 &&
                    strstr(rq->url, "&X-Amz-Security-Token=tok%2Fen%2B%3D&") != NULL,
                "presigned GET carries the session token");
    TEST_ASSERT(s3_presign_get(&local, "k", 0, T0, rq) < 0 && rq->url[0] == '\0', "expires 0 refused");
    TEST_ASSERT(s3_presign_get(&local, "k", 604801, T0, rq) < 0, "expires > 7 days refused");
    TEST_ASSERT(s3_presign_put(&local, "k", NULL, 60, T0, rq) < 0, "presign PUT needs a type");
    free(rq);
}

static void test_error_parser(void)
{
    char code[64], msg[256];
    const char *ok = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SignatureDoesNotMatch</Code>"
                     "<Message>The request signature we calculated does not match the signature you "
                     "provided.</Message><RequestId>1</RequestId></Error>";

    TEST_ASSERT(s3_parse_error(ok, strlen(ok), code, sizeof(code), msg, sizeof(msg)) == 0, "parse a real error");
    TEST_STR_EQ(code, "SignatureDoesNotMatch", "code");
    TEST_STR_EQ(msg,
                "The request signature we calculated does not match the signature you "
                "provided.",
                "message");

    const char *ent = "<Error><Code>A&amp;B</Code><Message>x &lt;b&gt; &quot;c&quot; &apos;d&apos;"
                      " &bogus; &amp</Message></Error>";
    s3_parse_error(ent, strlen(ent), code, sizeof(code), msg, sizeof(msg));
    TEST_STR_EQ(code, "A&B", "entity in code");
    TEST_STR_EQ(msg, "x <b> \"c\" 'd' &bogus; &amp", "entities decoded, unknown kept");

    const char *trunc = "<Error><Code>AccessDen";
    TEST_ASSERT(s3_parse_error(trunc, strlen(trunc), code, sizeof(code), msg, sizeof(msg)) < 0 && code[0] == '\0' &&
                    msg[0] == '\0',
                "truncated body");
    /* the closing tag lies beyond len: must not be found */
    TEST_ASSERT(s3_parse_error(ok, 60, code, sizeof(code), msg, sizeof(msg)) < 0, "cut by len");
    const char *nocode = "<Error><Message>x</Message></Error>";
    TEST_ASSERT(s3_parse_error(nocode, strlen(nocode), code, sizeof(code), msg, sizeof(msg)) < 0, "missing Code");
    const char *nomsg = "<Error><Code>NoSuchKey</Code></Error>";
    TEST_ASSERT(s3_parse_error(nomsg, strlen(nomsg), code, sizeof(code), msg, sizeof(msg)) == 0 &&
                    strcmp(code, "NoSuchKey") == 0 && msg[0] == '\0',
                "missing Message");
    const char *emptycode = "<Code></Code>";
    TEST_ASSERT(s3_parse_error(emptycode, strlen(emptycode), code, sizeof(code), NULL, 0) < 0, "empty Code");
    const char *ctl = "<Code>A\nB\x01</Code>";
    s3_parse_error(ctl, strlen(ctl), code, sizeof(code), NULL, 0);
    TEST_STR_EQ(code, "A?B?", "control characters neutralised");
    TEST_ASSERT(s3_parse_error(ok, strlen(ok), code, 4, msg, 8) == 0 && strcmp(code, "Sig") == 0 &&
                    strcmp(msg, "The req") == 0,
                "values truncated to the caller's buffers");
    TEST_ASSERT(s3_parse_error(NULL, 10, code, sizeof(code), msg, sizeof(msg)) < 0, "NULL body");
    TEST_ASSERT(s3_parse_error(ok, 0, code, sizeof(code), msg, sizeof(msg)) < 0, "empty body");
    TEST_ASSERT(s3_parse_error(ok, strlen(ok), NULL, 0, msg, sizeof(msg)) < 0, "no code buffer");
    TEST_ASSERT(s3_parse_error("<Code>x</Code>", 14, code, sizeof(code), NULL, 5) == 0 && strcmp(code, "x") == 0,
                "NULL message buffer");
    {
        /* exact-size heap copies, not NUL-terminated: ASan catches any over-read */
        const char *tight = "<Error><Code>Tight</Code><Message>m</Message>";
        size_t n = strlen(tight);
        char *b = malloc(n);
        if (b != NULL) {
            memcpy(b, tight, n);
            TEST_ASSERT(s3_parse_error(b, n, code, sizeof(code), msg, sizeof(msg)) == 0 && strcmp(code, "Tight") == 0 &&
                            strcmp(msg, "m") == 0,
                        "unterminated buffer");
            TEST_ASSERT(s3_parse_error(b, n - 1, code, sizeof(code), msg, sizeof(msg)) == 0 && msg[0] == '\0',
                        "unterminated buffer, message cut");
            free(b);
        }
    }
    {
        /* huge bodies: a 4 MiB message is truncated; a Code past the scan window is ignored */
        size_t n = 4u << 20;
        char *b = malloc(n);
        if (b != NULL) {
            memset(b, 'A', n);
            memcpy(b, "<Code>Big</Code><Message>", 25);
            memcpy(b + (1u << 20) - 20, "</Message>", 10); /* a ~1 MiB message */
            TEST_ASSERT(s3_parse_error(b, n, code, sizeof(code), msg, sizeof(msg)) == 0 && strcmp(code, "Big") == 0 &&
                            strlen(msg) == sizeof(msg) - 1 && msg[0] == 'A',
                        "huge message truncated to the caller's buffer");
            memset(b, 'A', n);
            memcpy(b + (2u << 20), "<Code>Late</Code>", 17);
            TEST_ASSERT(s3_parse_error(b, n, code, sizeof(code), msg, sizeof(msg)) < 0,
                        "Code beyond the scan window ignored");
            free(b);
        }
    }
}

static void test_list_requests(void)
{
    struct s3_request *rq = malloc(sizeof(*rq));
    struct s3_target vh = local;
    char big[S3_TOKEN_MAX + 2];
    if (rq == NULL)
        return;

    /* botocore S3SigV4Auth, clock frozen at T0: GET <url> with x-amz-content-sha256 e3b0... */
    TEST_ASSERT(s3_sign_list(&local, "tasks/i/", "tasks/i/8204478359999-task_l4", NULL, 2, T0, rq) == 0,
                "sign a listing after a key");
    TEST_STR_EQ(rq->method, "GET", "list method");
    TEST_STR_EQ(rq->url,
                LOCAL "/test-bucket?list-type=2&max-keys=2&prefix=tasks%2Fi%2F&start-after=tasks%2Fi%2F"
                      "8204478359999-task_l4",
                "list URL: bucket path, canonical query");
    TEST_ASSERT(rq->nheaders == 3, "list header count %zu", rq->nheaders);
    TEST_STR_EQ(rq->headers[2],
                "Authorization: AWS4-HMAC-SHA256 Credential=S3RVER/20261124/us-east-1/s3/aws4_request, "
                "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
                "Signature=682df656e500e166f41c08e7bfb4ced37d81471e0c41b45a09589982c4b18455",
                "list Authorization (botocore)");
    TEST_ASSERT(s3_sign_list(&local, "tasks/i/", NULL, "1/ab+c=", 1000, T0, rq) == 0, "sign a continuation");
    TEST_STR_EQ(rq->url,
                LOCAL "/test-bucket?continuation-token=1%2Fab%2Bc%3D&list-type=2&max-keys=1000&prefix=tasks%2Fi%2F",
                "continuation URL");
    TEST_STR_EQ(rq->headers[2],
                "Authorization: AWS4-HMAC-SHA256 Credential=S3RVER/20261124/us-east-1/s3/aws4_request, "
                "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
                "Signature=26ba1c82c000536db11f60819dad9e4b02a856daa60920ce22880832f8c239a0",
                "continuation Authorization (botocore)");
    vh.path_style = 0;
    vh.endpoint = NULL;
    TEST_ASSERT(s3_sign_list(&vh, "", "", "", 5, T0, rq) == 0, "list everything, virtual-host style");
    TEST_STR_EQ(rq->url, "https://test-bucket.s3.us-east-1.amazonaws.com/?list-type=2&max-keys=5",
                "virtual-host list URL, empty prefix left out");

    TEST_ASSERT(s3_sign_list(&local, "p/", NULL, NULL, 0, T0, rq) < 0 && rq->url[0] == '\0', "max-keys 0 refused");
    TEST_ASSERT(s3_sign_list(&local, "p/", NULL, NULL, 1001, T0, rq) < 0, "max-keys 1001 refused");
    TEST_ASSERT(s3_sign_list(&local, "p/", "p/a", "tok", 5, T0, rq) < 0, "start-after and a token refused");
    TEST_ASSERT(s3_sign_list(&local, "p/\n", NULL, NULL, 5, T0, rq) < 0, "control character in prefix refused");
    TEST_ASSERT(s3_sign_list(&local, "p/", NULL, "a b", 5, T0, rq) < 0, "space in token refused");
    memset(big, 'A', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    TEST_ASSERT(s3_sign_list(&local, "p/", NULL, big, 5, T0, rq) < 0, "token longer than S3_TOKEN_MAX refused");
    free(rq);
}

struct keys {
    char all[2048];
    int n;
    int stop_at;
};

static int on_key(const char *key, void *arg)
{
    struct keys *k = arg;
    size_t len = strlen(k->all);
    snprintf(k->all + len, sizeof(k->all) - len, "%s|", key);
    return ++k->n == k->stop_at ? 7 : 0;
}

static int parse(const char *body, struct keys *k, int *trunc, char *tok, size_t *skipped)
{
    memset(k, 0, sizeof(*k));
    return s3_parse_list(body, strlen(body), on_key, k, trunc, tok, S3_TOKEN_MAX + 1, skipped);
}

static void test_list_parser(void)
{
    struct keys k;
    char tok[S3_TOKEN_MAX + 1];
    int trunc;
    size_t skipped;
    const char *real =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/"
        "2006-03-01/\"><Name>b</Name><Prefix>tasks/i/</Prefix><NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/"
        "wm36Hy4vbOwM=</NextContinuationToken><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><IsTruncated>true</"
        "IsTruncated><Contents><Key>tasks/i/1-a</Key><LastModified>2026-11-24T12:00:00.000Z</LastModified><ETag>"
        "&quot;d41d&quot;</ETag><Size>0</Size></Contents><Contents><Key>tasks/i/2-b&amp;c</Key><Size>0</Size>"
        "</Contents><CommonPrefixes><Prefix>tasks/i/x/</Prefix></CommonPrefixes></ListBucketResult>";

    TEST_ASSERT(parse(real, &k, &trunc, tok, &skipped) == 0, "parse a ListObjectsV2 page");
    TEST_STR_EQ(k.all, "tasks/i/1-a|tasks/i/2-b&c|", "keys in order, entities decoded, prefixes not keys");
    TEST_ASSERT(trunc == 1 && skipped == 0, "truncated, nothing skipped");
    TEST_STR_EQ(tok, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=", "continuation token");

    const char *last = "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a&#x41;&#66;</Key>"
                       "</Contents></ListBucketResult>";
    TEST_ASSERT(parse(last, &k, &trunc, tok, &skipped) == 0 && trunc == 0 && tok[0] == '\0', "last page");
    TEST_STR_EQ(k.all, "aAB|", "numeric references decoded");

    const char *empty = "<ListBucketResult><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>";
    TEST_ASSERT(parse(empty, &k, &trunc, tok, &skipped) == 0 && k.n == 0, "no keys");

    const char *bad_keys =
        "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>ok1</Key></Contents>"
        "<Contents><Key>a&#10;b</Key></Contents><Contents><Key>a&bogus;</Key></Contents><Contents><Key>&#xE9;</Key>"
        "</Contents><Contents><Key></Key></Contents><Contents><Size>0</Size></Contents><Contents><Key>a\x01</Key>"
        "</Contents><Contents><Key>ok2</Key></Contents></ListBucketResult>";
    TEST_ASSERT(parse(bad_keys, &k, &trunc, tok, &skipped) == 0, "page with bad keys");
    TEST_STR_EQ(k.all, "ok1|ok2|", "only valid keys reach the callback");
    TEST_ASSERT(skipped == 6, "bad keys counted (%zu)", skipped);

    {
        char longkey[S3_KEY_MAX + 200];
        int n = snprintf(longkey, sizeof(longkey), "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>");
        memset(longkey + n, 'k', S3_KEY_MAX + 1);
        snprintf(longkey + n + S3_KEY_MAX + 1, sizeof(longkey) - (size_t)n - S3_KEY_MAX - 1,
                 "</Key></Contents></ListBucketResult>");
        TEST_ASSERT(parse(longkey, &k, &trunc, tok, &skipped) == 0 && k.n == 0 && skipped == 1,
                    "a key longer than S3_KEY_MAX is skipped, not truncated");
    }

    TEST_ASSERT(parse(real, &k, &trunc, tok, &skipped) == 0 && k.n == 2, "again");
    memset(&k, 0, sizeof(k));
    k.stop_at = 1;
    TEST_ASSERT(s3_parse_list(real, strlen(real), on_key, &k, &trunc, tok, sizeof(tok), NULL) == 7 && k.n == 1,
                "the callback stops the parse with its value");

    static const char *const malformed[] = {
        "<Error><Code>AccessDenied</Code></Error>",
        "<ListBucketResult><Contents><Key>a</Key></Contents></ListBucketResult>",
        "<ListBucketResult><IsTruncated>maybe</IsTruncated></ListBucketResult>",
        "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
        "<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>a b</NextContinuationToken>"
        "</ListBucketResult>",
        "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a</Key>",
        "<ListBucketResult><IsTruncated>false",
        "",
    };
    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++)
        TEST_ASSERT(parse(malformed[i], &k, &trunc, tok, &skipped) < 0 && k.n == 0, "malformed listing %zu refused", i);
    TEST_ASSERT(s3_parse_list(real, strlen(real), on_key, &k, &trunc, tok, 8, NULL) < 0 && tok[0] == '\0',
                "a token longer than the caller's buffer is an error, not truncated");
    TEST_ASSERT(s3_parse_list(NULL, 5, on_key, &k, &trunc, tok, sizeof(tok), NULL) < 0, "NULL body");
    {
        /* exact-size heap copy, not NUL-terminated, cut inside a key: ASan catches any over-read */
        size_t n = strlen(real);
        char *b = malloc(n);
        if (b != NULL) {
            memcpy(b, real, n);
            memset(&k, 0, sizeof(k));
            TEST_ASSERT(s3_parse_list(b, n, on_key, &k, &trunc, tok, sizeof(tok), NULL) == 0 && k.n == 2,
                        "unterminated buffer");
            memset(&k, 0, sizeof(k));
            TEST_ASSERT(
                s3_parse_list(b, (size_t)(strstr(real, "2-b") - real), on_key, &k, &trunc, tok, sizeof(tok), NULL) < 0,
                "body cut inside a Contents element");
            free(b);
        }
    }
    {
        size_t n = S3_LIST_SCAN_MAX + 1;
        char *b = malloc(n);
        if (b != NULL) {
            memset(b, ' ', n);
            memcpy(b, last, strlen(last));
            TEST_ASSERT(s3_parse_list(b, n, on_key, &k, &trunc, tok, sizeof(tok), NULL) < 0,
                        "an answer over S3_LIST_SCAN_MAX is refused");
            free(b);
        }
    }
}

int main(void)
{
    test_keys_and_urls();
    test_signed_requests();
    test_presigned();
    test_error_parser();
    test_list_requests();
    test_list_parser();
    return test_report();
}
