/* sweeper.c - see sweeper.h. Only names the server itself produces are
 * touched, so a misconfigured UPLOAD_DIR cannot lose anybody's files. */
#include "sweeper.h"
#include "err.h"
#include "log.h"
#include "validate.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SPOOL_MAX_AGE 3600

int sweeper_run(const char *dir, long ttl_seconds, time_t now)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int removed = 0;

    if (!d)
        return ERR_IO;
    while ((e = readdir(d))) {
        struct stat st;
        long max_age;
        if (stored_name_check(e->d_name) != IMAGE_UNKNOWN)
            max_age = ttl_seconds;
        else if (strncmp(e->d_name, ".upload-", 8) == 0 && strlen(e->d_name) == 14)
            max_age = SPOOL_MAX_AGE;
        else
            continue;
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
