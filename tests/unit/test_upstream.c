/* test_upstream.c - upstream.c's I/O threads against a tiny local HTTP server:
 * every call's done runs exactly once and on an I/O thread, a call submitted
 * from a done callback stays on that thread, the connection cap is global
 * over the threads, connections are reused, errors keep their mapping, the
 * in-flight count sums over the threads, and stopping fails what is running. */
#include "err.h"
#include "test.h"
#include "upstream.h"

#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- the server: one thread per connection, HTTP/1.1 keep-alive ---------------
 *   /fast  200 "ok"     /slow  200 "ok" after 100 ms
 *   /500   500 "no"     /hang  no answer until the server stops */

struct server {
    int fd;
    int port;
    pthread_t accepter;
    atomic_int stop;
    atomic_int open;      /* connections open now */
    atomic_int max_open;  /* the most open at once */
    atomic_int accepted;  /* connections ever accepted */
    atomic_int requests;
};

struct conn {
    struct server *s;
    int fd;
};

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void *conn_thread(void *arg)
{
    struct conn *c = arg;
    struct server *s = c->s;
    char req[4096];
    size_t len = 0;

    while (!atomic_load(&s->stop)) {
        struct pollfd p = {c->fd, POLLIN, 0};
        char *end;
        ssize_t n;
        if (poll(&p, 1, 20) <= 0)
            continue;
        n = recv(c->fd, req + len, sizeof req - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
        req[len] = '\0';
        while ((end = strstr(req, "\r\n\r\n"))) {
            const char *body = "ok";
            int status = 200;
            char head[256];
            size_t used = (size_t)(end + 4 - req);
            atomic_fetch_add(&s->requests, 1);
            if (strncmp(req, "GET /hang", 9) == 0) {
                /* until the client gives up (EOF) or the server stops */
                while (!atomic_load(&s->stop)) {
                    struct pollfd h = {c->fd, POLLIN, 0};
                    char b;
                    if (poll(&h, 1, 10) > 0 && recv(c->fd, &b, 1, MSG_PEEK) <= 0)
                        break;
                }
                goto out;
            }
            if (strncmp(req, "GET /slow", 9) == 0)
                sleep_ms(100);
            if (strncmp(req, "GET /500", 8) == 0) {
                status = 500;
                body = "no";
            }
            snprintf(head, sizeof head, "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n\r\n%s", status, strlen(body), body);
            if (send_all(c->fd, head, strlen(head)))
                goto out;
            memmove(req, req + used, len - used + 1);
            len -= used;
        }
        if (len >= sizeof req - 1)
            break;
    }
out:
    close(c->fd);
    atomic_fetch_sub(&s->open, 1);
    free(c);
    return NULL;
}

static void *accept_thread(void *arg)
{
    struct server *s = arg;

    while (!atomic_load(&s->stop)) {
        struct pollfd p = {s->fd, POLLIN, 0};
        struct conn *c;
        pthread_t t;
        int fd, now;
        if (poll(&p, 1, 20) <= 0)
            continue;
        fd = accept(s->fd, NULL, NULL);
        if (fd < 0)
            continue;
        now = atomic_fetch_add(&s->open, 1) + 1;
        atomic_fetch_add(&s->accepted, 1);
        for (int m = atomic_load(&s->max_open); now > m && !atomic_compare_exchange_weak(&s->max_open, &m, now);)
            ;
        c = malloc(sizeof *c);
        c->s = s;
        c->fd = fd;
        if (pthread_create(&t, NULL, conn_thread, c)) {
            close(fd);
            atomic_fetch_sub(&s->open, 1);
            free(c);
            continue;
        }
        pthread_detach(t);
    }
    return NULL;
}

static int server_start(struct server *s)
{
    struct sockaddr_in a;
    socklen_t al = sizeof a;

    memset(s, 0, sizeof *s);
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&a, sizeof a) || listen(s->fd, 256) ||
        getsockname(s->fd, (struct sockaddr *)&a, &al))
        return -1;
    s->port = ntohs(a.sin_port);
    return pthread_create(&s->accepter, NULL, accept_thread, s) ? -1 : 0;
}

static void server_stop(struct server *s)
{
    atomic_store(&s->stop, 1);
    pthread_join(s->accepter, NULL);
    close(s->fd);
    for (int i = 0; i < 500 && atomic_load(&s->open) > 0; i++)
        sleep_ms(10);
}

/* ---- calls and what their done saw -------------------------------------------- */

struct probe {
    atomic_int done;          /* times done ran */
    pthread_t thread;         /* where it ran */
    int result;
    long status;
    char body[16];
    struct upstream *u;       /* chained: submit `next` from done */
    struct upstream_call *next;
    struct probe *next_probe;
};

static void on_done(struct upstream_call *c, void *arg)
{
    struct probe *p = arg;
    p->thread = pthread_self();
    p->result = c->result;
    p->status = c->http_status;
    snprintf(p->body, sizeof p->body, "%s", buf_str(&c->response));
    if (p->next) {
        if (upstream_submit(p->u, p->next)) {
            upstream_call_free(p->next);
            p->next_probe->result = -1;
        }
        p->next = NULL;
    }
    upstream_call_free(c);
    atomic_fetch_add(&p->done, 1);
}

