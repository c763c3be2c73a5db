/* sweeper.c - see sweeper.h. Only names the server itself produces are
 * touched, so a misconfigured UPLOAD_DIR cannot lose anybody's files. */
#include "sweeper.h"
#include "err.h"
#include "log.h"
#include "validate.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SPOOL_MAX_AGE 3600

/* How old a file may grow, by its name: 0 = not ours (never touched). */
typedef long (*max_age_fn)(const char *name, long ttl_seconds);

static long upload_max_age(const char *name, long ttl_seconds)
{
    if (stored_name_check(name) != IMAGE_UNKNOWN)
        return ttl_seconds;
    if (strncmp(name, ".upload-", 8) == 0 && strlen(name) == 14)
        return SPOOL_MAX_AGE;
    return 0;
}

/* "<task id>.<png|jpg|webp>", as results.c names kept results */
static long result_max_age(const char *name, long ttl_seconds)
{
    return result_name_check(name) != IMAGE_UNKNOWN ? ttl_seconds : 0;
}

static int sweep(const char *dir, max_age_fn max_age_of, long ttl_seconds, time_t now)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int removed = 0;

    if (!d)
        return ERR_IO;
    while ((e = readdir(d))) {
        struct stat st;
        long max_age = max_age_of(e->d_name, ttl_seconds);
        if (max_age <= 0)
            continue;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (now - st.st_mtime > max_age && unlinkat(dirfd(d), e->d_name, 0) == 0) {
            removed++;
            log_info("retention: removed %s", e->d_name);
        }
    }
    closedir(d);
    return removed;
}

int sweeper_run(const char *dir, long ttl_seconds, time_t now)
{
    return sweep(dir, upload_max_age, ttl_seconds, now);
}

int sweeper_run_results(const char *dir, long ttl_seconds, time_t now)
{
    char sub[4096];

    if ((size_t)snprintf(sub, sizeof sub, "%s/results", dir) >= sizeof sub)
        return ERR_IO;
    return sweep(sub, result_max_age, ttl_seconds, now);
}
