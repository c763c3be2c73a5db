/* cli_manifest.h - OUTDIR/manifest.json, what a batch knows about each photo,
 * so that running the same command again skips finished photos, resumes
 * unfinished tasks with the same Idempotency-Key and knows which failed:
 *   {"version":1,"recent_creates":[unix s, ...],"photos":[{"path","sha256",
 *     "key","attempt","task_id","state","output","base","credits","error"},
 *     ...]}
 * recent_creates lets a rerun right after a crash keep to KIE's rate limit.
 * Saved whole after each change, atomically (a temp file in OUTDIR, fsync,
 * rename): a crash leaves the previous or the new version, never half. */
#ifndef PPA_CLI_MANIFEST_H
#define PPA_CLI_MANIFEST_H

#include "cli_job.h"
#include "cli_photos.h"

#include <stddef.h>

#define CLI_BASE_MAX (CLI_STEM_MAX + 16)
#define CLI_ERR_KEEP 600

struct cli_entry {
    char path[CLI_PATH_MAX]; /* the photo's absolute path */
    char sha256[CLI_SHA256_HEX];
    char key[CLI_KEY_MAX];   /* the Idempotency-Key sent */
    long attempt;            /* 0, then 1, 2... per --retry-failed (part of the key) */
    char task[CLI_TASK_MAX]; /* "" until the server named it */
    char state[32];          /* pending, uploading, submitting, waiting, queuing, generating, downloading, done, failed */
    char output[CLI_PATH_MAX]; /* the saved result ("" until done) */
    char base[CLI_BASE_MAX];   /* the result's name without extension, kept for this photo */
    double credits;            /* creditsConsumed, -1 unknown */
    char error[CLI_ERR_KEEP];  /* why it failed */
};

#define CLI_RECENT_MAX 1000 /* --rate's largest value */

#define CLI_MANIFEST_TMP ".manifest.json.tmp-" /* + 6 random characters, in OUTDIR */

struct cli_manifest {
    char dir[CLI_PATH_MAX];  /* OUTDIR */
    char path[CLI_PATH_MAX]; /* OUTDIR/manifest.json */
    double recent[CLI_RECENT_MAX]; /* "recent_creates": wall-clock times of the last POST /generate sent */
    int n_recent;
    struct cli_entry *v;     /* owned */
    size_t n, cap;
};

/* Read dir/manifest.json into m (m->dir and m->path set). A missing file is
 * an empty manifest. 0, or -1 with the reason in err (unreadable, not a
 * manifest). */
int cli_manifest_load(const char *dir, struct cli_manifest *m, char *err, size_t cap);
/* Remove what a killed run left in dir: manifest temp files and half
 * downloads (<name>.part-XXXXXX). Only while holding the directory's lock. */
void cli_manifest_sweep(const char *dir);
/* Write m to m->path atomically. 0 or -1 (err). */
int cli_manifest_save(const struct cli_manifest *m, char *err, size_t cap);
/* The entry for the photo at absolute path `real`, NULL if none. */
struct cli_entry *cli_manifest_find(struct cli_manifest *m, const char *real);
/* A new zeroed entry (state "pending", credits -1), NULL out of memory. The
 * pointer is valid until the next add. */
struct cli_entry *cli_manifest_add(struct cli_manifest *m);
void cli_manifest_free(struct cli_manifest *m);

#endif
