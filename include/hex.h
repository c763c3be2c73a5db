/* hex.h - bytes as lowercase hex digits. */
#ifndef PPA_HEX_H
#define PPA_HEX_H

#include <stddef.h>

/* out (2 * n + 1 bytes) = the n bytes of b in lowercase hex, NUL-terminated.
 * A table, not snprintf("%02x") per byte: 32 of those were 4 % of the CPU of
 * POST /generate. */
void hex_lower(const unsigned char *b, size_t n, char *out);

#endif
