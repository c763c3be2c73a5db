/* sweeper.h - retention for local uploads: removes stored files older than a
 * number of hours, and spool files (".upload-*") left behind by a crash. */
#ifndef PPA_SWEEPER_H
#define PPA_SWEEPER_H

#include <time.h>

/* Remove from `dir` stored images (names the server produces) whose mtime is
 * older than now - ttl_seconds, and spool files older than an hour.
 * Returns the number removed, or a negative ERR_*. */
int sweeper_run(const char *dir, long ttl_seconds, time_t now);

#endif
