/*
 * sim_files.c - the uploaded-file store of kie-sim (see sim_files.h).
 *
 * Files are kept oldest first in one array. In directory mode each file is
 * written to <dir>/kie-sim-<pid>-<n>.bin (a name of ours, never the
 * client's path; O_EXCL, mode 0600) outside the lock, and removed when it is
 * replaced, dropped or the store is freed.
 */
#include "sim_files.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SIM_DISK_PATH_MAX 4096

struct sim_file {
    struct sim_file_info info;
    char path[SIM_UPLOAD_PATH_MAX + SIM_FILE_NAME_MAX]; /* upload_path "/" name */
    unsigned char *data;                               /* memory mode */
    char *disk;                                        /* directory mode: our file */
};

struct sim_files {
    pthread_mutex_t lock; /* guards everything below */
    char *dir;            /* NULL: memory */
    size_t max_bytes, max_count;
    struct sim_file **files; /* oldest first */
    size_t count, bytes;
    unsigned long seq;
};

struct sim_files *sim_files_new(const char *dir, size_t max_bytes, size_t max_count)
{
    struct sim_files *fs;
    struct stat st;

    if (dir && (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || access(dir, W_OK | X_OK) != 0)) {
        fprintf(stderr, "kie-sim: --files-dir %s is not a writable directory\n", dir);
        return NULL;
    }
    fs = sim_xmalloc(sizeof *fs);
    memset(fs, 0, sizeof *fs);
    if (pthread_mutex_init(&fs->lock, NULL) != 0) {
        free(fs);
        return NULL;
    }
    fs->dir = dir ? sim_xstrdup(dir) : NULL;
    fs->max_bytes = max_bytes;
    fs->max_count = max_count;
    fs->files = sim_xmalloc(max_count * sizeof *fs->files);
    return fs;
}

static void sim_file_free(struct sim_file *f)
{
    if (f->disk && unlink(f->disk) != 0 && errno != ENOENT)
        sim_log("could not remove %s: %s", f->disk, strerror(errno));
    free(f->disk);
    free(f->data);
    free(f);
}

/* Caller holds fs->lock. */
static void sim_files_drop(struct sim_files *fs, size_t i)
{
    fs->bytes -= fs->files[i]->info.size;
    sim_file_free(fs->files[i]);
    memmove(&fs->files[i], &fs->files[i + 1], (fs->count - i - 1) * sizeof *fs->files);
    fs->count--;
}

/* Caller holds fs->lock. Drops files older than ttl_ms (0: keep all). */
static void sim_files_expire(struct sim_files *fs, long long ttl_ms)
{
    long long now = sim_wall_ms();

    while (ttl_ms > 0 && fs->count > 0 && now - fs->files[0]->info.uploaded_ms >= ttl_ms)
        sim_files_drop(fs, 0);
}

void sim_files_free(struct sim_files *fs)
{
    if (!fs)
        return;
    while (fs->count > 0)
        sim_files_drop(fs, fs->count - 1);
    free(fs->files);
    free(fs->dir);
    pthread_mutex_destroy(&fs->lock);
    free(fs);
}

static int sim_write_all(const char *path, const unsigned char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    size_t done = 0;

    if (fd < 0)
        return -1;
    while (done < len) {
        ssize_t n = write(fd, data + done, len - done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            close(fd);
            unlink(path);
            return -1;
        }
        done += (size_t)n;
    }
    if (close(fd) != 0) {
        unlink(path);
        return -1;
    }
    return 0;
}

int sim_files_put(struct sim_files *fs, struct sim_file_info *info, unsigned char *data, size_t len, char *err,
                  size_t errlen)
{
    struct sim_file *f = NULL;
    unsigned long seq;
    int ret = -1;

    if (len > fs->max_bytes) {
        snprintf(err, errlen, "a file of %zu bytes does not fit the simulator's store (%zu bytes)", len,
                 fs->max_bytes);
        goto out;
    }
    pthread_mutex_lock(&fs->lock);
    seq = ++fs->seq;
    pthread_mutex_unlock(&fs->lock);

    f = sim_xmalloc(sizeof *f);
    memset(f, 0, sizeof *f);
    info->size = len;
    info->uploaded_ms = sim_wall_ms();
    snprintf(info->id, sizeof info->id, "file_%08lx%08llx", seq, (unsigned long long)info->uploaded_ms & 0xFFFFFFFFull);
    f->info = *info;
    snprintf(f->path, sizeof f->path, "%s/%s", info->upload_path, info->name);
    if (fs->dir) {
        char disk[SIM_DISK_PATH_MAX];

        snprintf(disk, sizeof disk, "%s/kie-sim-%ld-%lu.bin", fs->dir, (long)getpid(), seq);
        if (sim_write_all(disk, data, len) != 0) {
            snprintf(err, errlen, "could not store the file: %s", strerror(errno));
            goto out;
        }
        f->disk = sim_xstrdup(disk);
    } else {
        f->data = data;
        data = NULL;
    }

    pthread_mutex_lock(&fs->lock);
    for (size_t i = 0; i < fs->count; i++)
        if (strcmp(fs->files[i]->path, f->path) == 0) { /* same name: overwrite */
            sim_files_drop(fs, i);
            break;
        }
    while (fs->count > 0 && (fs->count >= fs->max_count || fs->bytes + len > fs->max_bytes))
        sim_files_drop(fs, 0);
    fs->files[fs->count++] = f;
    fs->bytes += len;
    pthread_mutex_unlock(&fs->lock);
    f = NULL;
    ret = 0;
out:
    if (f)
        sim_file_free(f);
    free(data);
    return ret;
}

