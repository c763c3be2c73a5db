/* test_fetchpolicy.c - the fetch policy: the address classifier on every
 * spelling of an address, the URL check, replay memory, taskcache's first
 * final answer, and real libcurl transfers to a listener of our own on
 * 127.0.0.1 (CURLOPT_RESOLVE maps a public-looking name to it, as DNS
 * rebinding would). Public addresses appear as data only: nothing here
 * connects anywhere but loopback. */
#include "err.h"
#include "fetchpolicy.h"
#include "replay.h"
#include "taskcache.h"
#include "test.h"
#include "upstream.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- a tiny loopback HTTP server that counts what it gets ---------------- */

struct listener {
    int fd;
    int port;
    pthread_t thread;
    atomic_int stop;
    atomic_int requests;
    atomic_int saw_auth;
};

static void serve_one(struct listener *l, int c)
{
    char req[4096];
    size_t n = 0;
    char head[512];
    const char *body = "ok";
    char path[256] = "/";

    while (n < sizeof req - 1) {
        ssize_t got = recv(c, req + n, sizeof req - 1 - n, 0);
        if (got <= 0)
            break;
        n += (size_t)got;
        req[n] = '\0';
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    req[n] = '\0';
    if (n == 0)
        return;
    atomic_fetch_add(&l->requests, 1);
    if (strstr(req, "\nAuthorization:") || strstr(req, "\nauthorization:"))
        atomic_store(&l->saw_auth, 1);
    if (sscanf(req, "GET %255s", path) != 1)
        path[0] = '\0';
    if (strcmp(path, "/userinfo") == 0)
        snprintf(head, sizeof head,
                 "HTTP/1.1 302 Found\r\nLocation: http://user:secret@rebind.example:%d/t\r\n"
                 "Content-Length: 0\r\nConnection: close\r\n\r\n", l->port);
    else if (strcmp(path, "/file") == 0)
        snprintf(head, sizeof head,
                 "HTTP/1.1 302 Found\r\nLocation: file:///etc/passwd\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    else if (strcmp(path, "/loop") == 0)
        snprintf(head, sizeof head,
                 "HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    else
        snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                 strlen(body), body);
    (void)!send(c, head, strlen(head), MSG_NOSIGNAL);
}

static void *listener_main(void *arg)
{
    struct listener *l = arg;
    while (!atomic_load(&l->stop)) {
        struct pollfd p = {.fd = l->fd, .events = POLLIN};
        if (poll(&p, 1, 50) == 1) {
            int c = accept(l->fd, NULL, NULL);
            if (c >= 0) {
                serve_one(l, c);
                close(c);
            }
        }
    }
    return NULL;
}

static int listener_start(struct listener *l)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof a;

    memset(l, 0, sizeof *l);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    l->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (l->fd < 0 || bind(l->fd, (struct sockaddr *)&a, sizeof a) || listen(l->fd, 16) ||
        getsockname(l->fd, (struct sockaddr *)&a, &len))
        return -1;
    l->port = ntohs(a.sin_port);
    return pthread_create(&l->thread, NULL, listener_main, l) ? -1 : 0;
}

static void listener_stop(struct listener *l)
{
    atomic_store(&l->stop, 1);
    pthread_join(l->thread, NULL);
    close(l->fd);
}

static size_t sink(char *d, size_t s, size_t n, void *u)
{
    (void)d;
    (void)u;
    return s * n;
}

/* GET `path` on rebind.example (CURLOPT_RESOLVE: -> 127.0.0.1) with the policy. */
static CURLcode fetch_rebind(struct listener *l, const char *path, int allow_private, struct fetch_guard *g,
                             long *status)
{
    char url[256];
    char map[128];
    struct curl_slist *resolve;
    CURL *e = curl_easy_init();
    CURLcode rc;

    snprintf(url, sizeof url, "http://rebind.example:%d%s", l->port, path);
    snprintf(map, sizeof map, "rebind.example:%d:127.0.0.1", l->port);
    resolve = curl_slist_append(NULL, map);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_RESOLVE, resolve);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink);
    g->allow_private = allow_private;
    fetchpolicy_apply(e, g);
    rc = curl_easy_perform(e);
    *status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
    curl_easy_cleanup(e);
    curl_slist_free_all(resolve);
    return rc;
}

/* ---- the classifier ------------------------------------------------------ */

static void check_host(const char *host, enum fetch_class want)
{
    enum fetch_class got = fetchpolicy_classify_host(host);
    TEST_ASSERT(got == want, "classify_host(%s) = %s, want %s", host, fetchpolicy_class_name(got),
                fetchpolicy_class_name(want));
}

