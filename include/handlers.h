/* handlers.h - the route handlers (one file per resource). Each runs on an
 * MHD worker thread, never blocks on the network, and answers through the
 * helpers in http.h. */
#ifndef PPA_HANDLERS_H
#define PPA_HANDLERS_H

#include <microhttpd.h>

struct req;
struct taskstore;
struct taskstore_op;

enum MHD_Result h_page(struct req *r);
enum MHD_Result h_static(struct req *r);
enum MHD_Result h_healthz(struct req *r);
enum MHD_Result h_config(struct req *r);
enum MHD_Result h_openapi(struct req *r);
enum MHD_Result h_upload(struct req *r);
enum MHD_Result h_upload_url(struct req *r);
enum MHD_Result h_upload_complete(struct req *r);
enum MHD_Result h_files(struct req *r);
enum MHD_Result h_generate(struct req *r);
enum MHD_Result h_status(struct req *r);
enum MHD_Result h_results(struct req *r);
enum MHD_Result h_results_zip(struct req *r);
enum MHD_Result h_callback(struct req *r);
enum MHD_Result h_tasks(struct req *r);
enum MHD_Result h_task(struct req *r);
enum MHD_Result h_credits(struct req *r);
enum MHD_Result h_metrics(struct req *r);

/* Run task-store call `fn` on `op` (owned by the request's state), then
 * `cont`: at once with the local store, or after the call with the
 * connection suspended for one that may wait (S3). Sets op->now. */
enum MHD_Result handler_store_step(struct req *r, struct taskstore_op *op,
                                   int (*fn)(struct taskstore *, struct taskstore_op *),
                                   enum MHD_Result (*cont)(struct req *r));
/* 503 kie_not_configured: KIE_API_KEY is not set (/generate, /status). */
enum MHD_Result handler_need_kie_key(struct req *r);

#endif
