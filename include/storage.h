/* storage.h - where uploaded images live: local disk or S3, chosen once at
 * start-up. Routes only talk to this interface.
 *
 * An upload is first streamed into a spool file (storage_spool_dir), validated,
 * then committed under its final name. Commit may finish later (S3 PUT runs on
 * the upstream I/O thread): then it returns STORAGE_PENDING and calls
 * put->done exactly once. */
#ifndef PPA_STORAGE_H
#define PPA_STORAGE_H

#include "validate.h"

#include <stddef.h>
#include <sys/types.h>
#include <time.h>

struct config;
struct cJSON;
struct upstream;
struct storage;

#define STORAGE_PENDING 1

struct storage_put {
    int fd;                 /* spool file, positioned anywhere; not owned */
    const char *spool_path; /* removed by the caller after done */
    char name[200];         /* "<uuid>.<ext>" or "results/<task id>.<ext>" */
    enum image_type type;
    off_t size;
    /* result (set before done / on synchronous return) */
    int http_status;        /* error status to answer, 0 on success */
    char error_code[48];
    char error_msg[512];
    void (*done)(struct storage_put *p, void *arg);
    void *arg;
};

/* A direct upload's raw object (S3 mode), fetched for the image pipeline. */
struct storage_fetch {
    char upload_id[40];     /* the lowercase UUID /upload-url handed out */
    int fd;                 /* the body is written here; not owned */
    long long max_bytes;    /* larger objects fail with 413 */
    /* result (set before done) */
    long long size;
    int http_status;        /* error status to answer, 0 on success */
    char error_code[48];
    char error_msg[512];
    void (*done)(struct storage_fetch *f, void *arg); /* an I/O thread; exactly once */
    void *arg;
};

/* Where a served file is: an open fd (local) or a URL to redirect to (S3). */
struct storage_file {
    int fd;                 /* -1 when redirect */
    off_t size;
    time_t mtime;
    char redirect[2048];
};

struct storage_ops {
    const char *name; /* "local" or "s3" */
    int async_commit; /* commit may return STORAGE_PENDING */
    int keeps_spool;  /* commit renames the spool file into place */
    const char *(*spool_dir)(struct storage *s);
    int (*commit)(struct storage *s, struct storage_put *p);
    /* 0, ERR_NOT_FOUND, ERR_IO. `name` is already validated. */
    int (*open_file)(struct storage *s, const char *name, struct storage_file *out);
    /* URL the uploader gets back and KIE may fetch for `name` with the given
     * minimum lifetime; local: "/files/<name>" (made absolute by the caller). */
    int (*file_url)(struct storage *s, const char *name, long ttl_seconds, char *out, size_t cap,
                    time_t *expires_at);
    /* Direct upload (S3 only, else NULL): a presigned PUT of the raw photo to
     * the incoming object of `upload_id` (under S3_PREFIX "incoming/", never
     * served), with the headers the client must send. Fills a JSON object.
     * 0 or ERR_*. The client then calls POST /upload-complete: the server
     * fetches it (fetch_incoming), normalises it, commits the result like an
     * upload and deletes the incoming object (delete_incoming). */
    int (*presign_put)(struct storage *s, const char *upload_id, const char *content_type, long long size,
                       struct cJSON *out);
    /* STORAGE_PENDING (then f->done later) or ERR_* with f's error set. */
    int (*fetch_incoming)(struct storage *s, struct storage_fetch *f);
    /* Best effort, answer not awaited (a lifecycle rule expires leftovers). */
    void (*delete_incoming)(struct storage *s, const char *upload_id);
    /* The origin ("https://host[:port]") browsers upload to directly, for the
     * page's Content-Security-Policy; NULL when uploads go through us. */
    const char *(*direct_upload_origin)(struct storage *s);
    void (*destroy)(struct storage *s);
};

struct storage {
    const struct storage_ops *ops;
    void *priv;
};

extern const struct storage_ops storage_local_ops;
extern const struct storage_ops storage_s3_ops;

/* Open the backend the configuration asks for. NULL with a message in err. */
struct storage *storage_open(const struct config *cfg, struct upstream *up, char *err, size_t cap);
void storage_close(struct storage *s);

struct storage *storage_local_open(const char *dir, char *err, size_t cap);
struct storage *storage_s3_open(const struct config *cfg, struct upstream *up, char *err, size_t cap);

#endif