static void test_classifier(void)
{
    /* every spelling of loopback the resolver accepts */
    check_host("127.0.0.1", FETCH_LOOPBACK);
    check_host("2130706433", FETCH_LOOPBACK);
    check_host("0177.0.0.1", FETCH_LOOPBACK);
    check_host("0x7f.1", FETCH_LOOPBACK);
    check_host("0x7f000001", FETCH_LOOPBACK);
    check_host("127.1", FETCH_LOOPBACK);
    check_host("127.255.255.254", FETCH_LOOPBACK);
    check_host("::1", FETCH_LOOPBACK);
    check_host("[::1]", FETCH_LOOPBACK);
    check_host("::ffff:127.0.0.1", FETCH_LOOPBACK);
    check_host("[::ffff:7f00:1]", FETCH_LOOPBACK);
    check_host("::127.0.0.1", FETCH_LOOPBACK);         /* IPv4-compatible */
    check_host("64:ff9b::127.0.0.1", FETCH_LOOPBACK);  /* NAT64 */
    check_host("2002:7f00:1::", FETCH_LOOPBACK);       /* 6to4 */
    check_host("localhost", FETCH_LOOPBACK);
    check_host("localhost.", FETCH_LOOPBACK);
    check_host("LocalHost", FETCH_LOOPBACK);
    check_host("api.localhost.", FETCH_LOOPBACK);
    check_host("127.0.0.1.", FETCH_LOOPBACK);
    /* private and the rest */
    check_host("10.0.0.1", FETCH_PRIVATE);
    check_host("::ffff:10.0.0.1", FETCH_PRIVATE);
    check_host("172.16.0.1", FETCH_PRIVATE);
    check_host("172.31.255.255", FETCH_PRIVATE);
    check_host("192.168.1.1", FETCH_PRIVATE);
    check_host("0xc0.0xa8.1.1", FETCH_PRIVATE);
    check_host("169.254.169.254", FETCH_LINK_LOCAL);
    check_host("0xa9fea9fe", FETCH_LINK_LOCAL);
    check_host("::ffff:169.254.169.254", FETCH_LINK_LOCAL);
    check_host("fe80::1", FETCH_LINK_LOCAL);
    check_host("[fe80::1%25eth0]", FETCH_LINK_LOCAL);
    check_host("100.64.0.1", FETCH_CGNAT);
    check_host("100.127.255.255", FETCH_CGNAT);
    check_host("fc00::1", FETCH_ULA);
    check_host("fd12:3456::1", FETCH_ULA);
    check_host("0.0.0.0", FETCH_UNSPECIFIED);
    check_host("0", FETCH_UNSPECIFIED);
    check_host("::", FETCH_UNSPECIFIED);
    check_host("0.1.2.3", FETCH_THIS_NETWORK);
    check_host("224.0.0.1", FETCH_MULTICAST);
    check_host("ff02::1", FETCH_MULTICAST);
    check_host("255.255.255.255", FETCH_BROADCAST);
    check_host("240.0.0.1", FETCH_RESERVED);
    check_host("2001:db8::1", FETCH_RESERVED);
    check_host("::ffff:0:10.0.0.1", FETCH_PRIVATE);    /* SIIT */
    /* public: as addresses only, nothing connects to them */
    check_host("93.184.216.34", FETCH_PUBLIC);
    check_host("8.8.8.8", FETCH_PUBLIC);
    check_host("100.63.255.255", FETCH_PUBLIC);
    check_host("100.128.0.0", FETCH_PUBLIC);
    check_host("172.32.0.1", FETCH_PUBLIC);
    check_host("2606:4700::1111", FETCH_PUBLIC);
    check_host("[2606:4700::1111]", FETCH_PUBLIC);
    check_host("::ffff:93.184.216.34", FETCH_PUBLIC);
    check_host("64:ff9b::8.8.8.8", FETCH_PUBLIC);
    /* names are judged when connected */
    check_host("example.com", FETCH_NOT_IP);
    check_host("rebind.example", FETCH_NOT_IP);
    check_host("localhost.example.com", FETCH_NOT_IP);

    {
        struct sockaddr_in in = {.sin_family = AF_INET};
        struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
        inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
        TEST_ASSERT(fetchpolicy_classify_sockaddr((struct sockaddr *)&in, sizeof in) == FETCH_LOOPBACK, "sockaddr v4");
        inet_pton(AF_INET, "93.184.216.34", &in.sin_addr);
        TEST_ASSERT(fetchpolicy_classify_sockaddr((struct sockaddr *)&in, sizeof in) == FETCH_PUBLIC, "sockaddr v4 pub");
        inet_pton(AF_INET6, "::ffff:192.168.0.1", &in6.sin6_addr);
        TEST_ASSERT(fetchpolicy_classify_sockaddr((struct sockaddr *)&in6, sizeof in6) == FETCH_PRIVATE, "sockaddr v6");
        TEST_ASSERT(fetchpolicy_classify_sockaddr((struct sockaddr *)&in6, 4) == FETCH_RESERVED, "short sockaddr");
    }
}

