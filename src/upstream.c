/* upstream.c - see upstream.h. */
#include "upstream.h"
#include "err.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* Easy handles an I/O thread keeps after their calls, reset, for the next
 * ones: curl_easy_init and curl_easy_cleanup of a handle per call were 11 %
 * of the I/O thread's perf samples on /status. A reset handle keeps nothing
 * of its call (options, headers, body pointers); connections stay the
 * multi handle's. */
#define UPSTREAM_IDLE_HANDLES 64

#define UPSTREAM_EVENTS 64 /* epoll events taken per wait */

/* One I/O thread and its curl multi handle, driven with
 * curl_multi_socket_action over an epoll set: a wake-up costs the sockets
 * that are ready, not a poll of every transfer's socket (curl_multi_perform
 * and curl_multi_poll are O(transfers) per wake-up, and N threads wake N
 * times as often). */
struct upstream_worker {
    struct upstream *u;
    CURLM *multi;
    int epfd;                         /* curl's sockets and wake_fd */
    int wake_fd;                      /* eventfd: a submit or stop */
    double deadline_ms;               /* curl's timer (CLOCK_MONOTONIC ms), < 0: none */
    pthread_t thread;
    pthread_mutex_t lock;
    struct upstream_call *queue_head; /* submitted, not yet in multi (under lock) */
    struct upstream_call *queue_tail;
    int stopping;                     /* under lock */
    struct upstream_call *active;     /* in the multi handle (this worker's thread only) */
    atomic_long inflight;             /* queued or running on this worker */
    long max_connections;             /* this worker's share of the cap */
    CURL *idle[UPSTREAM_IDLE_HANDLES]; /* easy handles kept for the next calls (this worker's thread only) */
    size_t n_idle;
};

struct upstream {
    size_t n;                         /* workers */
    struct upstream_worker *w;
    void (*observe)(const struct upstream_call *c, void *arg); /* set before calls start */
    void *observe_arg;
};

/* The worker whose I/O thread this is (NULL on every other thread): a call
 * submitted from a done callback stays on the thread that ran it. */
static _Thread_local struct upstream_worker *current_worker;

void upstream_set_observer(struct upstream *u, void (*fn)(const struct upstream_call *c, void *arg), void *arg)
{
    u->observe = fn;
    u->observe_arg = arg;
}

struct upstream_call *upstream_call_new(const char *method, const char *url, long timeout_ms,
                                        size_t max_response)
{
    struct upstream_call *c = calloc(1, sizeof *c);

    if (!c)
        return NULL;
    c->url = strdup(url);
    if (!c->url) {
        free(c);
        return NULL;
    }
    c->method = method;
    c->upload_fd = -1;
    c->download_fd = -1;
    c->timeout_ms = timeout_ms;
    c->max_response = max_response;
    buf_init(&c->response, max_response);
    return c;
}

int upstream_call_header(struct upstream_call *c, const char *line)
{
    struct curl_slist *n = curl_slist_append(c->headers, line);
    if (!n)
        return ERR_NOMEM;
    c->headers = n;
    return 0;
}

void upstream_call_body(struct upstream_call *c, char *body, size_t len)
{
    free(c->body);
    c->body = body;
    c->body_len = len;
}

void upstream_call_free(struct upstream_call *c)
{
    if (!c)
        return;
    if (c->easy)
        curl_easy_cleanup(c->easy);
    curl_slist_free_all(c->headers);
    free(c->body);
    free(c->url);
    buf_free(&c->response);
    free(c);
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userp)
{
    struct upstream_call *c = userp;
    size_t n = size * nmemb;

    if (c->download_fd >= 0) {
        size_t off = 0;
        if (n > c->max_response - c->downloaded) {
            c->result = ERR_TOO_LARGE;
            return 0;
        }
        while (off < n) {
            ssize_t w = write(c->download_fd, data + off, n - off);
            if (w <= 0)
                return 0; /* curl reports a write error */
            off += (size_t)w;
        }
        c->downloaded += n;
        return n;
    }
    if (buf_append(&c->response, data, n)) {
        c->result = ERR_TOO_LARGE;
        return 0; /* makes curl fail the transfer */
    }
    return n;
}

