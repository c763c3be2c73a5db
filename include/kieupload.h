/* kieupload.h - KIE's file-upload API (POST <KIE_UPLOAD_BASE_URL>/api/
 * file-stream-upload, same Bearer key, free, files kept about 3 days): how a
 * server without a public URL gets its stored photos to KIE. /generate pushes
 * one of our own files there and sends KIE the downloadUrl it answers.
 *
 * A bounded, thread-safe cache remembers each stored name's downloadUrl for
 * KIEUPLOAD_REUSE_SECONDS (less than the 24 h KIE states on one of its pages,
 * the shorter of its two figures), so the same photo is pushed once. The
 * request and answer parts are pure functions; the caller runs the call on the
 * upstream I/O thread. */
#ifndef PPA_KIEUPLOAD_H
#define PPA_KIEUPLOAD_H

#include <stddef.h>
#include <time.h>

struct upstream_call;

#define KIEUPLOAD_REUSE_SECONDS (20 * 3600)
#define KIEUPLOAD_PATH "product-photo-api" /* uploadPath: KIE's folder for our files */

/* How /generate gets our own files to KIE (KIE_UPLOAD). */
enum kie_upload_mode { KIE_UPLOAD_AUTO, KIE_UPLOAD_ALWAYS, KIE_UPLOAD_NEVER };

struct kieupload;

struct kieupload *kieupload_new(size_t capacity);
void kieupload_free(struct kieupload *k);

/* 1 and the downloadUrl when `name` was pushed less than
 * KIEUPLOAD_REUSE_SECONDS before `now`; else 0. */
int kieupload_lookup(struct kieupload *k, const char *name, time_t now, char *url, size_t cap);
void kieupload_remember(struct kieupload *k, const char *name, const char *url, time_t now);

/* The multipart upload of `len` bytes of `data` (a stored image named `name`,
 * of MIME type `mime`) to base_url, with the Bearer key. NULL on out of
 * memory. The body is copied. */
struct upstream_call *kieupload_call(const char *base_url, const char *api_key, const char *name, const char *mime,
                                     const void *data, size_t len, long timeout_ms);

/* KIE's answer to a finished call: 0 with data.downloadUrl (an http(s) URL) in
 * url, or ERR_* with the HTTP status and error code to answer (502, or 504 on
 * a timeout) and a message that names KIE's file upload. Both documented
 * answer shapes are accepted (only downloadUrl is common to them). */
int kieupload_parse(const struct upstream_call *c, long timeout_s, char *url, size_t cap, unsigned *status,
                    char *code, size_t code_cap, char *msg, size_t msg_cap);

#endif