void sim_files_url_path(const struct sim_file_info *info, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    char path[SIM_UPLOAD_PATH_MAX + SIM_FILE_NAME_MAX];
    size_t o;

    snprintf(path, sizeof path, "%s/%s", info->upload_path, info->name);
    o = (size_t)snprintf(out, outlen, "/kie-files/");
    for (const unsigned char *p = (const unsigned char *)path; *p && o + 4 < outlen; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~/", *p)) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15u];
        }
    }
    out[o] = '\0';
}

/* Copy a stored file: by path ("/kie-files/...") or by id ("/kie-download/...").
 * Returns 0 with *data (malloc'd) and *info, or -1 if there is none. */
static int sim_files_get(struct sim_files *fs, const char *key, bool by_id, long long ttl_ms,
                         struct sim_file_info *info, unsigned char **data)
{
    char disk[SIM_DISK_PATH_MAX] = "";
    FILE *fp;
    int ret = -1;

    *data = NULL;
    pthread_mutex_lock(&fs->lock);
    sim_files_expire(fs, ttl_ms);
    for (size_t i = fs->count; i-- > 0;) {
        const struct sim_file *f = fs->files[i];

        if (strcmp(by_id ? f->info.id : f->path, key) != 0)
            continue;
        *info = f->info;
        if (f->disk) {
            sim_copy(disk, sizeof disk, f->disk);
        } else {
            *data = sim_xmalloc(f->info.size);
            memcpy(*data, f->data, f->info.size);
        }
        ret = 0;
        break;
    }
    pthread_mutex_unlock(&fs->lock);
    if (ret != 0 || !disk[0])
        return ret;
    /* directory mode: read outside the lock; a file dropped meanwhile is gone */
    fp = fopen(disk, "rb");
    *data = sim_xmalloc(info->size);
    if (!fp || fread(*data, 1, info->size, fp) != info->size) {
        free(*data);
        *data = NULL;
        ret = -1;
    }
    if (fp)
        fclose(fp);
    return ret;
}

static long long sim_files_ttl(struct sim_app *app)
{
    long long ttl;

    pthread_mutex_lock(&app->lock);
    ttl = app->cfg.upload_ttl_ms;
    pthread_mutex_unlock(&app->lock);
    return ttl;
}

void sim_h_file_get(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp)
{
    static const char files[] = "/kie-files/", download[] = "/kie-download/";
    bool by_id = strncmp(r->url, download, sizeof download - 1) == 0;
    const char *key = r->url + (by_id ? sizeof download - 1 : sizeof files - 1);
    struct sim_file_info info;
    unsigned char *data;

    (void)c;
    if (!*key || sim_files_get(app->files, key, by_id, sim_files_ttl(app), &info, &data) != 0) {
        sim_resp_kie(resp, 404, 404, "Not found", false);
        return;
    }
    free(resp->body);
    resp->status = 200;
    resp->body = (char *)data;
    resp->len = info.size;
    sim_copy(resp->ctype_buf, sizeof resp->ctype_buf, info.mime);
    resp->ctype = resp->ctype_buf;
    resp->action = SIM_SEND;
}

void sim_h_files_list(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp)
{
    struct sim_files *fs = app->files;
    long long ttl = sim_files_ttl(app);
    cJSON *o = cJSON_CreateObject(), *arr;

    (void)c;
    (void)r;
    pthread_mutex_lock(&fs->lock);
    sim_files_expire(fs, ttl);
    cJSON_AddNumberToObject(o, "count", (double)fs->count);
    cJSON_AddNumberToObject(o, "bytes", (double)fs->bytes);
    cJSON_AddNumberToObject(o, "max_count", (double)fs->max_count);
    cJSON_AddNumberToObject(o, "max_bytes", (double)fs->max_bytes);
    cJSON_AddStringToObject(o, "storage", fs->dir ? "directory" : "memory");
    arr = cJSON_AddArrayToObject(o, "files");
    for (size_t i = 0; i < fs->count; i++) {
        const struct sim_file *f = fs->files[i];
        cJSON *e = cJSON_CreateObject();

        cJSON_AddStringToObject(e, "fileId", f->info.id);
        cJSON_AddStringToObject(e, "filePath", f->path);
        cJSON_AddStringToObject(e, "mimeType", f->info.mime);
        cJSON_AddNumberToObject(e, "fileSize", (double)f->info.size);
        cJSON_AddNumberToObject(e, "uploadedMs", (double)f->info.uploaded_ms);
        cJSON_AddItemToArray(arr, e);
    }
    pthread_mutex_unlock(&fs->lock);
    sim_resp_json(resp, 200, o);
}

void sim_h_files_clear(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp)
{
    struct sim_files *fs = app->files;
    cJSON *o = cJSON_CreateObject();

    (void)c;
    (void)r;
    pthread_mutex_lock(&fs->lock);
    cJSON_AddNumberToObject(o, "cleared", (double)fs->count);
    while (fs->count > 0)
        sim_files_drop(fs, fs->count - 1);
    pthread_mutex_unlock(&fs->lock);
    sim_resp_json(resp, 200, o);
}
