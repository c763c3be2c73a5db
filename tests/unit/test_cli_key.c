/* test_cli_key.c - the CLI's Idempotency-Key: SHA-256 of a file, and a key
 * that is stable for the same input and changes with every field. */
#include "cli_key.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(data, 1, n, f) == n;
    if (f && fclose(f) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

static int key_of(const struct cli_key_input *in, char *out)
{
    return cli_idempotency_key(in, out, CLI_KEY_MAX);
}

int main(void)
{
    char dir[] = "/tmp/ppa-test-cli-key-XXXXXX";
    char path[256];
    char hex[CLI_SHA256_HEX];
    char err[256] = "";
    char base[CLI_KEY_MAX];
    char other[CLI_KEY_MAX];
    char small[40];
    struct cli_key_input in = {"", "studio shot", "1:1", "1K", ""};
    struct cli_key_input v;
    static unsigned char big[200000];

    TEST_ASSERT(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(path, sizeof path, "%s/photo.bin", dir);

    /* known digests: "" and "abc" (FIPS 180-2), and a file larger than one read */
    TEST_ASSERT(write_file(path, "", 0) == 0, "write empty");
    TEST_ASSERT(cli_file_sha256(path, hex, err, sizeof err) == 0, "sha256 empty: %s", err);
    TEST_STR_EQ(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "sha256 of nothing");
    TEST_ASSERT(write_file(path, "abc", 3) == 0, "write abc");
    TEST_ASSERT(cli_file_sha256(path, hex, err, sizeof err) == 0, "sha256 abc: %s", err);
    TEST_STR_EQ(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "sha256 of abc");
    memset(big, 'a', sizeof big);
    TEST_ASSERT(write_file(path, big, sizeof big) == 0, "write big");
    TEST_ASSERT(cli_file_sha256(path, hex, err, sizeof err) == 0, "sha256 big: %s", err);
    TEST_ASSERT(strlen(hex) == 64 && strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") != 0,
                "a 200 KB file hashes to 64 hex digits");
    TEST_ASSERT(cli_file_sha256("/nonexistent/photo.jpg", hex, err, sizeof err) == -1 && strstr(err, "cannot read"),
                "a missing file is an error: %s", err);

    /* the key: fixed prefix, 64 hex digits, the same for the same input */
    in.photo_sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    TEST_ASSERT(key_of(&in, base) == 0, "key");
    TEST_ASSERT(strncmp(base, "ppa-cli-1-", 10) == 0 && strlen(base) == 10 + 64, "key shape: %s", base);
    TEST_ASSERT(strspn(base + 10, "0123456789abcdef") == 64, "key is hex: %s", base);
    TEST_ASSERT(key_of(&in, other) == 0 && strcmp(base, other) == 0, "same input, same key");

    /* every field changes it */
    v = in; v.photo_sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    TEST_ASSERT(key_of(&v, other) == 0 && strcmp(base, other) != 0, "other photo");
    v = in; v.prompt = "studio shot.";
    TEST_ASSERT(key_of(&v, other) == 0 && strcmp(base, other) != 0, "other prompt");
    v = in; v.aspect_ratio = "4:3";
    TEST_ASSERT(key_of(&v, other) == 0 && strcmp(base, other) != 0, "other aspect ratio");
    v = in; v.resolution = "2K";
    TEST_ASSERT(key_of(&v, other) == 0 && strcmp(base, other) != 0, "other resolution");
    v = in; v.nonce = "0f8fad5b-d9cb-469f-a165-70867728950e";
    TEST_ASSERT(key_of(&v, other) == 0 && strcmp(base, other) != 0, "a nonce (--new)");
    /* fields are length-prefixed: moving text from one field to the next is another key */
    v = in; v.prompt = "studio shot1:1"; v.aspect_ratio = "";
    TEST_ASSERT(key_of(&v, other) == 0 && strcmp(base, other) != 0, "no ambiguity between fields");
    v = in; v.nonce = NULL;
    TEST_ASSERT(key_of(&v, other) == 0 && strcmp(base, other) == 0, "NULL is the empty string");
    TEST_ASSERT(cli_idempotency_key(&in, small, sizeof small) == -1, "too small a buffer is refused");

    unlink(path);
    rmdir(dir);
    return test_report();
}
