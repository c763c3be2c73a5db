/*
 * sim_fetch.c - loopback-only downloads for kie-sim (see sim_fetch.h): the
 * URL and host policy, the connect-time guard, and input-image fetching.
 */
#include "sim_fetch.h"

#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "sim_image.h"

#define SIM_MAX_URL_LEN      2048
#define SIM_FETCH_MAX        (10u * 1024u * 1024u) /* KIE input limit: 10 MB */
#define SIM_FETCH_KEEP       (128u * 1024u)       /* prefix kept for sniffing */
#define SIM_FETCH_TIMEOUT_MS 10000L
#define SIM_MAX_REDIRECTS    5

int sim_url_host(const char *url, char *host, size_t hostlen)
{
    CURLU *u = NULL;
    char *scheme = NULL, *h = NULL;
    int ret = -1;

    if (!url || strlen(url) > SIM_MAX_URL_LEN)
        goto out;
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p == 0x7F)
            goto out;
    u = curl_url();
    if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
        goto out;
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
        goto out;
    if (curl_url_get(u, CURLUPART_HOST, &h, 0) != CURLUE_OK || !*h || strlen(h) >= hostlen)
        goto out;
    sim_copy(host, hostlen, h);
    ret = 0;
out:
    curl_free(scheme);
    curl_free(h);
    curl_url_cleanup(u);
    return ret;
}

bool sim_host_is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    char inner[64];
    size_t n = strlen(host);

    if (strcasecmp(host, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (n > 2 && n < sizeof inner + 2 && host[0] == '[' && host[n - 1] == ']') {
        memcpy(inner, host + 1, n - 2);
        inner[n - 2] = '\0';
        if (inet_pton(AF_INET6, inner, &a6) == 1)
            return memcmp(&a6, &in6addr_loopback, sizeof a6) == 0;
    }
    return false;
}

/* Connect-time guard: refuses any socket whose peer is not loopback, so that
 * nothing (redirect, resolver answer) can make curl leave the machine. */
static curl_socket_t sim_open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
    bool *blocked = clientp;
    const unsigned char *raw = (const unsigned char *)&a->addr;
    bool ok = false;

    if (purpose == CURLSOCKTYPE_IPCXN && a->family == AF_INET &&
        a->addrlen >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in sin;

        memcpy(&sin, raw, sizeof sin);
        ok = (ntohl(sin.sin_addr.s_addr) >> 24) == 127;
    } else if (purpose == CURLSOCKTYPE_IPCXN && a->family == AF_INET6 &&
               a->addrlen >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 sin6;

        memcpy(&sin6, raw, sizeof sin6);
        ok = memcmp(&sin6.sin6_addr, &in6addr_loopback, sizeof sin6.sin6_addr) == 0;
    }
    if (!ok) {
        *blocked = true;
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype, a->protocol);
}

static int sim_xferinfo(void *clientp, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    struct sim_app *app = clientp;

    (void)dt; (void)dn; (void)ut; (void)un;
    return atomic_load(&app->stopping) ? 1 : 0;
}

void sim_curl_common(CURL *h, struct sim_app *app, bool *blocked, char *errbuf, long timeout_ms)
{
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, sim_open_socket);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, blocked);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, sim_xferinfo);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, app);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "kie-sim/1.0");
}

/* ------------------------------------------------------------- downloads */

struct sim_fetch_buf {
    unsigned char *keep; /* first SIM_FETCH_KEEP bytes */
    size_t kept;
    size_t total;
    bool too_big;
};

static size_t sim_fetch_write(char *p, size_t size, size_t n, void *userdata)
{
    struct sim_fetch_buf *fb = userdata;
    size_t len = size * n;

    if (len > SIM_FETCH_MAX - fb->total) {
        fb->too_big = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    fb->total += len;
    if (fb->kept < SIM_FETCH_KEEP) {
        size_t take = SIM_FETCH_KEEP - fb->kept;

        if (take > len)
            take = len;
        memcpy(fb->keep + fb->kept, p, take);
        fb->kept += take;
    }
    return len;
}

/* Download one input image the way KIE would, following up to
 * SIM_MAX_REDIRECTS loopback-only redirects by hand. On success returns 0 and
 * sets the size in *w and *h (0 if unknown). On failure returns -1 with a KIE-style failMsg. */
int sim_fetch_image(struct sim_app *app, const char *first_url, uint32_t *w, uint32_t *h,
                    char *msg, size_t msglen)
{
    struct sim_fetch_buf fb = {0};
    char errbuf[CURL_ERROR_SIZE];
    char host[256];
    char *url = sim_xstrdup(first_url);
    CURL *c = NULL;
    bool blocked = false;
    long status = 0;
    int ret = -1;

    *w = *h = 0;
    fb.keep = sim_xmalloc(SIM_FETCH_KEEP);
    c = curl_easy_init();
    if (!c) {
        snprintf(msg, msglen, "input image %.512s could not be downloaded: internal error", first_url);
        goto out;
    }
    for (int hop = 0;; hop++) {
        CURLcode rc;
        char *loc = NULL;

        if (sim_url_host(url, host, sizeof host) != 0) {
            snprintf(msg, msglen, "input image %.512s is not reachable: invalid URL %.256s", first_url, url);
            goto out;
        }
        if (!sim_host_is_loopback(host)) {
            snprintf(msg, msglen,
                     "input image %.512s is not reachable: host %.128s is not a loopback address "
                     "(kie-sim only fetches from 127.0.0.0/8, localhost and [::1])", first_url, host);
            goto out;
        }
        curl_easy_reset(c);
        errbuf[0] = '\0';
        fb.kept = fb.total = 0;
        fb.too_big = false;
        sim_curl_common(c, app, &blocked, errbuf, SIM_FETCH_TIMEOUT_MS);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sim_fetch_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &fb);
        rc = curl_easy_perform(c);
        if (blocked) {
            snprintf(msg, msglen, "input image %.512s is not reachable: connection to a non-loopback "
                     "address was refused", first_url);
            goto out;
        }
        if (fb.too_big) {
            snprintf(msg, msglen, "input image %.512s is larger than 10 MB", first_url);
            goto out;
        }
        if (rc != CURLE_OK) {
            snprintf(msg, msglen, "input image %.512s could not be downloaded: %.256s", first_url,
                     errbuf[0] ? errbuf : curl_easy_strerror(rc));
            goto out;
        }
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 300 && status < 400 &&
            curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &loc) == CURLE_OK && loc) {
            if (hop >= SIM_MAX_REDIRECTS) {
                snprintf(msg, msglen, "input image %.512s could not be downloaded: too many redirects",
                         first_url);
                goto out;
            }
            free(url);
            url = sim_xstrdup(loc);
            continue;
        }
        break;
    }
    if (status != 200) {
        snprintf(msg, msglen, "input image %.512s could not be downloaded: HTTP %ld", first_url, status);
        goto out;
    }
    if (sim_image_sniff(fb.keep, fb.kept, w, h) == SIM_IMAGE_NONE) {
        snprintf(msg, msglen, "input image %.512s is not a JPEG, PNG or WEBP image (%zu bytes)",
                 first_url, fb.total);
        goto out;
    }
    ret = 0;
out:
    curl_easy_cleanup(c);
    free(fb.keep);
    free(url);
    return ret;
}

