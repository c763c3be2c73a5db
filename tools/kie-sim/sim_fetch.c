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

struct sim_dl_sink {
    struct sim_download *d;
    size_t max, keep, cap;
    bool too_big;
};

static size_t sim_dl_write(char *p, size_t size, size_t n, void *userdata)
{
    struct sim_dl_sink *k = userdata;
    struct sim_download *d = k->d;
    size_t len = size * n;

    if (len > k->max - d->total) {
        k->too_big = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    d->total += len;
    if (d->kept < k->keep && len > 0) {
        size_t take = k->keep - d->kept;
        unsigned char *nb;

        if (take > len)
            take = len;
        nb = sim_reserve(d->data, &k->cap, d->kept + take, k->keep);
        if (!nb)
            return 0; /* out of memory: the transfer fails */
        d->data = nb;
        memcpy(d->data + d->kept, p, take);
        d->kept += take;
    }
    return len;
}

enum sim_dl sim_download(struct sim_app *app, const char *first_url, size_t max, size_t keep, long timeout_ms,
                         struct sim_download *d)
{
    struct sim_dl_sink k = {.d = d, .max = max, .keep = keep < max ? keep : max};
    char errbuf[CURL_ERROR_SIZE];
    char host[256];
    char *url = sim_xstrdup(first_url);
    CURL *c = NULL;
    bool blocked = false;
    enum sim_dl ret = SIM_DL_INTERNAL;

    memset(d, 0, sizeof *d);
    c = curl_easy_init();
    if (!c)
        goto out;
    for (int hop = 0;; hop++) {
        CURLcode rc;
        char *loc = NULL, *ctype = NULL;

        if (sim_url_host(url, host, sizeof host) != 0) {
            sim_copy(d->detail, sizeof d->detail, url);
            ret = SIM_DL_BAD_URL;
            goto out;
        }
        if (!sim_host_is_loopback(host)) {
            sim_copy(d->detail, sizeof d->detail, host);
            ret = SIM_DL_NOT_LOOPBACK;
            goto out;
        }
        curl_easy_reset(c);
        errbuf[0] = '\0';
        d->kept = d->total = 0;
        k.too_big = false;
        sim_curl_common(c, app, &blocked, errbuf, timeout_ms);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sim_dl_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &k);
        rc = curl_easy_perform(c);
        if (blocked) {
            ret = SIM_DL_BLOCKED;
            goto out;
        }
        if (k.too_big) {
            ret = SIM_DL_TOO_BIG;
            goto out;
        }
        if (rc != CURLE_OK) {
            sim_copy(d->detail, sizeof d->detail, errbuf[0] ? errbuf : curl_easy_strerror(rc));
            ret = SIM_DL_CURL;
            goto out;
        }
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &d->status);
        if (d->status >= 300 && d->status < 400 &&
            curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &loc) == CURLE_OK && loc) {
            if (hop >= SIM_MAX_REDIRECTS) {
                ret = SIM_DL_REDIRECTS;
                goto out;
            }
            free(url);
            url = sim_xstrdup(loc);
            continue;
        }
        if (curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ctype) == CURLE_OK && ctype)
            sim_copy(d->content_type, sizeof d->content_type, ctype);
        break;
    }
    ret = d->status == 200 ? SIM_DL_OK : SIM_DL_HTTP;
out:
    curl_easy_cleanup(c);
    free(url);
    if (ret != SIM_DL_OK) {
        free(d->data);
        d->data = NULL;
        d->kept = 0;
    }
    return ret;
}

void sim_download_free(struct sim_download *d)
{
    free(d->data);
    d->data = NULL;
    d->kept = 0;
}

void sim_download_describe(enum sim_dl e, const struct sim_download *d, const char *what, size_t max, char *msg,
                           size_t msglen)
{
    switch (e) {
    case SIM_DL_OK:
        snprintf(msg, msglen, "%s was downloaded", what);
        break;
    case SIM_DL_BAD_URL:
        snprintf(msg, msglen, "%s is not reachable: invalid URL %.256s", what, d->detail);
        break;
    case SIM_DL_NOT_LOOPBACK:
        snprintf(msg, msglen,
                 "%s is not reachable: host %.128s is not a loopback address "
                 "(kie-sim only fetches from 127.0.0.0/8, localhost and [::1])", what, d->detail);
        break;
    case SIM_DL_BLOCKED:
        snprintf(msg, msglen, "%s is not reachable: connection to a non-loopback address was refused", what);
        break;
    case SIM_DL_TOO_BIG:
        if (max == SIM_INPUT_MAX)
            snprintf(msg, msglen, "%s is larger than 10 MB", what);
        else
            snprintf(msg, msglen, "%s is larger than %zu bytes", what, max);
        break;
    case SIM_DL_CURL:
        snprintf(msg, msglen, "%s could not be downloaded: %.256s", what, d->detail);
        break;
    case SIM_DL_REDIRECTS:
        snprintf(msg, msglen, "%s could not be downloaded: too many redirects", what);
        break;
    case SIM_DL_HTTP:
        snprintf(msg, msglen, "%s could not be downloaded: HTTP %ld", what, d->status);
        break;
    case SIM_DL_INTERNAL:
        snprintf(msg, msglen, "%s could not be downloaded: internal error", what);
        break;
    }
}

int sim_fetch_image(struct sim_app *app, const char *url, uint32_t *w, uint32_t *h, unsigned char **data,
                    size_t *len, char *msg, size_t msglen)
{
    struct sim_download d;
    char what[600];
    enum sim_dl e = sim_download(app, url, SIM_INPUT_MAX, data ? SIM_INPUT_MAX : SIM_FETCH_KEEP,
                                 SIM_FETCH_TIMEOUT_MS, &d);
    int ret = -1;

    *w = *h = 0;
    snprintf(what, sizeof what, "input image %.512s", url);
    if (e != SIM_DL_OK) {
        sim_download_describe(e, &d, what, SIM_INPUT_MAX, msg, msglen);
        goto out;
    }
    if (sim_image_sniff(d.data, d.kept, w, h) == SIM_IMAGE_NONE) {
        snprintf(msg, msglen, "%s is not a JPEG, PNG or WEBP image (%zu bytes)", what, d.total);
        goto out;
    }
    if (data) {
        *data = d.data;
        *len = d.kept;
        d.data = NULL;
    }
    ret = 0;
out:
    sim_download_free(&d);
    return ret;
}
