/*
 * sim.h - types shared by the kie-sim modules (see sim_main.c for the
 * overview): the run-time knobs, a task, a background job and the
 * application state, plus small utilities (sim_util.c).
 *
 * Locking: app->lock guards every field of struct sim_app below it, and the
 * tasks it points to. Functions documented "caller holds app->lock" must be
 * called with it held; all others take it themselves.
 */
#ifndef SIM_H
#define SIM_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#define SIM_MODEL         "flux-2/pro-image-to-image"
#define SIM_ID_LEN        64
#define SIM_MAX_URLS      8
#define SIM_MSG_MAX       1024
#define SIM_JOB_QUEUE_CAP 1024
#define SIM_WORKERS       8
#define SIM_MAX_KEYS      8   /* --api-key may be given this often */
#define SIM_KEY_MAX       256
#define SIM_RATE_CAP      1000 /* rate_limit_max at most */

/* ---------------------------------------------------------------- knobs */

enum sim_mode {
    SIM_MODE_NORMAL, SIM_MODE_HTTP500, SIM_MODE_NONJSON, SIM_MODE_HANG, SIM_MODE_RESET,
    SIM_MODE_CODE401, SIM_MODE_CODE402, SIM_MODE_CODE422, SIM_MODE_CODE429,
    SIM_MODE_CODE455, SIM_MODE_CODE500, SIM_MODE_CODE501
};

/* Every run-time knob (sim_admin.c has the table that names them). */
struct sim_config {
    long latency_ms;
    long step_ms;
    int outcome; /* 0 success, 1 fail */
    char fail_code[16];
    char fail_msg[256];
    int create_mode; /* enum sim_mode */
    long create_mode_times;
    int record_mode;
    long record_mode_times;
    long hang_max_ms;
    char webhook_hmac_key[128];
    int upload_mode; /* enum sim_upload_mode (sim_upload.h) */
    long upload_mode_times;
    int upload_shape; /* enum sim_upload_shape */
    long upload_max_bytes;        /* file-stream-upload and file-url-upload */
    long upload_base64_max_bytes; /* file-base64-upload, decoded */
    long upload_ttl_ms;           /* uploaded files expire after this */
    int result_style;             /* enum sim_result_style (sim_results.h) */
    long initial_credits;         /* every key's balance at start / when set */
    long price_1k, price_2k;      /* credits a createTask takes */
    long refund_failed;           /* 1: a failed task gives its credits back */
    int credit_mode;              /* enum sim_mode for GET /api/v1/chat/credit */
    long credit_mode_times;
    long rate_limit;              /* 1: createTask limited per key (sim_ratelimit.h) */
    long rate_limit_max, rate_limit_window_ms;
    char result_url[512];         /* "": each task's own /results/<id>.png */
    char fail_match[256];         /* "": off; else a task whose prompt or an input URL contains it fails */
    long fail_width;              /* 0: off; else a task whose first input is this many pixels wide fails */
};

/* The endpoints with a failure-mode knob (sim_take_mode). */
enum sim_endpoint { SIM_EP_CREATE, SIM_EP_RECORD, SIM_EP_UPLOAD, SIM_EP_CREDIT };

/* ----------------------------------------------------------------- tasks */

enum sim_state { SIM_ST_WAITING, SIM_ST_QUEUING, SIM_ST_GENERATING, SIM_ST_SUCCESS, SIM_ST_FAIL };

enum sim_fetch { SIM_FETCH_PENDING, SIM_FETCH_OK, SIM_FETCH_FAILED };

