/* cli_key.h - the Idempotency-Key `generate` sends: derived from what decides
 * the result (the photo's bytes and the request parameters), so the same
 * command run again after a crash names the same request and the server
 * replays its first answer instead of creating (and charging) a second task. */
#ifndef PPA_CLI_KEY_H
#define PPA_CLI_KEY_H

#include <stddef.h>

#define CLI_SHA256_HEX 65 /* 64 hex digits and the NUL */
/* "ppa-cli-1-" + 64 hex digits + NUL. */
#define CLI_KEY_MAX 80

/* Hex SHA-256 of the file's bytes. 0, or -1 with the reason in err. */
int cli_file_sha256(const char *path, char hex[CLI_SHA256_HEX], char *err, size_t cap);

/* What the key is made of: everything `generate` sends that shapes the result
 * (the model is the server's KIE_MODEL, the same for every request to it).
 * Every field takes part; NULL counts as "". */
struct cli_key_input {
    const char *photo_sha256; /* hex, from cli_file_sha256 */
    const char *prompt;
    const char *aspect_ratio;
    const char *resolution;
    const char *nonce;        /* "" normally; random for --new (a deliberate second attempt); "retry-N" for a
                                 batch photo's Nth --retry-failed */
};

/* out = "ppa-cli-1-" + hex SHA-256 over a length-prefixed encoding of the
 * input (no two inputs share an encoding). 0, or -1 when out is too small. */
int cli_idempotency_key(const struct cli_key_input *in, char *out, size_t cap);

#endif
