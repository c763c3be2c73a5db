/* s3_live.c - the S3 builder against a live, SigV4-checking S3 server.
 *
 * Starts nothing: point it at a running server with the environment printed by
 * `tests/s3/s3-test-server.sh env` (S3_ENDPOINT, S3_BUCKET, S3_REGION,
 * S3_ACCESS_KEY, S3_SECRET_KEY). Only loopback endpoints are accepted.
 * Transfers use libcurl with exactly what s3.h returns; a read-back uses
 * /usr/bin/aws (aws-cli v2) as an independent client. Prints "N passed, N failed".
 * Build: tests/s3/sigv4_live_check.sh (or cc ... tests/unit/s3_live.c src/s3.c
 * src/sigv4.c src/sigv4_canon.c src/hex.c -lcurl -lcrypto).
 */
#include "s3.h"
#include "test.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define BODY_LEN 20000
#define RESP_MAX (8u << 20)
#define AWS_CLI "/usr/bin/aws"

extern char **environ;

struct buf {
    unsigned char *p;
    size_t len, cap;
};

struct upload {
    const unsigned char *p;
    size_t len, off;
};

static size_t on_write(char *data, size_t size, size_t n, void *userp)
{
    struct buf *b = userp;
    size_t add = size * n;
    if (add > RESP_MAX - b->len)
        return 0; /* refuse oversized answers */
    if (b->len + add + 1 > b->cap) {
        size_t ncap = (b->len + add + 1) * 2;
        unsigned char *np = realloc(b->p, ncap);
        if (np == NULL)
            return 0;
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, data, add);
    b->len += add;
    b->p[b->len] = '\0';
    return add;
}

static size_t on_read(char *dst, size_t size, size_t n, void *userp)
{
    struct upload *u = userp;
    size_t want = size * n, left = u->len - u->off;
    if (want > left)
        want = left;
    memcpy(dst, u->p + u->off, want);
    u->off += want;
    return want;
}

/* One HTTP exchange. extra: more header lines (NULL-terminated list) sent
 * after rq's. Returns the HTTP status, or -1 on a transport error. */
static long http(const char *method, const char *url, const struct s3_request *rq, const char *const *extra,
                 const void *body, size_t body_len, struct buf *resp)
{
    CURL *h = curl_easy_init();
    struct curl_slist *hl = NULL, *tmp;
    struct upload up = {body, body_len, 0};
    long status = -1;

    resp->len = 0;
    if (h == NULL)
        return -1;
    for (size_t i = 0; rq != NULL && i < rq->nheaders; i++) {
        if ((tmp = curl_slist_append(hl, rq->headers[i])) == NULL)
            goto out;
        hl = tmp;
    }
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        if ((tmp = curl_slist_append(hl, extra[i])) == NULL)
            goto out;
        hl = tmp;
    }
    if ((tmp = curl_slist_append(hl, "Expect:")) == NULL) /* no 100-continue round trip */
        goto out;
    hl = tmp;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROXY, ""); /* never leave loopback via an env proxy */
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
    if (strcmp(method, "PUT") == 0) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, &up);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)body_len);
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
out:
    curl_slist_free_all(hl);
    curl_easy_cleanup(h);
    return status;
}

static int same_body(const struct buf *b, const unsigned char *want, size_t len)
{
    return b->len == len && memcmp(b->p, want, len) == 0;
}

static void error_code(const struct buf *b, char *code, size_t cap)
{
    if (s3_parse_error((const char *)b->p, b->len, code, cap, NULL, 0) < 0)
        snprintf(code, cap, "(none)");
}

/* Run /usr/bin/aws s3api get-object into `outfile`; its JSON stdout goes to
 * `jsonfile`. Returns the exit status or -1. */