struct sim_task {
    char id[SIM_ID_LEN];
    char *param;        /* whole createTask request as JSON text (owned) */
    char *callback_url; /* owned, NULL if none */
    char *urls[SIM_MAX_URLS]; /* owned */
    size_t n_urls;
    char aspect[8];
    char resolution[4];
    enum sim_state state;
    enum sim_fetch fetch;
    long long create_ms, update_ms, complete_ms; /* wall clock, Unix ms */
    long long entered_ms[SIM_ST_FAIL + 1]; /* when each state began, 0 = never */
    long long phase_mono; /* monotonic ms when the current state began */
    long step_ms;         /* snapshot at creation */
    bool fail;            /* ends in fail (outcome or fail_match knob, failed download) */
    long fail_width;      /* fail_width knob at creation: fail if the first input is this wide */
    char fail_code[16];
    char fail_msg[SIM_MSG_MAX];
    uint32_t img_w, img_h; /* first input's size, 0 if unknown */
    int style;             /* enum sim_result_style, snapshot at creation */
    unsigned char *result; /* studio PNG (owned), NULL until made or once dropped */
    size_t result_len;
    uint32_t result_w, result_h;
    size_t key;            /* index of the API key that created it */
    long credits;          /* taken from that key's balance at creation */
    bool refund;           /* refund_failed at creation */
    bool refunded;         /* failed and given back */
    bool callback_done;
    long callback_status; /* HTTP status of the callback POST, -1 if none */
    char callback_error[SIM_MSG_MAX];
};

enum sim_job_kind { SIM_JOB_FETCH, SIM_JOB_CALLBACK };

struct sim_job {
    enum sim_job_kind kind;
    char task_id[SIM_ID_LEN];
    char *url;  /* SIM_JOB_CALLBACK: owned */
    char *body; /* SIM_JOB_CALLBACK: owned */
};

/* ------------------------------------------------------------------ app */

struct sim_files;

/* The createTask requests a key got through lately (sim_ratelimit.c). */
struct sim_rate {
    long long times[SIM_RATE_CAP]; /* monotonic ms, a ring */
    size_t head, count;
};

/* What the simulator keeps per API key. */
struct sim_account {
    long long balance; /* credits left */
    struct sim_rate rate;
};

struct sim_app {
    char api_keys[SIM_MAX_KEYS][SIM_KEY_MAX]; /* set once at start-up */
    size_t n_keys;
    char host[INET_ADDRSTRLEN];
    long port_arg;
    long max_tasks;
    const char *files_dir; /* NULL: uploaded files in memory */
    long files_max_bytes, files_max_count;
    long max_result_bytes;   /* studio result PNGs kept at most, bytes */
    struct sim_files *files; /* uploaded files; has its own lock */
    atomic_bool stopping;

    pthread_mutex_t lock; /* guards every field below */
    pthread_cond_t wake;  /* workers: job queue not empty / stopping */
    pthread_cond_t tick;  /* scheduler: timed wait, CLOCK_MONOTONIC */
    unsigned port;        /* real bound port, set once after MHD starts */
    struct sim_config cfg, cfg_initial;
    struct sim_task **tasks; /* ring of max_tasks slots */
    size_t task_head, task_count;
    unsigned task_counter;
    struct sim_job jobs[SIM_JOB_QUEUE_CAP]; /* ring */
    size_t job_head, job_count;
    size_t result_bytes; /* sum of the tasks' result_len */
    struct sim_account accounts[SIM_MAX_KEYS]; /* one per api_keys[] */
    cJSON *req_log; /* array, at most SIM_MAX_REQ_LOG items */
    size_t req_log_count;
    unsigned long long req_seq;
};

/* ------------------------------------------------------ sim_util.c */

/* One line "kie-sim: ..." to stderr. */
void sim_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Out-of-memory policy: small fixed-size allocations abort (input sizes are
 * capped everywhere, so this only triggers when the machine is out of RAM).
 * The result is owned by the caller (free()). */
void *sim_xmalloc(size_t n);
char *sim_xstrdup(const char *s);

long long sim_wall_ms(void); /* Unix time in ms */
long long sim_mono_ms(void); /* CLOCK_MONOTONIC in ms */

/* Strict decimal parse of s into [min, max]. Returns 0 or -1. */
int sim_parse_long(const char *s, long min, long max, long *out);

/* The heap buffer buf (capacity *cap, NULL when 0) with room for need
 * bytes (0 < need <= max): doubled from 1 KiB but never beyond max. Returns
 * the buffer, which may have moved, or NULL (buf untouched) when memory
 * runs out. */
void *sim_reserve(void *buf, size_t *cap, size_t need, size_t max);

/* Bounded copy, always NUL-terminated (truncates). */
void sim_copy(char *dst, size_t size, const char *src);

/* Index of s in the NULL-terminated names, or -1. */
int sim_enum_index(const char *const *names, const char *s);

/* Number of UTF-8 code points (continuation bytes are not counted). */
size_t sim_utf8_len(const char *s);

#endif
