/*
 * sim_fetch.h - the simulator's only way out: loopback-only HTTP(S) through
 * libcurl. A URL must name 127.x.x.x, localhost or [::1]; anything else is
 * refused before any traffic (not even DNS), and every connect is checked
 * again (CURLOPT_OPENSOCKETFUNCTION). Redirects are followed by hand with the
 * same host check; proxies are off. Thread-safe (one CURL handle per call).
 */
#ifndef SIM_FETCH_H
#define SIM_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "sim.h"

/* Parse an absolute http(s) URL and copy its host (IPv6 keeps brackets).
 * Returns 0, or -1 if it is not a usable http(s) URL. */
int sim_url_host(const char *url, char *host, size_t hostlen);

/* The only hosts kie-sim will contact: literal 127.x.x.x, localhost, [::1]. */
bool sim_host_is_loopback(const char *host);

/* Options shared by every outgoing request: loopback-only (a refused connect
 * sets *blocked), bounded by timeout_ms, no proxy, no automatic redirects,
 * aborts when the simulator stops. errbuf is CURL_ERROR_SIZE bytes. */
void sim_curl_common(CURL *h, struct sim_app *app, bool *blocked, char *errbuf, long timeout_ms);

#define SIM_INPUT_MAX (10u * 1024u * 1024u) /* KIE's input image limit: 10 MB */

/* How a download ended. */
enum sim_dl {
    SIM_DL_OK,           /* HTTP 200 */
    SIM_DL_BAD_URL,      /* detail: the URL (first or a redirect's) */
    SIM_DL_NOT_LOOPBACK, /* detail: the host; nothing was sent */
    SIM_DL_BLOCKED,      /* a connect to a non-loopback address was refused */
    SIM_DL_TOO_BIG,      /* more than max bytes */
    SIM_DL_CURL,         /* detail: curl's error */
    SIM_DL_REDIRECTS,    /* more than 5 redirects */
    SIM_DL_HTTP,         /* final status not 200 (status) */
    SIM_DL_INTERNAL,
};

struct sim_download {
    unsigned char *data; /* the first kept bytes (malloc'd); NULL unless SIM_DL_OK */
    size_t kept, total;  /* bytes kept, bytes received */
    long status;         /* the final HTTP status */
    char content_type[128]; /* of the final answer, "" if none */
    char detail[256];
};

/* GET url (loopback only, up to 5 redirects followed by hand), at most max
 * bytes within timeout_ms, keeping the first keep bytes in d->data. d is
 * filled in either way; release it with sim_download_free. */
enum sim_dl sim_download(struct sim_app *app, const char *url, size_t max, size_t keep, long timeout_ms,
                         struct sim_download *d);
void sim_download_free(struct sim_download *d);

/* A message "<what> is not reachable: ..." / "... could not be downloaded:
 * ..." / "... is larger than ..." for a failed download (max as passed). */
void sim_download_describe(enum sim_dl e, const struct sim_download *d, const char *what, size_t max, char *msg,
                           size_t msglen);

/* Download one input image the way KIE would (10 s, 10 MB, JPEG/PNG/WEBP).
 * On success returns 0, sets the size in *w and *h from the header (0 if
 * unknown) and, if data is not NULL, hands over the whole image in *data
 * (malloc'd, *len bytes). On failure returns -1 with a KIE-style failMsg. */
int sim_fetch_image(struct sim_app *app, const char *url, uint32_t *w, uint32_t *h, unsigned char **data,
                    size_t *len, char *msg, size_t msglen);

#endif
