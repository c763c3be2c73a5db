/* test_config.c - the configuration table, .env parsing and precedence. */
#include "config.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *fake_env[32][2];
static size_t n_fake;

static const char *lookup(const char *name)
{
    for (size_t i = 0; i < n_fake; i++)
        if (strcmp(fake_env[i][0], name) == 0)
            return fake_env[i][1];
    return NULL;
}

static void set_env(const char *k, const char *v)
{
    for (size_t i = 0; i < n_fake; i++)
        if (strcmp(fake_env[i][0], k) == 0) {
            fake_env[i][1] = v;
            return;
        }
    fake_env[n_fake][0] = k;
    fake_env[n_fake][1] = v;
    n_fake++;
}

int main(void)
{
    struct config c;
    char errors[2048];
    char path[] = "/tmp/ppa-test-env-XXXXXX";
    long v;
    int b;
    FILE *f;
    int fd;

    TEST_ASSERT(config_parse_long("42", 0, 100, &v) == 0 && v == 42, "long");
    TEST_ASSERT(config_parse_long("abc", 0, 100, &v) != 0, "not a number");
    TEST_ASSERT(config_parse_long("12abc", 0, 100, &v) != 0, "trailing junk");
    TEST_ASSERT(config_parse_long("101", 0, 100, &v) != 0, "range");
    TEST_ASSERT(config_parse_long("", 0, 100, &v) != 0, "empty");
    TEST_ASSERT(config_parse_long("99999999999999999999999", 0, 100, &v) != 0, "overflow");
    TEST_ASSERT(config_parse_bool("yes", &b) == 0 && b == 1, "bool yes");
    TEST_ASSERT(config_parse_bool("0", &b) == 0 && b == 0, "bool 0");
    TEST_ASSERT(config_parse_bool("maybe", &b) != 0, "bool bad");

    /* defaults */
    n_fake = 0;
    TEST_ASSERT(config_load(&c, NULL, lookup, errors, sizeof errors) == 0, "defaults load: %s", errors);
    TEST_ASSERT(c.port == 8000, "default port");
    TEST_STR_EQ(c.host, "0.0.0.0", "default host");
    TEST_STR_EQ(c.upload_dir, "./uploads", "default upload dir");
    TEST_STR_EQ(c.kie_base_url, "https://api.kie.ai", "default KIE base");
    TEST_STR_EQ(c.kie_model, "flux-2/pro-image-to-image", "default model");
    TEST_ASSERT(c.max_upload_bytes == 33554432, "32 MiB");
    TEST_ASSERT(c.kie_timeout_seconds == 30, "timeout");
    TEST_ASSERT(c.kie_api_key == NULL && c.public_base_url == NULL, "unset");
    TEST_STR_EQ(c.aws_region, "us-east-1", "region default");
    config_free(&c);

    /* .env, with the environment winning */
    fd = mkstemp(path);
    f = fdopen(fd, "w");
    fputs("# comment\n\nexport PORT=9001\nKIE_API_KEY=\"from-dotenv\"\nKIE_BASE_URL=http://127.0.0.1:5/ # trailing\n"
          "CORS_ORIGINS='https://a.example'\nAWS_DEFAULT_REGION=eu-west-3\n",
          f);
    fclose(f);
    n_fake = 0;
    set_env("PORT", "9002");
    TEST_ASSERT(config_load(&c, path, lookup, errors, sizeof errors) == 0, "dotenv load: %s", errors);
    TEST_ASSERT(c.port == 9002, "env wins over .env");
    TEST_STR_EQ(c.kie_api_key, "from-dotenv", "quoted value");
    TEST_STR_EQ(c.kie_base_url, "http://127.0.0.1:5", "inline comment and trailing slash dropped");
    TEST_STR_EQ(c.cors_origins, "https://a.example", "single quotes");
    TEST_STR_EQ(c.aws_region, "eu-west-3", "AWS_DEFAULT_REGION fallback from .env");
    config_free(&c);

    /* every problem reported at once */
    n_fake = 0;
    set_env("PORT", "abc");
    set_env("MAX_UPLOAD_BYTES", "0");
    set_env("USE_S3", "1");
    set_env("LOG_FORMAT", "xml");
    TEST_ASSERT(config_load(&c, NULL, lookup, errors, sizeof errors) != 0, "invalid config refused");
    TEST_ASSERT(strstr(errors, "PORT") && strstr(errors, "MAX_UPLOAD_BYTES") && strstr(errors, "S3_BUCKET") &&
                    strstr(errors, "LOG_FORMAT"),
                "all errors listed: %s", errors);

    /* a secret's bad value is not echoed */
    n_fake = 0;
    set_env("S3_PRESIGN_TTL", "604801");
    TEST_ASSERT(config_load(&c, NULL, lookup, errors, sizeof errors) != 0, "TTL over 7 days refused");

    /* Lambda: uploads default to /tmp, AWS_LWA_PORT honoured */
    n_fake = 0;
    set_env("AWS_LAMBDA_FUNCTION_NAME", "fn");
    set_env("PORT", "8000");
    set_env("AWS_LWA_PORT", "8080"); /* wins, as it does for the adapter */
    TEST_ASSERT(config_load(&c, NULL, lookup, errors, sizeof errors) == 0, "lambda load: %s", errors);
    TEST_STR_EQ(c.upload_dir, "/tmp/uploads", "lambda upload dir");
    TEST_ASSERT(c.port == 8080 && c.on_lambda, "lambda port");
    config_free(&c);

    /* behind a proxy the per-IP cap is off unless set explicitly */
    n_fake = 0;
    TEST_ASSERT(config_load(&c, NULL, lookup, errors, sizeof errors) == 0 && c.per_ip_connections == 64,
                "per-IP default 64");
    config_free(&c);
    TEST_ASSERT(config_load(&c, NULL, lookup, errors, sizeof errors) == 0 && c.trust_proxy == TRUST_NONE,
                "TRUST_PROXY default: the socket peer");
    config_free(&c);
    set_env("TRUST_PROXY", "cloudflare");
    TEST_ASSERT(config_load(&c, NULL, lookup, errors, sizeof errors) == 0 && c.trust_proxy == TRUST_CLOUDFLARE &&
                    c.per_ip_connections == 0,
                "TRUST_PROXY=cloudflare, per-IP default off");
    config_free(&c);
    set_env("TRUST_PROXY", "maybe");
    TEST_ASSERT(config_load(&c, NULL, lookup, errors, sizeof errors) != 0 &&
                    strstr(errors, "TRUST_PROXY must be 0, 1 or cloudflare (got \"maybe\")"),
                "unknown TRUST_PROXY: %s", errors);
    config_free(&c);
    set_env("TRUST_PROXY", "1");
    TEST_ASSERT(config_load(&c, NULL, lookup, errors, sizeof errors) == 0 && c.per_ip_connections == 0 &&
                    c.trust_proxy == TRUST_XFF,
                "TRUST_PROXY=1: X-Forwarded-For, per-IP default off");
    config_free(&c);
    set_env("PER_IP_CONNECTIONS", "10");
    TEST_ASSERT(config_load(&c, NULL, lookup, errors, sizeof errors) == 0 && c.per_ip_connections == 10,
                "explicit value wins");
    config_free(&c);

    /* a broken .env line is an error, not silently skipped */
    f = fopen(path, "w");
    fputs("THIS LINE IS BROKEN\n", f);
    fclose(f);
    n_fake = 0;
    TEST_ASSERT(config_load(&c, path, lookup, errors, sizeof errors) != 0 && strstr(errors, ":1:"),
                "bad .env line reported: %s", errors);
    unlink(path);
    return test_report();
}