static struct upstream_call *call_to(struct server *s, const char *path, long timeout_ms, struct probe *p)
{
    char url[128];
    struct upstream_call *c;

    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", s->port, path);
    c = upstream_call_new("GET", url, timeout_ms, 1024);
    c->done = on_done;
    c->arg = p;
    return c;
}

/* Wait until the connections of earlier tests are gone, then count from zero. */
static void server_reset_counts(struct server *s)
{
    for (int i = 0; i < 300 && atomic_load(&s->open) > 0; i++)
        sleep_ms(10);
    atomic_store(&s->max_open, atomic_load(&s->open));
    atomic_store(&s->accepted, 0);
    atomic_store(&s->requests, 0);
}

static int wait_done(struct probe *p, size_t n, long ms)
{
    for (long waited = 0; waited <= ms; waited += 5) {
        size_t all = 0;
        for (size_t i = 0; i < n; i++)
            all += atomic_load(&p[i].done) > 0;
        if (all == n)
            return 1;
        sleep_ms(5);
    }
    return 0;
}

static atomic_int observed;
static void observe(const struct upstream_call *c, void *arg)
{
    (void)c;
    (void)arg;
    atomic_fetch_add(&observed, 1);
}

/* ---- the tests ------------------------------------------------------------------ */

#define SUBMITTERS 4
#define PER_SUBMITTER 100

struct submitter {
    struct upstream *u;
    struct server *s;
    struct probe *p;
    int failed;
};

static void *submit_many(void *arg)
{
    struct submitter *sb = arg;
    static const char *const paths[] = {"/fast", "/slow", "/500", "/fast"};
    for (int i = 0; i < PER_SUBMITTER; i++)
        if (upstream_submit(sb->u, call_to(sb->s, paths[i % 4], 30000, &sb->p[i])))
            sb->failed++;
    return NULL;
}

static void test_many_threads_each_done_once(struct server *s)
{
    struct upstream *u = upstream_start(8, 4);
    static struct probe p[SUBMITTERS * PER_SUBMITTER];
    struct submitter sb[SUBMITTERS];
    pthread_t t[SUBMITTERS];
    int wrong = 0, twice = 0, submitters_ran_done = 0;

    TEST_ASSERT(u && upstream_threads(u) == 4, "4 I/O threads");
    upstream_set_observer(u, observe, NULL);
    atomic_store(&observed, 0);
    server_reset_counts(s);
    for (int i = 0; i < SUBMITTERS; i++) {
        sb[i] = (struct submitter){u, s, &p[i * PER_SUBMITTER], 0};
        pthread_create(&t[i], NULL, submit_many, &sb[i]);
    }
    for (int i = 0; i < SUBMITTERS; i++)
        pthread_join(t[i], NULL);
    /* 100 slow calls of 100 ms on 8 connections: ~1.3 s when the threads share them out evenly */
    TEST_ASSERT(wait_done(p, SUBMITTERS * PER_SUBMITTER, 30000), "every call done within 30 s");
    sleep_ms(50); /* a second done would show up now */
    for (size_t i = 0; i < SUBMITTERS * PER_SUBMITTER; i++) {
        int is500 = (i % PER_SUBMITTER) % 4 == 2;
        twice += atomic_load(&p[i].done) != 1;
        if (p[i].result != 0 || p[i].status != (is500 ? 500 : 200) || strcmp(p[i].body, is500 ? "no" : "ok") != 0) {
            if (wrong++ < 3)
                fprintf(stderr, "call %zu: result %d, HTTP %ld, body %s\n", i, p[i].result, p[i].status, p[i].body);
        }
        for (int k = 0; k < SUBMITTERS; k++)
            submitters_ran_done += pthread_equal(p[i].thread, t[k]);
    }
    TEST_ASSERT(sb[0].failed + sb[1].failed + sb[2].failed + sb[3].failed == 0, "every submit accepted");
    TEST_ASSERT(twice == 0, "%d calls done != once", twice);
    TEST_ASSERT(wrong == 0, "%d calls with a wrong result", wrong);
    TEST_ASSERT(submitters_ran_done == 0, "done ran on a submitting thread");
    TEST_ASSERT(atomic_load(&observed) == SUBMITTERS * PER_SUBMITTER, "observer saw %d", atomic_load(&observed));
    TEST_ASSERT(upstream_inflight(u) == 0, "inflight %ld after all", upstream_inflight(u));
    /* KIE_MAX_CONNECTIONS is global: 8 over 4 threads, never more open at once */
    TEST_ASSERT(atomic_load(&s->max_open) <= 8, "%d connections open at once, cap 8", atomic_load(&s->max_open));
    /* and kept alive: 400 calls over at most 8 connections (a 500 keeps its connection too) */
    TEST_ASSERT(atomic_load(&s->accepted) <= 8, "%d connections for 400 calls", atomic_load(&s->accepted));
    upstream_stop(u);
}

