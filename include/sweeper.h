/* sweeper.h - retention on local disk: removes stored uploads and kept
 * results older than their time to live, and spool files (".upload-*") left
 * behind by a crash. */
#ifndef PPA_SWEEPER_H
#define PPA_SWEEPER_H

#include <time.h>

/* Remove from `dir` stored images (names the server produces) whose mtime is
 * older than now - ttl_seconds (none when ttl_seconds is 0), and spool files
 * older than an hour. Returns the number removed, or a negative ERR_*. */
int sweeper_run(const char *dir, long ttl_seconds, time_t now);

/* Remove from `dir`/results/ kept results ("<task id>.<ext>") whose mtime is
 * older than now - ttl_seconds. Returns the number removed, or ERR_*. */
int sweeper_run_results(const char *dir, long ttl_seconds, time_t now);

#endif
