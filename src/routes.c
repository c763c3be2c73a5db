/* routes.c - THE route table. The infrastructure tests (Terraform, SAM) and
 * the OpenAPI document are checked against it via `product-photo-api routes`.
 * GET routes also answer HEAD; OPTIONS preflight is answered for every path. */
#include "handlers.h"
#include "http.h"

const struct route ROUTES[] = {
    {"GET", "/", h_page, 0, "the web page"},
    {"GET", "/static/{name}", h_static, 0, "the web page's scripts and style sheet"},
    {"GET", "/healthz", h_healthz, 0, "liveness and readiness"},
    {"GET", "/config", h_config, 0, "what the web page needs to know about this server"},
    {"GET", "/openapi.json", h_openapi, 0, "this API as an OpenAPI 3.1 document"},
    {"GET", "/metrics", h_metrics, 0, "Prometheus metrics (METRICS_TOKEN, else API_TOKEN, when set)"},
    {"POST", "/upload", h_upload, ROUTE_MULTIPART | ROUTE_AUTH | ROUTE_RL_UPLOAD, "upload an image"},
    {"POST", "/upload-url", h_upload_url, ROUTE_JSON_BODY | ROUTE_AUTH,
     "presigned S3 PUT URL for a direct browser upload (S3 mode)"},
    {"POST", "/upload-complete", h_upload_complete, ROUTE_JSON_BODY | ROUTE_AUTH | ROUTE_RL_UPLOAD,
     "normalise a direct upload and store it like POST /upload (S3 mode)"},
    {"GET", "/files/{name}", h_files, 0, "an uploaded image"},
    {"POST", "/generate", h_generate, ROUTE_JSON_BODY | ROUTE_AUTH | ROUTE_RL_GENERATE,
     "create a KIE image-to-image task"},
    {"GET", "/status", h_status, ROUTE_AUTH, "a KIE task's state and results"},
    {"GET", "/tasks", h_tasks, ROUTE_AUTH, "this server's tasks, newest first (cursor pagination)"},
    {"GET", "/tasks/{task_id}", h_task, ROUTE_AUTH, "the record of one of this server's tasks"},
    {"GET", "/credits", h_credits, ROUTE_AUTH, "KIE's credit balance and what this server's tasks spent"},
    {"GET", "/results/{task_id}", h_results, ROUTE_AUTH | ROUTE_SIGNED,
     "our stable copy of a finished task's result image (the token, or the stable_url's signature)"},
    {"GET", "/results.zip", h_results_zip, ROUTE_AUTH,
     "one ZIP of the kept results of up to 500 tasks, named after the photos (MISSING.txt lists the rest)"},
    {"POST", "/kie/callback", h_callback, ROUTE_JSON_BODY, "KIE's task-finished callback (token in the URL)"},
    {NULL, NULL, NULL, 0, NULL},
};
