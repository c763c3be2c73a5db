/* buf.h - bounded, growable byte buffer (in the spirit of curl's dynbuf).
 *
 * Every buffer has a hard maximum chosen by its owner; appending past it fails
 * with ERR_TOO_LARGE and leaves the content as it was. The content is always
 * NUL-terminated. Use only the functions below to touch the fields. */
#ifndef PPA_BUF_H
#define PPA_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max;
};

/* Initialise an empty buffer that may hold at most `max` bytes. Cannot fail. */
void buf_init(struct buf *b, size_t max);
/* Append `len` bytes. 0, ERR_TOO_LARGE past the maximum, ERR_NOMEM. */
__attribute__((warn_unused_result)) int buf_append(struct buf *b, const void *data, size_t len);
__attribute__((warn_unused_result)) int buf_appends(struct buf *b, const char *s);
__attribute__((warn_unused_result, format(printf, 2, 3))) int buf_appendf(struct buf *b, const char *fmt, ...);
/* The content as a C string ("" when empty); valid until the next append or free. */
const char *buf_str(const struct buf *b);
/* Hand the heap block to the caller (who frees it); the buffer is empty afterwards.
 * Returns NULL when the buffer never held anything. */
char *buf_take(struct buf *b);
void buf_reset(struct buf *b);
void buf_free(struct buf *b);

#endif