static size_t on_read(char *dst, size_t size, size_t nmemb, void *userp)
{
    struct upstream_call *c = userp;
    ssize_t n;

    if (c->upload_fd < 0) {
        size_t want = size * nmemb, left = c->body_len - c->body_sent;
        if (want > left)
            want = left;
        if (want)
            memcpy(dst, c->body + c->body_sent, want);
        c->body_sent += want;
        return want;
    }
    n = read(c->upload_fd, dst, size * nmemb);
    return n < 0 ? CURL_READFUNC_ABORT : (size_t)n;
}

/* Configure c->easy from the call, on `reuse` (a handle after
 * curl_easy_reset, taken) or a new one. 0, or ERR_NOMEM / ERR_INVALID (a peer
 * URL the fetch policy refuses) with c->error set; `reuse` is then freed. */
static int call_prepare(struct upstream_call *c, CURL *reuse)
{
    CURL *e;

    if (c->peer_url && fetchpolicy_check_url(c->url, c->allow_private_fetch, c->guard.why, sizeof c->guard.why)) {
        c->refused = 1;
        snprintf(c->error, sizeof c->error, "fetch policy: %.200s", c->guard.why);
        if (reuse)
            curl_easy_cleanup(reuse);
        return ERR_INVALID;
    }
    e = reuse ? reuse : curl_easy_init();
    if (!e) {
        snprintf(c->error, sizeof c->error, "out of memory");
        return ERR_NOMEM;
    }
    c->easy = e;
    curl_easy_setopt(e, CURLOPT_URL, c->url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, c->timeout_ms < 10000 ? c->timeout_ms : 10000L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->error);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    /* a Content-Length over the cap fails before any byte is written */
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_response);
    curl_easy_setopt(e, CURLOPT_PRIVATE, c);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "product-photo-api/1.0");
    if (c->headers)
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    if (c->follow_redirects) {
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(e, CURLOPT_MAXREDIRS, 3L);
        curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    }
    if (strcmp(c->method, "POST") == 0) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body ? c->body : "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body_len);
    } else if (strcmp(c->method, "PUT") == 0) {
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, c);
        c->body_sent = 0;
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE,
                         c->upload_fd < 0 ? (curl_off_t)c->body_len : c->upload_size);
    } else if (strcmp(c->method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(c->method, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, c->method);
    }
    if (c->peer_url) {
        c->guard.allow_private = c->allow_private_fetch;
        fetchpolicy_apply(e, &c->guard);
    }
    return 0;
}

static void call_finish(struct upstream_call *c, CURLcode code)
{
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &c->http_status);
    if (code == CURLE_FILESIZE_EXCEEDED)
        c->result = ERR_TOO_LARGE;
    if (code == CURLE_OK) {
        c->result = 0;
    } else if (c->peer_url && c->guard.refused) {
        c->result = ERR_UPSTREAM;
        c->refused = 1;
        snprintf(c->error, sizeof c->error, "fetch policy: %.200s", c->guard.why);
    } else if (c->result == ERR_TOO_LARGE) {
        snprintf(c->error, sizeof c->error, "answer larger than %zu bytes", c->max_response);
    } else if (code == CURLE_OPERATION_TIMEDOUT) {
        c->result = ERR_TIMEOUT;
    } else {
        c->result = ERR_UPSTREAM;
        if (!c->error[0])
            snprintf(c->error, sizeof c->error, "%s", curl_easy_strerror(code));
    }
}