static int aws_get_object(const char *endpoint, const char *bucket, const char *region, const char *ak, const char *sk,
                          const char *key, const char *outfile, const char *jsonfile)
{
    char e_ak[256], e_sk[256], e_region[96], e_path[1024], e_home[1024];
    char *envp[] = {e_ak,
                    e_sk,
                    e_region,
                    e_path,
                    e_home,
                    "AWS_CONFIG_FILE=/dev/null",
                    "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
                    "AWS_EC2_METADATA_DISABLED=true",
                    "AWS_PAGER=",
                    NULL};
    char *argv[] = {AWS_CLI,        "--endpoint-url", (char *)endpoint, "s3api",         "get-object", "--bucket",
                    (char *)bucket, "--key",          (char *)key,      (char *)outfile, NULL};
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int st = 0, rc = -1;
    const char *path = getenv("PATH"), *home = getenv("HOME");

    snprintf(e_ak, sizeof(e_ak), "AWS_ACCESS_KEY_ID=%s", ak);
    snprintf(e_sk, sizeof(e_sk), "AWS_SECRET_ACCESS_KEY=%s", sk);
    snprintf(e_region, sizeof(e_region), "AWS_DEFAULT_REGION=%s", region);
    snprintf(e_path, sizeof(e_path), "PATH=%s", path ? path : "/usr/bin:/bin");
    snprintf(e_home, sizeof(e_home), "HOME=%s", home ? home : "/tmp");
    if (posix_spawn_file_actions_init(&fa) != 0)
        return -1;
    if (posix_spawn_file_actions_addopen(&fa, 1, jsonfile, O_WRONLY | O_CREAT | O_TRUNC, 0600) == 0 &&
        posix_spawn(&pid, AWS_CLI, &fa, NULL, argv, envp) == 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st))
        rc = WEXITSTATUS(st);
    posix_spawn_file_actions_destroy(&fa);
    return rc;
}

static int file_equals(const char *path, const unsigned char *want, size_t len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *got;
    size_t n;
    int eq = 0;
    if (f == NULL)
        return 0;
    got = malloc(len + 1);
    if (got != NULL) {
        n = fread(got, 1, len + 1, f);
        eq = n == len && memcmp(got, want, len) == 0;
        free(got);
    }
    fclose(f);
    return eq;
}

static int file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    char text[8192];
    size_t n;
    if (f == NULL)
        return 0;
    n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    return strstr(text, needle) != NULL;
}

static int random_uuid(char out[37])
{
    unsigned char b[16];
    static const char hex[] = "0123456789abcdef";
    FILE *f = fopen("/dev/urandom", "rb");
    size_t j = 0;
    if (f == NULL)
        return -1;
    if (fread(b, 1, sizeof(b), f) != sizeof(b)) {
        fclose(f);
        return -1;
    }
    fclose(f);
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[j++] = '-';
        out[j++] = hex[b[i] >> 4];
        out[j++] = hex[b[i] & 15];
    }
    out[j] = '\0';
    return 0;
}

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : def;
}

