/* timefmt.h - the one timestamp format of API answers and records:
 * ISO 8601 in UTC, "2026-12-01T10:00:00Z". */
#ifndef PPA_TIMEFMT_H
#define PPA_TIMEFMT_H

#include <stddef.h>
#include <time.h>

/* Format t into out (at least 21 bytes). */
void iso8601_utc(time_t t, char *out, size_t cap);

#endif