void upstream_perform_sync(struct upstream_call *c)
{
    CURLcode code;
    int rc = call_prepare(c, NULL);

    if (rc) {
        c->result = rc == ERR_NOMEM ? ERR_NOMEM : ERR_UPSTREAM;
        return;
    }
    code = curl_easy_perform(c->easy);
    call_finish(c, code);
}

static void complete(struct upstream_worker *w, struct upstream_call *c)
{
    struct upstream *u = w->u;

    atomic_fetch_sub(&w->inflight, 1);
    if (u->observe)
        u->observe(c, u->observe_arg);
    c->done(c, c->arg);
}

static void fail_stopping(struct upstream_worker *w, struct upstream_call *c)
{
    c->result = ERR_UPSTREAM;
    snprintf(c->error, sizeof c->error, "server shutting down");
    complete(w, c);
}

/* The handle of a finished call: kept (reset) for the next call, or freed. */
static void release_easy(struct upstream_worker *w, CURL *e)
{
    if (w->n_idle < UPSTREAM_IDLE_HANDLES) {
        curl_easy_reset(e);
        w->idle[w->n_idle++] = e;
    } else {
        curl_easy_cleanup(e);
    }
}

static void active_unlink(struct upstream_worker *w, struct upstream_call *c)
{
    for (struct upstream_call **pp = &w->active; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            c->next = NULL;
            return;
        }
    }
}

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* CURLMOPT_SOCKETFUNCTION: keep the epoll set what curl wants to wait for. */
static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct upstream_worker *w = userp;
    struct epoll_event ev;

    (void)e;
    (void)socketp;
    if (what == CURL_POLL_REMOVE) {
        (void)epoll_ctl(w->epfd, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    memset(&ev, 0, sizeof ev);
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0u) | (what & CURL_POLL_OUT ? EPOLLOUT : 0u);
    ev.data.fd = s;
    if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, s, &ev) && errno == ENOENT)
        (void)epoll_ctl(w->epfd, EPOLL_CTL_ADD, s, &ev);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: when curl wants CURL_SOCKET_TIMEOUT next. */
static int on_timer(CURLM *m, long timeout_ms, void *userp)
{
    struct upstream_worker *w = userp;

    (void)m;
    w->deadline_ms = timeout_ms < 0 ? -1.0 : mono_ms() + (double)timeout_ms;
    return 0;
}

static void wake(struct upstream_worker *w)
{
    uint64_t one = 1;
    ssize_t n = write(w->wake_fd, &one, sizeof one);
    (void)n; /* EAGAIN: the counter is already non-zero, a wake-up is pending */
}