static void test_chained_call_stays_on_its_thread(struct server *s)
{
    struct upstream *u = upstream_start(16, 4);
    static struct probe first[32], second[32];
    int moved = 0;

    for (int i = 0; i < 32; i++) {
        first[i].u = u;
        first[i].next = call_to(s, i % 2 ? "/fast" : "/slow", 5000, &second[i]);
        first[i].next_probe = &second[i];
        TEST_ASSERT(upstream_submit(u, call_to(s, "/fast", 5000, &first[i])) == 0, "submit");
    }
    TEST_ASSERT(wait_done(first, 32, 10000) && wait_done(second, 32, 10000), "chains done");
    for (int i = 0; i < 32; i++)
        moved += !pthread_equal(first[i].thread, second[i].thread) || atomic_load(&second[i].done) != 1;
    TEST_ASSERT(moved == 0, "%d chained calls ran on another I/O thread", moved);
    upstream_stop(u);
}

static void test_cap_split_and_clamp(struct server *s)
{
    struct upstream *u = upstream_start(3, 2); /* shares 2 + 1 */
    static struct probe p[24];

    TEST_ASSERT(u && upstream_threads(u) == 2, "2 threads");
    server_reset_counts(s);
    for (int i = 0; i < 24; i++)
        TEST_ASSERT(upstream_submit(u, call_to(s, "/slow", 10000, &p[i])) == 0, "submit");
    TEST_ASSERT(upstream_inflight(u) > 0 && upstream_inflight(u) <= 24, "inflight %ld", upstream_inflight(u));
    TEST_ASSERT(wait_done(p, 24, 15000), "24 slow calls done");
    TEST_ASSERT(atomic_load(&s->max_open) <= 3, "%d open at once with a cap of 3", atomic_load(&s->max_open));
    upstream_stop(u);
    /* more threads than connections: one thread per connection at most */
    u = upstream_start(1, 4);
    TEST_ASSERT(u && upstream_threads(u) == 1, "cap 1 -> 1 thread, got %zu", u ? upstream_threads(u) : 0);
    upstream_stop(u);
    u = upstream_start(8, 0);
    TEST_ASSERT(u && (long)upstream_threads(u) == (upstream_default_threads() < 8 ? upstream_default_threads() : 8),
                "0 = cores");
    upstream_stop(u);
}

static void test_errors_map_the_same(struct server *s, long threads)
{
    struct upstream *u = upstream_start(8, threads);
    static struct probe p[3];
    char url[64];

    memset(p, 0, sizeof p);
    TEST_ASSERT(upstream_submit(u, call_to(s, "/hang", 300, &p[0])) == 0, "submit");
    TEST_ASSERT(upstream_submit(u, call_to(s, "/500", 5000, &p[1])) == 0, "submit");
    snprintf(url, sizeof url, "http://127.0.0.1:1/closed");
    {
        struct upstream_call *c = upstream_call_new("GET", url, 5000, 1024);
        c->done = on_done;
        c->arg = &p[2];
        TEST_ASSERT(upstream_submit(u, c) == 0, "submit");
    }
    TEST_ASSERT(wait_done(p, 3, 10000), "done");
    TEST_ASSERT(p[0].result == ERR_TIMEOUT && p[0].status == 0, "threads %ld: hang -> ERR_TIMEOUT (%d)", threads,
                p[0].result);
    TEST_ASSERT(p[1].result == 0 && p[1].status == 500, "threads %ld: 500 is an answer (%d %ld)", threads, p[1].result,
                p[1].status);
    TEST_ASSERT(p[2].result == ERR_UPSTREAM && p[2].status == 0, "threads %ld: refused -> ERR_UPSTREAM (%d)", threads,
                p[2].result);
    upstream_stop(u);
}

static void test_stop_fails_running_calls_once(struct server *s)
{
    struct upstream *u = upstream_start(4, 4);
    static struct probe p[40];
    int once = 0, failed = 0;

    server_reset_counts(s);
    for (int i = 0; i < 40; i++) /* 4 running (the cap), 36 queued in curl or in our queues */
        TEST_ASSERT(upstream_submit(u, call_to(s, "/hang", 30000, &p[i])) == 0, "submit");
    for (int i = 0; i < 200 && atomic_load(&s->requests) < 4; i++)
        sleep_ms(10);
    TEST_ASSERT(upstream_inflight(u) == 40, "inflight %ld, want 40 (summed over threads)", upstream_inflight(u));
    upstream_stop(u);
    for (int i = 0; i < 40; i++) {
        once += atomic_load(&p[i].done) == 1;
        failed += p[i].result == ERR_UPSTREAM;
    }
    TEST_ASSERT(once == 40 && failed == 40, "after stop: %d done once, %d failed", once, failed);
}

int main(void)
{
    struct server s;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (server_start(&s)) {
        fprintf(stderr, "cannot start the test server\n");
        return 1;
    }
    test_many_threads_each_done_once(&s);
    test_chained_call_stays_on_its_thread(&s);
    test_cap_split_and_clamp(&s);
    test_errors_map_the_same(&s, 1);
    test_errors_map_the_same(&s, 4);
    test_stop_fails_running_calls_once(&s);
    server_stop(&s);
    curl_global_cleanup();
    return test_report();
}
