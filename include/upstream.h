/* upstream.h - outgoing HTTP calls (KIE, S3, cloudflared) that never block an
 * HTTP worker thread.
 *
 * N I/O threads (UPSTREAM_THREADS, default one per core), each owning one
 * curl multi handle (driven by curl_multi_socket_action over its own epoll
 * set) and its pool of kept-alive connections. A handler fills a
 * struct upstream_call, submits it, and suspends its connection; one I/O
 * thread runs the transfer and calls `done` on that thread when the answer is
 * in (done resumes the connection).
 *
 * Which thread: a call submitted from an I/O thread (from a done callback)
 * runs on that same thread, so the calls a chain of callbacks starts (the S3
 * task store's jobs) never have two done callbacks running at once, exactly
 * as with one thread. A call submitted from any other thread goes to the I/O
 * thread with the fewest calls queued or running. Done callbacks of calls
 * submitted from other threads may run concurrently on different I/O threads:
 * what they share must be locked (every app-wide structure is).
 *
 * The connection cap stays global: each thread's multi handle gets its share
 * of max_connections (the shares sum to it), because curl caps connections
 * per multi handle, queues transfers over the cap itself, and cannot share a
 * connection between handles. Calls over a thread's share wait in its queue. */
#ifndef PPA_UPSTREAM_H
#define PPA_UPSTREAM_H

#include "buf.h"
#include "fetchpolicy.h"

#include <curl/curl.h>
#include <sys/types.h>

struct upstream;

struct upstream_call {
    /* --- request: set by the caller; freed by upstream_call_free --- */
    char *url;
    const char *method;          /* static string: "GET", "POST", "PUT", "HEAD" */
    struct curl_slist *headers;  /* owned */
    char *body;                  /* owned; POST body, or the PUT body when upload_fd is -1 */
    size_t body_len;
    int upload_fd;               /* PUT body read from this fd (not owned), -1: from body */
    curl_off_t upload_size;
    long timeout_ms;
    size_t max_response;         /* bytes of answer kept; more fails the call */
    int follow_redirects;        /* follow up to 3 http(s) redirects */
    int target;                  /* enum metrics_target (metrics.h), for /metrics */
    int peer_url;                /* a peer named this URL (KIE's result URL): fetchpolicy.h
                                    applies (it follows redirects itself). Our configured
                                    endpoints (KIE_BASE_URL, S3_ENDPOINT, ...) leave it 0. */
    int allow_private_fetch;     /* with peer_url: ALLOW_PRIVATE_FETCH */
    int download_fd;             /* when >= 0 the answer body is written here (not owned),
                                    still capped at max_response; -1 = keep it in `response` */
    size_t downloaded;
    /* --- result: valid in `done` --- */
    int result;                  /* 0, ERR_TIMEOUT, ERR_UPSTREAM, ERR_TOO_LARGE */
    int refused;                 /* peer_url: the fetch policy stopped it (reason in `error`,
                                    for the log only; answer a generic error) */
    long http_status;            /* 0 when no HTTP answer */
    char error[CURL_ERROR_SIZE]; /* curl's message when result != 0 */
    struct buf response;
    /* --- completion --- */
    void (*done)(struct upstream_call *call, void *arg); /* the call's I/O thread; exactly once */
    void *arg;
    /* --- private --- */
    struct upstream_call *next;
    CURL *easy;
    size_t body_sent;            /* PUT from body: bytes handed to curl */
    struct fetch_guard guard;    /* peer_url */
};

/* Allocate a call for `method` `url` (copied). NULL on out of memory. */
struct upstream_call *upstream_call_new(const char *method, const char *url, long timeout_ms,
                                        size_t max_response);
/* Add a request header ("Name: value", copied). 0 or ERR_NOMEM. */
__attribute__((warn_unused_result)) int upstream_call_header(struct upstream_call *c, const char *line);
/* Set the POST body, or a PUT's when there is no upload_fd (upload_size is
 * then body_len); takes ownership of `body` (malloc'd, may be NULL if len 0). */
void upstream_call_body(struct upstream_call *c, char *body, size_t len);
void upstream_call_free(struct upstream_call *c);

/* Start `threads` I/O threads (< 1: one per core; never more than
 * max_connections, so each has at least one connection). max_connections caps
 * open connections in total (per host too), split between the threads. NULL
 * on failure. */
struct upstream *upstream_start(long max_connections, long threads);
/* The default number of I/O threads: the number of online cores. */
long upstream_default_threads(void);
/* How many I/O threads u runs. */
size_t upstream_threads(const struct upstream *u);
/* Queue a call; `done` runs later on an I/O thread (this one, when called
 * from an I/O thread). 0, or ERR_INVALID when shutting down (then `done` is
 * not called). Thread-safe. */
__attribute__((warn_unused_result)) int upstream_submit(struct upstream *u, struct upstream_call *c);
/* `fn` sees every finished call just before its `done`, on the call's I/O
 * thread, so possibly on several threads at once: it must be thread-safe
 * (/metrics: atomic counters). Set it before the first call is submitted. */
void upstream_set_observer(struct upstream *u, void (*fn)(const struct upstream_call *c, void *arg), void *arg);
/* Number of calls queued or running, summed over the threads (for tests and /healthz). */
long upstream_inflight(struct upstream *u);
/* Stop every thread from taking calls, then fail every queued or running call
 * (done gets ERR_UPSTREAM "server shutting down", exactly once each; a call
 * a done callback submits meanwhile is refused), join the threads, free
 * everything. */
void upstream_stop(struct upstream *u);

/* Run one call synchronously on the calling thread (CLI, start-up). */
void upstream_perform_sync(struct upstream_call *c);

#endif
