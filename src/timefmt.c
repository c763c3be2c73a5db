/* timefmt.c - see timefmt.h. */
#include "timefmt.h"

void iso8601_utc(time_t t, char *out, size_t cap)
{
    struct tm tm;

    if (cap == 0)
        return;
    out[0] = '\0';
    if (gmtime_r(&t, &tm))
        strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
