/* cli_key.c - the Idempotency-Key of `generate`: see cli_key.h.
 * SHA-256 from OpenSSL's EVP interface (libcrypto is linked already). */
#include "cli_key.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#define CLI_KEY_PREFIX "ppa-cli-1-"

static void cli_hex(const unsigned char *d, unsigned n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (unsigned i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = '\0';
}

int cli_file_sha256(const char *path, char hex[CLI_SHA256_HEX], char *err, size_t cap)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned char chunk[65536];
    unsigned md_len = 0;
    FILE *f = NULL;
    size_t n;
    int rc = -1;

    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        snprintf(err, cap, "SHA-256 is not available (OpenSSL).");
        goto cleanup;
    }
    f = fopen(path, "rb");
    if (!f) {
        snprintf(err, cap, "cannot read %s: %s", path, strerror(errno));
        goto cleanup;
    }
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (EVP_DigestUpdate(ctx, chunk, n) != 1) {
            snprintf(err, cap, "SHA-256 of %s failed (OpenSSL).", path);
            goto cleanup;
        }
    }
    if (ferror(f)) {
        snprintf(err, cap, "cannot read %s: %s", path, strerror(errno));
        goto cleanup;
    }
    if (EVP_DigestFinal_ex(ctx, md, &md_len) != 1 || md_len != 32) {
        snprintf(err, cap, "SHA-256 of %s failed (OpenSSL).", path);
        goto cleanup;
    }
    cli_hex(md, md_len, hex);
    rc = 0;
cleanup:
    if (f)
        fclose(f);
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* "<name>=<length>:<value>\n" into the digest. */
static int cli_key_field(EVP_MD_CTX *ctx, const char *name, const char *value)
{
    char head[64];
    const char *v = value ? value : "";
    size_t len = strlen(v);
    int n = snprintf(head, sizeof head, "%s=%zu:", name, len);

    return n > 0 && (size_t)n < sizeof head && EVP_DigestUpdate(ctx, head, (size_t)n) == 1 &&
                   EVP_DigestUpdate(ctx, v, len) == 1 && EVP_DigestUpdate(ctx, "\n", 1) == 1
               ? 0
               : -1;
}

int cli_idempotency_key(const struct cli_key_input *in, char *out, size_t cap)
{
    static const char domain[] = "product-photo-api generate v1\n";
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    int rc = -1;

    if (cap < sizeof CLI_KEY_PREFIX + 64 || !ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, domain, sizeof domain - 1) != 1 || cli_key_field(ctx, "photo", in->photo_sha256) ||
        cli_key_field(ctx, "prompt", in->prompt) || cli_key_field(ctx, "aspect_ratio", in->aspect_ratio) ||
        cli_key_field(ctx, "resolution", in->resolution) ||
        cli_key_field(ctx, "nonce", in->nonce) || EVP_DigestFinal_ex(ctx, md, &md_len) != 1 || md_len != 32)
        goto cleanup;
    memcpy(out, CLI_KEY_PREFIX, sizeof CLI_KEY_PREFIX - 1);
    cli_hex(md, md_len, out + sizeof CLI_KEY_PREFIX - 1);
    rc = 0;
cleanup:
    EVP_MD_CTX_free(ctx);
    return rc;
}
