/* diskguard.c - see diskguard.h. */
#include "diskguard.h"
#include "err.h"
#include "log.h"
#include "validate.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

int disk_low(const char *dir, long min_free_mb)
{
    struct statvfs vfs;
    unsigned long long free_mb;

    if (min_free_mb <= 0 || statvfs(dir, &vfs) != 0)
        return 0;
    free_mb = (unsigned long long)vfs.f_bavail * vfs.f_frsize / (1024 * 1024);
    return free_mb < (unsigned long long)min_free_mb;
}

struct kept {
    char name[256];
    time_t mtime;
    long long size;
};

static int oldest_first(const void *a, const void *b)
{
    const struct kept *x = a;
    const struct kept *y = b;
    return x->mtime < y->mtime ? -1 : x->mtime > y->mtime ? 1 : strcmp(x->name, y->name);
}

int results_trim(const char *dir, long long max_bytes)
{
    char sub[4096];
    DIR *d;
    struct dirent *e;
    struct kept *list = NULL;
    size_t n = 0;
    size_t cap = 0;
    long long total = 0;
    int removed = 0;

    if (max_bytes <= 0)
        return 0;
    if ((size_t)snprintf(sub, sizeof sub, "%s/results", dir) >= sizeof sub)
        return ERR_IO;
    d = opendir(sub);
    if (!d)
        return 0; /* nothing kept yet */
    while ((e = readdir(d))) {
        struct stat st;
        if (result_name_check(e->d_name) == IMAGE_UNKNOWN || strlen(e->d_name) >= sizeof list->name)
            continue; /* only names we produce */
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            struct kept *grown = realloc(list, ncap * sizeof *list);
            if (!grown) {
                removed = ERR_NOMEM;
                goto out;
            }
            list = grown;
            cap = ncap;
        }
        snprintf(list[n].name, sizeof list[n].name, "%s", e->d_name);
        list[n].mtime = st.st_mtime;
        list[n].size = (long long)st.st_size;
        total += list[n].size;
        n++;
    }
    if (total <= max_bytes)
        goto out;
    qsort(list, n, sizeof *list, oldest_first);
    for (size_t i = 0; i < n && total > max_bytes; i++)
        if (unlinkat(dirfd(d), list[i].name, 0) == 0) {
            total -= list[i].size;
            removed++;
            log_info("retention: removed kept result %s (RESULTS_MAX_MB)", list[i].name);
        }
out:
    closedir(d);
    free(list);
    return removed;
}