/* Wait for curl's sockets, its timer or a wake-up, and let curl act on them. */
static void wait_and_act(struct upstream_worker *w)
{
    struct epoll_event ev[UPSTREAM_EVENTS];
    int running = 0;
    int timeout = 1000;
    int n;

    if (w->deadline_ms >= 0) {
        double left = w->deadline_ms - mono_ms();
        timeout = left <= 0 ? 0 : left < 1000 ? (int)left + 1 : 1000;
    }
    n = epoll_wait(w->epfd, ev, UPSTREAM_EVENTS, timeout);
    for (int i = 0; i < n; i++) {
        int mask = 0;
        if (ev[i].data.fd == w->wake_fd) {
            uint64_t count;
            ssize_t r = read(w->wake_fd, &count, sizeof count);
            (void)r;
            continue;
        }
        if (ev[i].events & EPOLLIN)
            mask |= CURL_CSELECT_IN;
        if (ev[i].events & EPOLLOUT)
            mask |= CURL_CSELECT_OUT;
        if (ev[i].events & (EPOLLERR | EPOLLHUP))
            mask |= CURL_CSELECT_ERR;
        curl_multi_socket_action(w->multi, ev[i].data.fd, mask, &running);
    }
    if (w->deadline_ms >= 0 && mono_ms() >= w->deadline_ms) {
        w->deadline_ms = -1.0;
        curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
}

static void *io_thread(void *arg)
{
    struct upstream_worker *w = arg;
    int stopping = 0;

    current_worker = w;
    while (!stopping) {
        struct upstream_call *batch;
        CURLMsg *msg;
        int left = 0;

        pthread_mutex_lock(&w->lock);
        batch = w->queue_head;
        w->queue_head = w->queue_tail = NULL;
        stopping = w->stopping;
        pthread_mutex_unlock(&w->lock);

        while (batch) {
            struct upstream_call *c = batch;
            batch = c->next;
            c->next = NULL;
            if (stopping) {
                fail_stopping(w, c);
                continue;
            }
            if (call_prepare(c, w->n_idle ? w->idle[--w->n_idle] : NULL) ||
                curl_multi_add_handle(w->multi, c->easy) != CURLM_OK) {
                c->result = ERR_UPSTREAM;
                if (!c->error[0])
                    snprintf(c->error, sizeof c->error, "out of memory");
                complete(w, c);
                continue;
            }
            c->next = w->active;
            w->active = c;
        }
        if (stopping)
            break;
        wait_and_act(w);
        while ((msg = curl_multi_info_read(w->multi, &left))) {
            struct upstream_call *c = NULL;
            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
            curl_multi_remove_handle(w->multi, msg->easy_handle);
            active_unlink(w, c);
            call_finish(c, msg->data.result);
            release_easy(w, c->easy);
            c->easy = NULL;
            complete(w, c);
        }
    }

    /* shutting down: fail whatever is still running */
    while (w->active) {
        struct upstream_call *c = w->active;
        w->active = c->next;
        c->next = NULL;
        curl_multi_remove_handle(w->multi, c->easy);
        curl_easy_cleanup(c->easy);
        c->easy = NULL;
        fail_stopping(w, c);
    }
    current_worker = NULL;
    return NULL;
}

static int worker_init(struct upstream *u, struct upstream_worker *w, long max_connections)
{
    struct epoll_event ev;

    w->u = u;
    w->max_connections = max_connections;
    w->deadline_ms = -1.0;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.fd = w->wake_fd;
    if (w->epfd < 0 || w->wake_fd < 0 || epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wake_fd, &ev))
        goto fail;
    w->multi = curl_multi_init();
    if (!w->multi)
        goto fail;
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w);
    curl_multi_setopt(w->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_connections);
    curl_multi_setopt(w->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, max_connections);
    curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS, max_connections);
    pthread_mutex_init(&w->lock, NULL);
    atomic_init(&w->inflight, 0);
    if (pthread_create(&w->thread, NULL, io_thread, w)) {
        pthread_mutex_destroy(&w->lock);
        goto fail;
    }
    (void)pthread_setname_np(w->thread, "ppa-upstream");
    return 0;
fail:
    if (w->multi)
        curl_multi_cleanup(w->multi);
    w->multi = NULL;
    if (w->epfd >= 0)
        close(w->epfd);
    if (w->wake_fd >= 0)
        close(w->wake_fd);
    return ERR_NOMEM;
}

/* Stop accepting calls on w and wake its thread. */
static void worker_signal_stop(struct upstream_worker *w)
{
    pthread_mutex_lock(&w->lock);
    w->stopping = 1;
    pthread_mutex_unlock(&w->lock);
    wake(w);
}

/* Join a signalled worker; fail what was queued after its last look; free it. */
static void worker_finish(struct upstream_worker *w)
{
    pthread_join(w->thread, NULL);
    while (w->queue_head) {
        struct upstream_call *c = w->queue_head;
        w->queue_head = c->next;
        c->next = NULL;
        fail_stopping(w, c);
    }
    w->queue_tail = NULL;
    while (w->n_idle)
        curl_easy_cleanup(w->idle[--w->n_idle]);
    curl_multi_cleanup(w->multi); /* may still tell on_socket to forget sockets */
    close(w->epfd);
    close(w->wake_fd);
    pthread_mutex_destroy(&w->lock);
}