int main(void)
{
    const char *ep = env_or("S3_ENDPOINT", NULL), *bucket = env_or("S3_BUCKET", NULL);
    const char *region = env_or("S3_REGION", "us-east-1");
    const char *ak = env_or("S3_ACCESS_KEY", NULL), *sk = env_or("S3_SECRET_KEY", NULL);
    struct s3_request *rq = malloc(sizeof(*rq));
    struct buf resp = {NULL, 0, 0};
    unsigned char *body = malloc(BODY_LEN), *body2 = malloc(BODY_LEN);
    char uuid[37], key[S3_KEY_MAX + 1], key2[S3_KEY_MAX + 1], hash[65], code[64];
    char outfile[] = "/tmp/s3_live_out_XXXXXX", jsonfile[] = "/tmp/s3_live_json_XXXXXX";
    const char *weird = "live/it's (1)!*~ \xc3\xa9+x.png";
    time_t now = time(NULL);
    long st;
    int fd;

    if (ep == NULL || bucket == NULL || ak == NULL || sk == NULL) {
        fprintf(stderr, "set S3_ENDPOINT S3_BUCKET S3_ACCESS_KEY S3_SECRET_KEY "
                        "(eval \"$(tests/s3/s3-test-server.sh env)\")\n");
        return 2;
    }
    if (strncmp(ep, "http://127.0.0.1:", 17) != 0 && strncmp(ep, "http://localhost:", 17) != 0) {
        fprintf(stderr, "refusing non-loopback endpoint %s\n", ep);
        return 2;
    }
    if (rq == NULL || body == NULL || body2 == NULL || random_uuid(uuid) < 0 ||
        curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 2;
    if ((fd = mkstemp(outfile)) >= 0)
        close(fd);
    if ((fd = mkstemp(jsonfile)) >= 0)
        close(fd);
    for (size_t i = 0, x = 12345; i < BODY_LEN; i++) { /* binary body, with NULs */
        x = x * 1103515245u + 12345u;
        body[i] = (unsigned char)(x >> 16);
        body2[i] = (unsigned char)~body[i];
    }
    const struct s3_target t = {ep, 1, bucket, region, {ak, sk, NULL}};
    const struct s3_target wrong = {ep, 1, bucket, region, {ak, "not-the-secret", NULL}};
    s3_make_key("live/", uuid, "png", key, sizeof(key));
    printf("endpoint %s bucket %s key %s\n", ep, bucket, key);

    /* 1. header-signed PUT with the real payload hash */
    sigv4_sha256_hex(body, BODY_LEN, hash);
    TEST_ASSERT(s3_sign_put(&t, key, "image/png", BODY_LEN, hash, now, rq) == 0, "build PUT");
    st = http(rq->method, rq->url, rq, NULL, body, BODY_LEN, &resp);
    TEST_ASSERT(st == 200, "signed PUT -> %ld", st);

    /* 2. read back with an independent client */
    TEST_ASSERT(aws_get_object(ep, bucket, region, ak, sk, key, outfile, jsonfile) == 0,
                "aws s3api get-object exit status");
    TEST_ASSERT(file_equals(outfile, body, BODY_LEN), "aws get-object bytes identical");
    TEST_ASSERT(file_contains(jsonfile, "image/png"), "aws get-object reports ContentType image/png");

    /* 3. header-signed GET / HEAD */
    s3_sign_get(&t, "GET", key, now, rq);
    st = http(rq->method, rq->url, rq, NULL, NULL, 0, &resp);
    TEST_ASSERT(st == 200 && same_body(&resp, body, BODY_LEN), "signed GET -> %ld, %zu bytes", st, resp.len);
    s3_sign_get(&t, "HEAD", key, now, rq);
    st = http(rq->method, rq->url, rq, NULL, NULL, 0, &resp);
    TEST_ASSERT(st == 200, "signed HEAD -> %ld", st);

    /* 4. wrong secret is refused, and the XML error parses */
    s3_sign_put(&wrong, key, "image/png", BODY_LEN, hash, now, rq);
    st = http(rq->method, rq->url, rq, NULL, body2, BODY_LEN, &resp);
    error_code(&resp, code, sizeof(code));
    TEST_ASSERT(st == 403 && strcmp(code, "SignatureDoesNotMatch") == 0, "PUT with wrong secret -> %ld %s", st, code);
    s3_sign_get(&wrong, "GET", key, now, rq);
    st = http(rq->method, rq->url, rq, NULL, NULL, 0, &resp);
    TEST_ASSERT(st == 403, "GET with wrong secret -> %ld", st);

    /* 5. UNSIGNED-PAYLOAD and a key full of characters that need encoding */
    s3_sign_put(&t, weird, "image/png", BODY_LEN, NULL, now, rq);
    st = http(rq->method, rq->url, rq, NULL, body2, BODY_LEN, &resp);
    TEST_ASSERT(st == 200, "PUT UNSIGNED-PAYLOAD, key with ' ()!*~ space é + -> %ld", st);
    s3_sign_get(&t, "GET", weird, now, rq);
    st = http(rq->method, rq->url, rq, NULL, NULL, 0, &resp);
    TEST_ASSERT(st == 200 && same_body(&resp, body2, BODY_LEN), "GET of that key -> %ld", st);

    /* 6. presigned GET: ok, tampered, expired */
    s3_presign_get(&t, key, 300, now, rq);
    st = http("GET", rq->url, NULL, NULL, NULL, 0, &resp);
    TEST_ASSERT(st == 200 && same_body(&resp, body, BODY_LEN), "presigned GET -> %ld", st);
    {
        size_t n = strlen(rq->url);
        rq->url[n - 1] = rq->url[n - 1] == '0' ? '1' : '0';
        st = http("GET", rq->url, NULL, NULL, NULL, 0, &resp);
        error_code(&resp, code, sizeof(code));
        TEST_ASSERT(st == 403 && strcmp(code, "SignatureDoesNotMatch") == 0,
                    "presigned GET, tampered signature -> %ld %s", st, code);
    }
    s3_presign_get(&t, key, 60, now - 3600, rq);
    st = http("GET", rq->url, NULL, NULL, NULL, 0, &resp);
    error_code(&resp, code, sizeof(code));
    TEST_ASSERT(st == 403 && strcmp(code, "AccessDenied") == 0, "presigned GET, expired an hour ago -> %ld %s", st,
                code);
    s3_presign_get(&t, weird, 300, now, rq);
    st = http("GET", rq->url, NULL, NULL, NULL, 0, &resp);
    TEST_ASSERT(st == 200 && same_body(&resp, body2, BODY_LEN), "presigned GET, weird key -> %ld", st);

    /* 7. presigned PUT: content type signed */
    s3_make_key("live/", uuid, "jpg", key2, sizeof(key2));
    s3_presign_put(&t, key2, "image/jpeg", 300, now, rq);
    TEST_ASSERT(rq->nheaders == 1, "presigned PUT: one header to send");
    st = http("PUT", rq->url, rq, NULL, body2, BODY_LEN, &resp);
    TEST_ASSERT(st == 200, "presigned PUT with its Content-Type -> %ld", st);
    TEST_ASSERT(aws_get_object(ep, bucket, region, ak, sk, key2, outfile, jsonfile) == 0 &&
                    file_equals(outfile, body2, BODY_LEN) && file_contains(jsonfile, "image/jpeg"),
                "presigned PUT object read back by aws (bytes, ContentType)");
    {
        const char *const other_type[] = {"Content-Type: image/png", NULL};
        st = http("PUT", rq->url, NULL, other_type, body, BODY_LEN, &resp);
        TEST_ASSERT(st == 403, "presigned PUT with another Content-Type -> %ld", st);
    }
    st = http("GET", rq->url, NULL, NULL, NULL, 0, &resp);
    TEST_ASSERT(st == 403, "presigned PUT URL used for GET -> %ld", st);

    /* 8. errors and DELETE */
    s3_sign_get(&t, "DELETE", key2, now, rq);
    st = http(rq->method, rq->url, rq, NULL, NULL, 0, &resp);
    TEST_ASSERT(st == 204 || st == 200, "signed DELETE -> %ld", st);
    s3_sign_get(&t, "GET", key2, now, rq);
    st = http(rq->method, rq->url, rq, NULL, NULL, 0, &resp);
    error_code(&resp, code, sizeof(code));
    TEST_ASSERT(st == 404 && strcmp(code, "NoSuchKey") == 0, "GET after DELETE -> %ld %s", st, code);

    unlink(outfile);
    unlink(jsonfile);
    free(resp.p);
    free(rq);
    free(body);
    free(body2);
    curl_global_cleanup();
    return test_report();
}
