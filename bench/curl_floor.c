/* curl_floor.c - the benchmark's "libcurl alone" client: CONCURRENCY calls in
 * flight to URL, each answered call replaced at once, for SECONDS, on one
 * thread. It drives its curl multi handle the way src/upstream.c does
 * (curl_multi_socket_action over epoll, easy handles reused, kept-alive
 * connections, our Authorization header) and does nothing with the answers.
 * Its CPU per call is what libcurl itself costs for the KIE hop of /status,
 * measured in the same run as ours and nginx's proxy_pass.
 *
 *   curl_floor URL CONCURRENCY SECONDS
 *   prints: BENCHFLOOR calls=N seconds=S cpu_us_per_call=U errors=E */
#include <curl/curl.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

struct loop {
    CURLM *multi;
    int epfd;
    long timeout_ms; /* curl's timer, < 0: none */
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

static int on_socket(CURL *e, curl_socket_t s, int what, void *arg, void *sockp)
{
    struct loop *l = arg;
    struct epoll_event ev = {0};

    (void)e;
    ev.data.fd = s;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(l->epfd, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0u) | (what & CURL_POLL_OUT ? EPOLLOUT : 0u);
    if (epoll_ctl(l->epfd, sockp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s, &ev) != 0)
        epoll_ctl(l->epfd, EPOLL_CTL_MOD, s, &ev);
    curl_multi_assign(l->multi, s, (void *)1);
    return 0;
}

static int on_timer(CURLM *m, long timeout_ms, void *arg)
{
    (void)m;
    ((struct loop *)arg)->timeout_ms = timeout_ms;
    return 0;
}

static double now_s(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    struct loop l = {NULL, -1, -1};
    struct curl_slist *hdrs;
    long calls = 0, errors = 0, n;
    double secs, t0, c0, cpu;
    int running = 0;

    if (argc != 4 || (n = strtol(argv[2], NULL, 10)) < 1 || (secs = strtod(argv[3], NULL)) <= 0) {
        fprintf(stderr, "usage: curl_floor URL CONCURRENCY SECONDS\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    l.multi = curl_multi_init();
    l.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!l.multi || l.epfd < 0)
        return 1;
    curl_multi_setopt(l.multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(l.multi, CURLMOPT_SOCKETDATA, &l);
    curl_multi_setopt(l.multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(l.multi, CURLMOPT_TIMERDATA, &l);
    hdrs = curl_slist_append(NULL, "Authorization: Bearer bench-key");
    for (long i = 0; i < n; i++) {
        CURL *e = curl_easy_init();
        if (!e)
            return 1;
        curl_easy_setopt(e, CURLOPT_URL, argv[1]);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_multi_add_handle(l.multi, e);
    }
    t0 = now_s(CLOCK_MONOTONIC);
    c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    curl_multi_socket_action(l.multi, CURL_SOCKET_TIMEOUT, 0, &running);
    while (now_s(CLOCK_MONOTONIC) - t0 < secs) {
        struct epoll_event ev[64];
        CURLMsg *msg;
        int k, left;

        k = epoll_wait(l.epfd, ev, 64, l.timeout_ms < 0 ? 100 : (int)l.timeout_ms);
        if (k <= 0)
            curl_multi_socket_action(l.multi, CURL_SOCKET_TIMEOUT, 0, &running);
        for (int i = 0; i < k; i++) {
            int mask = (ev[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) | (ev[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                       (ev[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
            curl_multi_socket_action(l.multi, ev[i].data.fd, mask, &running);
        }
        while ((msg = curl_multi_info_read(l.multi, &left))) {
            CURL *e = msg->easy_handle;
            if (msg->msg != CURLMSG_DONE)
                continue;
            if (msg->data.result == CURLE_OK)
                calls++;
            else
                errors++;
            curl_multi_remove_handle(l.multi, e);
            curl_multi_add_handle(l.multi, e); /* the next call, on the same kept-alive connection */
        }
    }
    cpu = now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    printf("BENCHFLOOR calls=%ld seconds=%.2f cpu_us_per_call=%.1f errors=%ld\n", calls, now_s(CLOCK_MONOTONIC) - t0,
           calls ? 1e6 * cpu / (double)calls : 0.0, errors);
    close(l.epfd);
    return errors ? 1 : 0;
}
