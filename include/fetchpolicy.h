/* fetchpolicy.h - the one policy for every URL this server downloads because
 * a peer named it: KIE's result URLs (from recordInfo) and the redirects they
 * lead to.
 *
 *   - http and https only, on redirects too;
 *   - no userinfo ("user:pass@"): refused, never sent as Basic auth;
 *   - at most FETCH_MAX_REDIRECTS redirects;
 *   - the address actually connected must be public: loopback, private,
 *     link-local, CGNAT, ULA, unspecified, multicast, broadcast, 0/8,
 *     documentation/benchmark/reserved ranges, and IPv4-mapped, -compatible,
 *     NAT64 and 6to4 IPv6 forms of those are refused unless allow_private
 *     (ALLOW_PRIVATE_FETCH=1, for the simulator-based tests).
 *
 * The address is checked on the resolved address when each connection is
 * opened (CURLOPT_OPENSOCKETFUNCTION) and again before each request is sent
 * (CURLOPT_PREREQFUNCTION, which also sees reused connections and every
 * redirect's URL), so DNS rebinding and redirects cannot get around it.
 *
 * Our own configured endpoints (KIE_BASE_URL, KIE_UPLOAD_BASE_URL,
 * S3_ENDPOINT, CLOUDFLARED_METRICS_URL) are not subject to it: an operator
 * may well point them at loopback or a private network. */
#ifndef PPA_FETCHPOLICY_H
#define PPA_FETCHPOLICY_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define FETCH_MAX_REDIRECTS 3L

enum fetch_class {
    FETCH_PUBLIC = 0,
    FETCH_LOOPBACK,
    FETCH_PRIVATE,      /* 10/8, 172.16/12, 192.168/16, fec0::/10, local-use NAT64 */
    FETCH_LINK_LOCAL,   /* 169.254/16, fe80::/10 */
    FETCH_CGNAT,        /* 100.64/10 */
    FETCH_ULA,          /* fc00::/7 */
    FETCH_UNSPECIFIED,  /* 0.0.0.0, :: */
    FETCH_THIS_NETWORK, /* 0/8 */
    FETCH_MULTICAST,    /* 224/4, ff00::/8 */
    FETCH_BROADCAST,    /* 255.255.255.255 */
    FETCH_RESERVED,     /* documentation, benchmarking, 240/4, outside 2000::/3, Teredo */
    FETCH_NOT_IP,       /* a host name: judged when it is resolved and connected */
};

/* A static name for a class ("loopback", ...), for logs. */
const char *fetchpolicy_class_name(enum fetch_class c);

/* Classify an IPv4 address (host byte order) or an IPv6 address. */
enum fetch_class fetchpolicy_classify_v4(uint32_t addr);
enum fetch_class fetchpolicy_classify_v6(const unsigned char addr[16]);
/* Classify a socket address; anything but AF_INET/AF_INET6 is FETCH_RESERVED. */
enum fetch_class fetchpolicy_classify_sockaddr(const struct sockaddr *sa, size_t len);

/* Classify a host as written in a URL: every IPv4 form the resolver accepts
 * (2130706433, 0177.0.0.1, 0x7f.1, 127.1), IPv6 with or without brackets and
 * a zone, "localhost" and "*.localhost" (trailing dot or not) as loopback.
 * Any other name is FETCH_NOT_IP. */
enum fetch_class fetchpolicy_classify_host(const char *host);

/* The URL part of the policy: http/https, no userinfo, a host, and a
 * literal address host must be public unless allow_private. 0, or
 * ERR_INVALID with the specific reason in `why` (for the log only). */
int fetchpolicy_check_url(const char *url, int allow_private, char *why, size_t cap);

/* Per-transfer state; must outlive the transfer it is applied to. */
struct fetch_guard {
    int allow_private;
    int refused;   /* set when the policy stopped the transfer */
    char why[256]; /* the specific reason: log it at warn, never answer it */
    CURL *easy;
};

/* Apply the policy to `e` (protocols, redirects, address checks, no proxy,
 * no connection shared with other transfers). `g->allow_private` is read;
 * the rest of `g` is reset. */
void fetchpolicy_apply(CURL *e, struct fetch_guard *g);

#endif
