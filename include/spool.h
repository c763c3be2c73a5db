/* spool.h - temporary files for uploads and images in flight: created in a
 * directory as ".upload-XXXXXX" (the name the sweeper recognises and clears
 * when a crash leaves one behind), and written whole. */
#ifndef PPA_SPOOL_H
#define PPA_SPOOL_H

#include <stddef.h>

/* Create "<dir>/.upload-XXXXXX" (O_CLOEXEC, mode 0600), its name in path.
 * The fd, or -1 with errno set (ENAMETOOLONG when path cannot hold it). */
int spool_create(const char *dir, char *path, size_t cap);
/* Write all n bytes, retrying on EINTR. 0 or ERR_IO (errno set). */
int spool_write_all(int fd, const void *data, size_t n);

#endif
