/* diskguard.h - the one free-space check (MIN_FREE_DISK_MB) that uploads,
 * kept results and /healthz share, and the size cap on kept results. */
#ifndef PPA_DISKGUARD_H
#define PPA_DISKGUARD_H

/* 1 when the file system holding `dir` has less than min_free_mb free
 * (0 = no guard). A failing statvfs counts as not low. */
int disk_low(const char *dir, long min_free_mb);

/* Remove the oldest kept results in `dir`/results/ until they total at most
 * max_bytes (0 = no cap). Returns the number removed, or a negative ERR_*. */
int results_trim(const char *dir, long long max_bytes);

#endif
