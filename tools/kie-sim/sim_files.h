/*
 * sim_files.h - the store behind KIE's file-upload API: uploaded files kept
 * in memory, or under a directory (--files-dir), bounded in total bytes and
 * count (oldest dropped first), expiring after upload_ttl_ms, and served at
 * their download URLs:
 *
 *   GET|HEAD /kie-files/<uploadPath>/<fileName>   (no auth, like KIE's CDN)
 *   GET|HEAD /kie-download/<fileId>               (the "quickstart" shape's downloadUrl)
 *   GET|DELETE /sim/files                         list / drop every stored file
 *
 * Thread-safe: the store has its own lock.
 */
#ifndef SIM_FILES_H
#define SIM_FILES_H

#include <stddef.h>

#include <cJSON.h>

#include "sim.h"
#include "sim_http.h"

#define SIM_UPLOAD_PATH_MAX 512
#define SIM_FILE_NAME_MAX   256
#define SIM_FILE_ID_LEN     32
#define SIM_MIME_MAX        128

struct sim_files;

/* One stored file, as the upload API reports it. */
struct sim_file_info {
    char upload_path[SIM_UPLOAD_PATH_MAX];
    char name[SIM_FILE_NAME_MAX];
    char original_name[SIM_FILE_NAME_MAX];
    char mime[SIM_MIME_MAX];
    char id[SIM_FILE_ID_LEN]; /* set by sim_files_put */
    size_t size;              /* set by sim_files_put */
    long long uploaded_ms;    /* set by sim_files_put */
};

/* A store in memory (dir NULL) or in files under dir (which must exist).
 * Returns NULL, with a message on stderr, if dir is not usable. */
struct sim_files *sim_files_new(const char *dir, size_t max_bytes, size_t max_count);

/* Drops every file (and removes the ones under dir). NULL is a no-op. */
void sim_files_free(struct sim_files *fs);

/* Store data (len bytes, malloc'd; taken over in every case) as
 * info->upload_path + "/" + info->name, replacing a file of that path and
 * dropping the oldest files until it fits. Fills info->id, size and
 * uploaded_ms. Returns 0, or -1 with a message (too big for the store, I/O). */
int sim_files_put(struct sim_files *fs, struct sim_file_info *info, unsigned char *data, size_t len, char *err,
                  size_t errlen);

/* Bytes of "/kie-files/" + the percent-encoded path of info. */
void sim_files_url_path(const struct sim_file_info *info, char *out, size_t outlen);

void sim_h_file_get(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp);
void sim_h_files_list(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp);
void sim_h_files_clear(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp);

#endif