long upstream_default_threads(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return cores > 0 ? cores : 1;
}

struct upstream *upstream_start(long max_connections, long threads)
{
    struct upstream *u = calloc(1, sizeof *u);
    size_t n;

    if (!u)
        return NULL;
    if (max_connections < 1)
        max_connections = 1;
    if (threads < 1)
        threads = upstream_default_threads();
    /* every thread gets at least one connection of the cap */
    if (threads > max_connections)
        threads = max_connections;
    n = (size_t)threads;
    u->w = calloc(n, sizeof *u->w);
    if (!u->w) {
        free(u);
        return NULL;
    }
    for (u->n = 0; u->n < n; u->n++) {
        /* the cap split as evenly as it goes: the shares sum to max_connections */
        long share = max_connections / threads + ((long)u->n < max_connections % threads ? 1 : 0);
        if (worker_init(u, &u->w[u->n], share))
            break;
    }
    if (u->n < n) {
        log_error("upstream: could not start I/O thread %zu of %zu", u->n + 1, n);
        upstream_stop(u);
        return NULL;
    }
    return u;
}

size_t upstream_threads(const struct upstream *u)
{
    return u->n;
}

/* A per-thread xorshift32 step: where a least-loaded scan starts. */
static uint32_t pick_random(void)
{
    static _Thread_local uint32_t x;

    if (!x)
        x = (uint32_t)(uintptr_t)&x ^ (uint32_t)time(NULL) ^ 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
}

/* The worker for a call submitted from this thread: its own on an I/O thread,
 * else the one with the fewest calls queued or running. Ties go to a random
 * one, not in turn: in turn, a burst whose slow calls come at a fixed stride
 * (every 4th of 4 threads) would put them all on one thread's connections. */
static struct upstream_worker *pick_worker(struct upstream *u)
{
    struct upstream_worker *best;
    long best_load;
    size_t start;

    if (current_worker && current_worker->u == u)
        return current_worker;
    if (u->n == 1)
        return &u->w[0];
    start = pick_random() % u->n;
    best = &u->w[start];
    best_load = atomic_load_explicit(&best->inflight, memory_order_relaxed);
    for (size_t i = 1; i < u->n && best_load > 0; i++) {
        struct upstream_worker *w = &u->w[(start + i) % u->n];
        long load = atomic_load_explicit(&w->inflight, memory_order_relaxed);
        if (load < best_load) {
            best = w;
            best_load = load;
        }
    }
    return best;
}

int upstream_submit(struct upstream *u, struct upstream_call *c)
{
    struct upstream_worker *w = pick_worker(u);
    int need_wake;

    pthread_mutex_lock(&w->lock);
    if (w->stopping) {
        pthread_mutex_unlock(&w->lock);
        return ERR_INVALID;
    }
    c->next = NULL;
    /* a queue that was not empty has a wake-up on its way already (the
     * thread empties the queue under the lock, then polls) */
    need_wake = !w->queue_head;
    if (w->queue_tail)
        w->queue_tail->next = c;
    else
        w->queue_head = c;
    w->queue_tail = c;
    atomic_fetch_add(&w->inflight, 1);
    pthread_mutex_unlock(&w->lock);
    if (need_wake)
        wake(w);
    return 0;
}

long upstream_inflight(struct upstream *u)
{
    long sum = 0;
    for (size_t i = 0; i < u->n; i++)
        sum += atomic_load(&u->w[i].inflight);
    return sum;
}

void upstream_stop(struct upstream *u)
{
    if (!u)
        return;
    /* every worker refuses new calls before any is joined, so a done
     * callback of one never queues onto another that is already gone */
    for (size_t i = 0; i < u->n; i++)
        worker_signal_stop(&u->w[i]);
    for (size_t i = 0; i < u->n; i++)
        worker_finish(&u->w[i]);
    free(u->w);
    free(u);
}
