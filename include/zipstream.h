/* zipstream.h - a ZIP archive written while it is sent: entries are stored
 * (no compression: the images are already compressed), each entry's CRC-32
 * is computed as its bytes go out and written in a data descriptor after
 * them, so nothing is read twice and no temporary file is made. The whole
 * archive's length is known before the first byte (Content-Length), memory
 * is one small header per entry whatever the entries' sizes.
 *
 * Limits (no ZIP64): at most ZIPSTREAM_MAX_ENTRIES entries, the archive at
 * most ZIPSTREAM_MAX_BYTES; zipstream_add refuses what would pass them.
 *
 * Use: zipstream_new, zipstream_add* for every entry, zipstream_size, then
 * zipstream_read until it returns 0; zipstream_free. Not thread-safe: one
 * reader at a time. */
#ifndef PPA_ZIPSTREAM_H
#define PPA_ZIPSTREAM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define ZIPSTREAM_MAX_ENTRIES 65535
#define ZIPSTREAM_MAX_BYTES 0xffffffffULL
#define ZIPSTREAM_NAME_MAX 1024

struct zipstream;

/* Open the content of entry `key` (given to zipstream_add_file) for
 * reading from its start: an fd the stream reads and closes, or -1. */
typedef int (*zipstream_open_fn)(void *arg, const char *key);

/* A stream for up to `max_entries` entries; `open` opens file entries. NULL
 * on out of memory or a bad count. */
struct zipstream *zipstream_new(size_t max_entries, zipstream_open_fn open, void *open_arg);
void zipstream_free(struct zipstream *z);

/* Add an entry named `name` (UTF-8, '/'-separated, copied) whose content is
 * `size` bytes read from open(key) when its turn comes (key copied). The
 * file must still hold exactly `size` bytes then, else the read fails.
 * 0, ERR_INVALID (bad name, too many entries, added after reading started)
 * or ERR_TOO_LARGE (the archive would pass ZIPSTREAM_MAX_BYTES). */
int zipstream_add_file(struct zipstream *z, const char *name, const char *key, uint64_t size, time_t mtime);
/* Add an entry holding a copy of `data` (len bytes). Same results. */
int zipstream_add_data(struct zipstream *z, const char *name, const void *data, size_t len, time_t mtime);

/* The archive's length in bytes, final once every entry is added. */
uint64_t zipstream_size(const struct zipstream *z);

/* Copy the next up to `max` bytes into buf: the count (> 0), 0 at the end,
 * -1 when an entry could not be opened or read or changed size (the archive
 * cannot be finished; the message is in zipstream_error). */
ssize_t zipstream_read(struct zipstream *z, char *buf, size_t max);
const char *zipstream_error(const struct zipstream *z);

#endif
