/* resultsig.c - see resultsig.h. */
#include "resultsig.h"
#include "config.h"
#include "hex.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

static int sign(const unsigned char key[RESULTSIG_KEY_LEN], const char *task_id, long long exp,
                unsigned char mac[32])
{
    char msg[200];
    unsigned int len = 0;
    int n = snprintf(msg, sizeof msg, "%s|%lld", task_id, exp);

    if (n < 0 || (size_t)n >= sizeof msg)
        return -1;
    if (!HMAC(EVP_sha256(), key, RESULTSIG_KEY_LEN, (const unsigned char *)msg, (size_t)n, mac, &len) || len != 32)
        return -1;
    return 0;
}

int resultsig_query(const unsigned char key[RESULTSIG_KEY_LEN], const char *task_id, time_t exp, char *out,
                    size_t cap)
{
    unsigned char mac[32];
    char hex[65];
    int n;

    if (sign(key, task_id, (long long)exp, mac))
        return -1;
    hex_lower(mac, sizeof mac, hex);
    n = snprintf(out, cap, "exp=%lld&sig=%s", (long long)exp, hex);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static int unhex(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int resultsig_ok(const unsigned char key[RESULTSIG_KEY_LEN], const char *task_id, const char *exp, const char *sig,
                 time_t now)
{
    unsigned char want[32];
    unsigned char got[32];
    long e;

    if (!exp || !sig || strlen(sig) != 64 || config_parse_long(exp, 1, 0x7fffffffffffffffL, &e) || (time_t)e < now)
        return 0;
    for (size_t i = 0; i < sizeof got; i++) {
        int hi = unhex(sig[2 * i]);
        int lo = unhex(sig[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return 0;
        got[i] = (unsigned char)(hi << 4 | lo);
    }
    if (sign(key, task_id, e, want))
        return 0;
    return CRYPTO_memcmp(want, got, sizeof want) == 0;
}

void resultsig_key(const char *secret, size_t len, unsigned char key[RESULTSIG_KEY_LEN])
{
    static const char label[] = "product-photo-api results v1";
    unsigned int out = 0;
    if (!HMAC(EVP_sha256(), secret, (int)len, (const unsigned char *)label, sizeof label - 1, key, &out))
        memset(key, 0, RESULTSIG_KEY_LEN);
}
