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

/* Download one input image the way KIE would (10 s, 10 MB, JPEG/PNG/WEBP).
 * On success returns 0 and sets the size in *w and *h (0 if unknown). On
 * failure returns -1 with a KIE-style failMsg in msg. */
int sim_fetch_image(struct sim_app *app, const char *first_url, uint32_t *w, uint32_t *h,
                    char *msg, size_t msglen);

#endif
