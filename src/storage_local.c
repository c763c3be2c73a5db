/* storage_local.c - uploads as files in UPLOAD_DIR.
 *
 * Spool files are created in the same directory (".upload-XXXXXX") so the
 * commit is one atomic rename(2): a reader sees either nothing or the whole
 * file. Files are opened with O_NOFOLLOW relative to a directory fd. */
#include "storage.h"
#include "config.h"
#include "err.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct local {
    char *dir;
    int dirfd;
};

static const char *local_spool_dir(struct storage *s)
{
    return ((struct local *)s->priv)->dir;
}

static int local_commit(struct storage *s, struct storage_put *p)
{
    struct local *l = s->priv;
    const char *base = strrchr(p->spool_path, '/');

    base = base ? base + 1 : p->spool_path;
    (void)fchmod(p->fd, 0644);
    if (fsync(p->fd) != 0 || renameat(l->dirfd, base, l->dirfd, p->name) != 0) {
        p->http_status = 500;
        snprintf(p->error_code, sizeof p->error_code, "storage_error");
        snprintf(p->error_msg, sizeof p->error_msg, "Could not store the upload: %s", strerror(errno));
        log_error("local storage: commit %s failed: %s", p->name, strerror(errno));
        return ERR_IO;
    }
    return 0;
}

static int local_open_file(struct storage *s, const char *name, struct storage_file *out)
{
    struct local *l = s->priv;
    struct stat st;
    int fd = openat(l->dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

    out->fd = -1;
    out->redirect[0] = '\0';
    if (fd < 0)
        return errno == ENOENT ? ERR_NOT_FOUND : ERR_IO;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ERR_NOT_FOUND;
    }
    out->fd = fd;
    out->size = st.st_size;
    out->mtime = st.st_mtime;
    return 0;
}

static int local_file_url(struct storage *s, const char *name, long ttl, char *out, size_t cap,
                          time_t *expires_at)
{
    int n;
    (void)s;
    (void)ttl;
    n = snprintf(out, cap, "/files/%s", name);
    if (expires_at)
        *expires_at = 0;
    return n < 0 || (size_t)n >= cap ? ERR_TOO_LARGE : 0;
}

static void local_destroy(struct storage *s)
{
    struct local *l = s->priv;
    if (l) {
        if (l->dirfd >= 0)
            close(l->dirfd);
        free(l->dir);
        free(l);
    }
    free(s);
}

const struct storage_ops storage_local_ops = {
    .name = "local",
    .keeps_spool = 1,
    .spool_dir = local_spool_dir,
    .commit = local_commit,
    .open_file = local_open_file,
    .file_url = local_file_url,
    .destroy = local_destroy,
};

struct storage *storage_local_open(const char *dir, char *err, size_t cap)
{
    struct storage *s = calloc(1, sizeof *s);
    struct local *l = calloc(1, sizeof *l);

    if (!s || !l)
        goto fail;
    l->dirfd = -1;
    s->ops = &storage_local_ops;
    s->priv = l;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        snprintf(err, cap, "UPLOAD_DIR %s cannot be created: %s", dir, strerror(errno));
        goto fail;
    }
    l->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (l->dirfd < 0) {
        snprintf(err, cap, "UPLOAD_DIR %s cannot be opened: %s", dir, strerror(errno));
        goto fail;
    }
    if (mkdirat(l->dirfd, "results", 0755) != 0 && errno != EEXIST) {
        snprintf(err, cap, "UPLOAD_DIR %s: cannot create results/: %s", dir, strerror(errno));
        goto fail;
    }
    if (faccessat(l->dirfd, ".", W_OK, AT_EACCESS) != 0) {
        snprintf(err, cap, "UPLOAD_DIR %s is not writable", dir);
        goto fail;
    }
    l->dir = strdup(dir);
    if (!l->dir) {
        snprintf(err, cap, "out of memory");
        goto fail;
    }
    return s;
fail:
    if (s && l) {
        local_destroy(s);
    } else {
        free(s);
        free(l);
    }
    return NULL;
}

struct storage *storage_open(const struct config *cfg, struct upstream *up, char *err, size_t cap)
{
#ifdef PPA_HAVE_S3
    if (cfg->use_s3)
        return storage_s3_open(cfg, up, err, cap);
#else
    (void)up;
    if (cfg->use_s3) {
        snprintf(err, cap, "USE_S3=1 but this build has no S3 support");
        return NULL;
    }
#endif
    return storage_local_open(cfg->upload_dir, err, cap);
}

void storage_close(struct storage *s)
{
    if (s)
        s->ops->destroy(s);
}