static void check_url(const char *url, int allow_private, int want_ok)
{
    char why[256];
    int rc = fetchpolicy_check_url(url, allow_private, why, sizeof why);
    TEST_ASSERT((rc == 0) == want_ok, "check_url(%s, allow=%d) = %d (%s)", url, allow_private, rc, why);
    TEST_ASSERT(!strstr(why, "secret"), "the reason must not carry the password: %s", why);
}

static void test_urls(void)
{
    check_url("https://tempfile.aiquickdraw.com/r/abc.png", 0, 1);
    check_url("http://93.184.216.34/x.png", 0, 1);
    check_url("https://[2606:4700::1111]/x.png", 0, 1);
    check_url("http://127.0.0.1:8080/x", 0, 0);
    check_url("http://0x7f.1/", 0, 0);
    check_url("http://2130706433/", 0, 0);
    check_url("http://0177.0.0.1/", 0, 0);
    check_url("http://127.1/", 0, 0);
    check_url("http://[::1]/", 0, 0);
    check_url("http://[::ffff:127.0.0.1]/", 0, 0);
    check_url("http://169.254.169.254/latest/meta-data/", 0, 0);
    check_url("http://localhost./x", 0, 0);
    check_url("http://127.0.0.1:8080/x", 1, 1); /* ALLOW_PRIVATE_FETCH=1 */
    /* never userinfo, never another scheme, even when private is allowed */
    check_url("http://user:secret@example.com/x", 1, 0);
    check_url("http://user@example.com/x", 1, 0);
    check_url("http://:secret@example.com/x", 1, 0);
    check_url("ftp://example.com/x", 1, 0);
    check_url("file:///etc/passwd", 1, 0);
    check_url("gopher://example.com/x", 1, 0);
    check_url("not a url", 1, 0);
}

/* ---- real transfers to our own loopback listener -------------------------- */

