/* config.h - the one configuration of the server, loaded once at start-up
 * from the environment and an optional .env file (the real environment wins),
 * then treated as read-only and passed around; there is no global copy. */
#ifndef PPA_CONFIG_H
#define PPA_CONFIG_H

#include <stddef.h>

/* Where the client IP of a request comes from (rate limits, per-IP caps). */
enum trust_proxy {
    TRUST_NONE,       /* the socket peer */
    TRUST_XFF,        /* the last X-Forwarded-For entry: the one our proxy appended */
    TRUST_CLOUDFLARE, /* CF-Connecting-IP, which Cloudflare sets */
};

struct config {
    /* server */
    long port;
    char *host;
    char *upload_dir;
    char *public_base_url; /* NULL when unset; "auto" = ask cloudflared */
    char *cors_origins;
    long max_upload_bytes;
    long max_direct_upload_bytes;
    /* image pipeline */
    long image_max_side;
    long image_max_pixels;
    long image_workers; /* 0 = cores */
    long image_queue;
    int keep_metadata;
    long thread_pool_size;
    long max_connections;
    long per_ip_connections;
    long connection_timeout;
    long upload_timeout;
    long shutdown_grace_seconds;
    int allow_private_input_urls;
    int allow_private_fetch;      /* ALLOW_PRIVATE_FETCH: fetchpolicy.h's allow_private */
    char *log_format; /* "text" or "json" */
    char *log_level;
    char *web_dir;    /* serve the page from here instead of the embedded copy */
    /* KIE */
    char *kie_api_key; /* secret */
    char *kie_base_url;
    char *kie_model;
    long kie_timeout_seconds;
    long kie_max_connections;
    long upstream_threads; /* 0 = cores */
    char *callback_secret; /* secret */
    char *kie_webhook_hmac_key; /* secret */
    char *cloudflared_metrics_url;
    char *kie_upload_name;     /* KIE_UPLOAD as given */
    char *kie_upload_base_url;
    /* S3 */
    int use_s3;
    char *s3_bucket;
    char *aws_region;
    char *aws_access_key_id;
    char *aws_secret_access_key; /* secret */
    char *aws_session_token;     /* secret */
    char *s3_endpoint;
    int s3_force_path_style;
    int s3_public;
    long s3_presign_ttl;
    char *s3_prefix;
    char *s3_results_prefix;
    char *s3_tasks_prefix;
    char *task_store_name;        /* TASK_STORE */
    int task_store;               /* 1 = auto, 0 = off */
    long daily_generation_limit;
    /* access control and limits */
    char *api_token; /* secret */
    long rate_limit_generate;
    long rate_limit_upload;
    char *trust_proxy_name; /* TRUST_PROXY as given */
    long upload_ttl_hours;
    long result_ttl_hours;
    long results_max_mb;
    long max_result_bytes;
    char *results_url_secret;
    char *metrics_token;
    int metrics_emf;
    long results_url_ttl_hours;
    long rate_limit_results;
    long min_free_disk_mb;
    /* derived */
    int on_lambda;
    enum trust_proxy trust_proxy; /* from TRUST_PROXY */
    int kie_upload;               /* enum kie_upload_mode (kieupload.h), from KIE_UPLOAD */
};

/* Describe one variable for --help and the docs test: name, default, help. */
struct config_var_info {
    const char *name;
    const char *def;
    const char *help;
};

/* Load the configuration. `dotenv_path` may be NULL or name a missing file.
 * `lookup_env` is getenv in production; tests may pass their own.
 * On failure returns ERR_INVALID and writes every problem found, one per line,
 * into `errors`. On success the caller owns *c and frees it with config_free. */
int config_load(struct config *c, const char *dotenv_path, const char *(*lookup_env)(const char *),
                char *errors, size_t errors_cap);
void config_free(struct config *c);

/* The table of variables (for --help); *n receives the count. */
const struct config_var_info *config_vars(size_t *n);

/* Write the effective configuration to the log, secrets masked. */
void config_log(const struct config *c);

/* Parse a whole decimal integer in [min,max]; 0 or ERR_INVALID. No atoi. */
int config_parse_long(const char *s, long min, long max, long *out);
/* Parse 1/0/true/false/yes/no/on/off; 0 or ERR_INVALID. */
int config_parse_bool(const char *s, int *out);

#endif