static void test_transfers(void)
{
    struct listener l;
    struct fetch_guard g;
    long status;
    CURLcode rc;

    if (listener_start(&l)) {
        TEST_ASSERT(0, "could not start the loopback listener");
        return;
    }
    /* DNS says rebind.example is 127.0.0.1: refused at connect, nothing sent */
    rc = fetch_rebind(&l, "/x", 0, &g, &status);
    TEST_ASSERT(rc != CURLE_OK && g.refused, "rebind.example -> 127.0.0.1 must be refused (rc %d)", rc);
    TEST_ASSERT(strstr(g.why, "127.0.0.1") && strstr(g.why, "loopback"), "why: %s", g.why);
    TEST_ASSERT(atomic_load(&l.requests) == 0, "the listener got %d requests", atomic_load(&l.requests));

    /* the same with ALLOW_PRIVATE_FETCH=1 works */
    rc = fetch_rebind(&l, "/x", 1, &g, &status);
    TEST_ASSERT(rc == CURLE_OK && status == 200 && !g.refused, "allowed: rc %d status %ld (%s)", rc, status, g.why);
    TEST_ASSERT(atomic_load(&l.requests) == 1, "one request, got %d", atomic_load(&l.requests));

    /* a redirect that carries userinfo: refused before the request, no Basic auth */
    atomic_store(&l.requests, 0);
    rc = fetch_rebind(&l, "/userinfo", 1, &g, &status);
    TEST_ASSERT(rc != CURLE_OK && g.refused, "userinfo redirect: rc %d", rc);
    TEST_ASSERT(atomic_load(&l.requests) == 1 && !atomic_load(&l.saw_auth), "requests %d, auth %d",
                atomic_load(&l.requests), atomic_load(&l.saw_auth));
    TEST_ASSERT(!strstr(g.why, "secret"), "why must not carry the password: %s", g.why);

    /* a redirect to file:// is not followed */
    atomic_store(&l.requests, 0);
    rc = fetch_rebind(&l, "/file", 1, &g, &status);
    TEST_ASSERT(rc != CURLE_OK, "file:// redirect followed (rc %d)", rc);
    TEST_ASSERT(atomic_load(&l.requests) == 1, "requests %d", atomic_load(&l.requests));

    /* at most 3 redirects: the first request and 3 more */
    atomic_store(&l.requests, 0);
    rc = fetch_rebind(&l, "/loop", 1, &g, &status);
    TEST_ASSERT(rc == CURLE_TOO_MANY_REDIRECTS, "redirect loop: rc %d", rc);
    TEST_ASSERT(atomic_load(&l.requests) == 4, "requests %d, want 4", atomic_load(&l.requests));

    /* through upstream.h: a peer URL on loopback is refused, an allowed one works */
    {
        char url[128];
        struct upstream_call *c;
        snprintf(url, sizeof url, "http://127.0.0.1:%d/x", l.port);
        atomic_store(&l.requests, 0);
        c = upstream_call_new("GET", url, 5000, 1024);
        c->peer_url = 1;
        upstream_perform_sync(c);
        TEST_ASSERT(c->result == ERR_UPSTREAM && c->refused && c->http_status == 0, "upstream refused: %d %s",
                    c->result, c->error);
        upstream_call_free(c);
        snprintf(url, sizeof url, "http://0x7f.1:%d/x", l.port);
        c = upstream_call_new("GET", url, 5000, 1024);
        c->peer_url = 1;
        upstream_perform_sync(c);
        TEST_ASSERT(c->result == ERR_UPSTREAM && c->refused, "0x7f.1 refused: %d %s", c->result, c->error);
        upstream_call_free(c);
        snprintf(url, sizeof url, "http://user:secret@127.0.0.1:%d/x", l.port);
        c = upstream_call_new("GET", url, 5000, 1024);
        c->peer_url = 1;
        c->allow_private_fetch = 1;
        upstream_perform_sync(c);
        TEST_ASSERT(c->result == ERR_UPSTREAM && c->refused && !strstr(c->error, "secret"), "userinfo: %d %s",
                    c->result, c->error);
        upstream_call_free(c);
        TEST_ASSERT(atomic_load(&l.requests) == 0, "refused calls reached the listener: %d",
                    atomic_load(&l.requests));
        snprintf(url, sizeof url, "http://127.0.0.1:%d/x", l.port);
        c = upstream_call_new("GET", url, 5000, 1024);
        c->peer_url = 1;
        c->allow_private_fetch = 1;
        upstream_perform_sync(c);
        TEST_ASSERT(c->result == 0 && c->http_status == 200 && strcmp(buf_str(&c->response), "ok") == 0,
                    "allowed upstream call: %d %ld %s", c->result, c->http_status, c->error);
        upstream_call_free(c);
        /* our own endpoints (peer_url 0) are not subject to it */
        c = upstream_call_new("GET", url, 5000, 1024);
        upstream_perform_sync(c);
        TEST_ASSERT(c->result == 0 && c->http_status == 200, "configured endpoint: %d %s", c->result, c->error);
        upstream_call_free(c);
    }
    listener_stop(&l);
}

/* ---- replayed callbacks, first final answer ------------------------------ */

static void test_replay_and_cache(void)
{
    struct replay *r = replay_new(2, 300);
    struct taskcache *tc = taskcache_new(16);
    char *got;

    TEST_ASSERT(replay_check(r, "t1.1000", 1000, 1000) == REPLAY_FRESH, "first sight");
    TEST_ASSERT(replay_check(r, "t1.1000", 1000, 1100) == REPLAY_SEEN, "replay within the window");
    TEST_ASSERT(replay_check(r, "t1.1001", 1001, 1100) == REPLAY_FRESH, "another timestamp");
    TEST_ASSERT(replay_check(r, "t2.1002", 1002, 1100) == REPLAY_FULL, "bounded: full of live keys");
    TEST_ASSERT(replay_check(r, "t2.1400", 1400, 1302) == REPLAY_FRESH, "expired keys make room");
    TEST_ASSERT(replay_check(r, "t2.1400", 1400, 1350) == REPLAY_SEEN, "remembered");
    replay_free(r);

    TEST_ASSERT(taskcache_put_final(tc, "task_a", "{\"first\":1}") == 1, "first final answer stored");
    TEST_ASSERT(taskcache_put_final(tc, "task_a", "{\"later\":1}") == 0, "a later one is not");
    got = taskcache_get_final(tc, "task_a");
    TEST_STR_EQ(got, "{\"first\":1}", "the first final answer wins");
    free(got);
    taskcache_free(tc);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    test_classifier();
    test_urls();
    test_transfers();
    test_replay_and_cache();
    curl_global_cleanup();
    return test_report();
}
