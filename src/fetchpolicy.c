/* fetchpolicy.c - see fetchpolicy.h. */
#include "fetchpolicy.h"
#include "err.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

const char *fetchpolicy_class_name(enum fetch_class c)
{
    switch (c) {
    case FETCH_PUBLIC: return "public";
    case FETCH_LOOPBACK: return "loopback";
    case FETCH_PRIVATE: return "private";
    case FETCH_LINK_LOCAL: return "link-local";
    case FETCH_CGNAT: return "carrier-grade NAT";
    case FETCH_ULA: return "unique local";
    case FETCH_UNSPECIFIED: return "unspecified";
    case FETCH_THIS_NETWORK: return "this-network";
    case FETCH_MULTICAST: return "multicast";
    case FETCH_BROADCAST: return "broadcast";
    case FETCH_RESERVED: return "reserved";
    case FETCH_NOT_IP: return "host name";
    }
    return "unknown";
}

#define IN4(a, b, c, d) (((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((uint32_t)(c) << 8) | (uint32_t)(d))

struct net4 {
    uint32_t net;
    int bits;
    enum fetch_class cls;
};

/* First match wins, so the narrow entries come before the wide ones. */
static const struct net4 nets4[] = {
    {IN4(0, 0, 0, 0), 32, FETCH_UNSPECIFIED},
    {IN4(0, 0, 0, 0), 8, FETCH_THIS_NETWORK},
    {IN4(10, 0, 0, 0), 8, FETCH_PRIVATE},
    {IN4(100, 64, 0, 0), 10, FETCH_CGNAT},
    {IN4(127, 0, 0, 0), 8, FETCH_LOOPBACK},
    {IN4(169, 254, 0, 0), 16, FETCH_LINK_LOCAL},
    {IN4(172, 16, 0, 0), 12, FETCH_PRIVATE},
    {IN4(192, 0, 0, 0), 24, FETCH_RESERVED},    /* IETF protocol assignments */
    {IN4(192, 0, 2, 0), 24, FETCH_RESERVED},    /* TEST-NET-1 */
    {IN4(192, 88, 99, 0), 24, FETCH_RESERVED},  /* 6to4 relay anycast */
    {IN4(192, 168, 0, 0), 16, FETCH_PRIVATE},
    {IN4(198, 18, 0, 0), 15, FETCH_RESERVED},   /* benchmarking */
    {IN4(198, 51, 100, 0), 24, FETCH_RESERVED}, /* TEST-NET-2 */
    {IN4(203, 0, 113, 0), 24, FETCH_RESERVED},  /* TEST-NET-3 */
    {IN4(224, 0, 0, 0), 4, FETCH_MULTICAST},
    {IN4(255, 255, 255, 255), 32, FETCH_BROADCAST},
    {IN4(240, 0, 0, 0), 4, FETCH_RESERVED},
};

enum fetch_class fetchpolicy_classify_v4(uint32_t addr)
{
    for (size_t i = 0; i < sizeof nets4 / sizeof nets4[0]; i++) {
        uint32_t mask = nets4[i].bits ? ~(uint32_t)0 << (32 - nets4[i].bits) : 0;
        if ((addr & mask) == nets4[i].net)
            return nets4[i].cls;
    }
    return FETCH_PUBLIC;
}

static uint32_t v4_at(const unsigned char *p)
{
    return IN4(p[0], p[1], p[2], p[3]);
}

static int all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

enum fetch_class fetchpolicy_classify_v6(const unsigned char a[16])
{
    static const unsigned char nat64[12] = {0x00, 0x64, 0xff, 0x9b};

    if (all_zero(a, 16))
        return FETCH_UNSPECIFIED;
    if (all_zero(a, 15) && a[15] == 1)
        return FETCH_LOOPBACK;
    /* forms that carry an IPv4 address: judged by that address */
    if (all_zero(a, 10) && a[10] == 0xff && a[11] == 0xff) /* ::ffff:a.b.c.d, mapped */
        return fetchpolicy_classify_v4(v4_at(a + 12));
    if (all_zero(a, 8) && a[8] == 0xff && a[9] == 0xff && !a[10] && !a[11]) /* ::ffff:0:a.b.c.d, SIIT */
        return fetchpolicy_classify_v4(v4_at(a + 12));
    if (all_zero(a, 12)) /* ::a.b.c.d, compatible (deprecated) */
        return fetchpolicy_classify_v4(v4_at(a + 12));
    if (memcmp(a, nat64, 12) == 0) /* 64:ff9b::/96, well-known NAT64 */
        return fetchpolicy_classify_v4(v4_at(a + 12));
    if (a[0] == 0x00 && a[1] == 0x64 && a[2] == 0xff && a[3] == 0x9b && a[4] == 0 && a[5] == 1)
        return FETCH_PRIVATE; /* 64:ff9b:1::/48, local-use NAT64 */
    if (a[0] == 0x20 && a[1] == 0x02) /* 2002::/16, 6to4 */
        return fetchpolicy_classify_v4(v4_at(a + 2));
    if (a[0] == 0xff)
        return FETCH_MULTICAST;
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
        return FETCH_LINK_LOCAL;
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0)
        return FETCH_PRIVATE; /* fec0::/10, site-local (deprecated) */
    if ((a[0] & 0xfe) == 0xfc)
        return FETCH_ULA;
    if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8)
        return FETCH_RESERVED; /* 2001:db8::/32, documentation */
    if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0 && a[3] == 0)
        return FETCH_RESERVED; /* 2001::/32, Teredo: the real peer is hidden */
    if ((a[0] & 0xe0) != 0x20)
        return FETCH_RESERVED; /* outside 2000::/3, global unicast */
    return FETCH_PUBLIC;
}

enum fetch_class fetchpolicy_classify_sockaddr(const struct sockaddr *sa, size_t len)
{
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in in;
        memcpy(&in, sa, sizeof in);
        return fetchpolicy_classify_v4(ntohl(in.sin_addr.s_addr));
    }
    if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 in6;
        memcpy(&in6, sa, sizeof in6);
        return fetchpolicy_classify_v6(in6.sin6_addr.s6_addr);
    }
    return FETCH_RESERVED;
}

enum fetch_class fetchpolicy_classify_host(const char *host)
{
    char h[256];
    size_t n = strlen(host);
    struct in_addr a4;
    unsigned char a6[16];
    char *pct;

    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    if (n == 0 || n >= sizeof h)
        return FETCH_NOT_IP;
    memcpy(h, host, n);
    h[n] = '\0';
    pct = strchr(h, '%'); /* zone: fe80::1%eth0, or %25eth0 in a URL */
    if (pct)
        *pct = '\0';
    if (n > 1 && h[strlen(h) - 1] == '.') /* "localhost.", "127.0.0.1." */
        h[strlen(h) - 1] = '\0';
    if (inet_pton(AF_INET6, h, a6) == 1)
        return fetchpolicy_classify_v6(a6);
    /* inet_aton takes what the resolver takes: 2130706433, 0177.0.0.1, 0x7f.1, 127.1 */
    if (inet_aton(h, &a4))
        return fetchpolicy_classify_v4(ntohl(a4.s_addr));
    n = strlen(h);
    if (strcasecmp(h, "localhost") == 0 || (n > 10 && strcasecmp(h + n - 10, ".localhost") == 0))
        return FETCH_LOOPBACK;
    return FETCH_NOT_IP;
}

/* 1 unless curl says the part is absent (an error counts as present). */
static int has_part(CURLU *u, CURLUPart what, CURLUcode absent)
{
    char *p = NULL;
    CURLUcode rc = curl_url_get(u, what, &p, 0);
    curl_free(p);
    return rc != absent;
}

int fetchpolicy_check_url(const char *url, int allow_private, char *why, size_t cap)
{
    CURLU *u = curl_url();
    char *scheme = NULL;
    char *host = NULL;
    enum fetch_class k;
    int rc = ERR_INVALID;

    why[0] = '\0';
    if (!u) {
        snprintf(why, cap, "out of memory");
        return ERR_NOMEM;
    }
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
        snprintf(why, cap, "not a valid URL");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)) {
        snprintf(why, cap, "scheme %.16s is not http or https", scheme ? scheme : "(none)");
        goto out;
    }
    /* the credentials themselves are never logged */
    if (has_part(u, CURLUPART_USER, CURLUE_NO_USER) || has_part(u, CURLUPART_PASSWORD, CURLUE_NO_PASSWORD) ||
        has_part(u, CURLUPART_OPTIONS, CURLUE_NO_OPTIONS)) {
        snprintf(why, cap, "the URL carries userinfo (user:password@)");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host[0]) {
        snprintf(why, cap, "the URL has no host");
        goto out;
    }
    k = fetchpolicy_classify_host(host);
    if (!allow_private && k != FETCH_PUBLIC && k != FETCH_NOT_IP) {
        snprintf(why, cap, "host %.100s is a %s address", host, fetchpolicy_class_name(k));
        goto out;
    }
    rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

/* Remember why the transfer was stopped: the first reason is the one. */
static void refuse(struct fetch_guard *g, const char *what, const char *detail)
{
    if (!g->refused)
        snprintf(g->why, sizeof g->why, "%s%s", what, detail);
    g->refused = 1;
}

/* Every connection curl opens: the resolved address, after any redirect and
 * whatever DNS said a moment ago, must be public. */
static curl_socket_t on_opensocket(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct fetch_guard *g = clientp;
    enum fetch_class k = fetchpolicy_classify_sockaddr(&a->addr, a->addrlen);
    char text[INET6_ADDRSTRLEN] = "?";
    char why[200];

    if (purpose == CURLSOCKTYPE_IPCXN && (g->allow_private || k == FETCH_PUBLIC))
        return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (a->family == AF_INET && a->addrlen >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in in;
        memcpy(&in, &a->addr, sizeof in);
        inet_ntop(AF_INET, &in.sin_addr, text, sizeof text);
    } else if (a->family == AF_INET6 && a->addrlen >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 in6;
        memcpy(&in6, &a->addr, sizeof in6);
        inet_ntop(AF_INET6, &in6.sin6_addr, text, sizeof text);
    }
    snprintf(why, sizeof why, "connecting to %s refused: a %s address", text, fetchpolicy_class_name(k));
    refuse(g, why, "");
    return CURL_SOCKET_BAD;
}

/* Before every request, on a new or a reused connection, redirects included:
 * the URL about to be asked for and the address it is connected to. */
static int on_prereq(void *clientp, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
    struct fetch_guard *g = clientp;
    char *url = NULL;
    char why[200];
    enum fetch_class k;

    (void)local_ip;
    (void)primary_port;
    (void)local_port;
    if (curl_easy_getinfo(g->easy, CURLINFO_EFFECTIVE_URL, &url) != CURLE_OK || !url) {
        refuse(g, "no URL to check", "");
        return CURL_PREREQFUNC_ABORT;
    }
    if (fetchpolicy_check_url(url, g->allow_private, why, sizeof why)) {
        refuse(g, why, "");
        return CURL_PREREQFUNC_ABORT;
    }
    k = fetchpolicy_classify_host(primary_ip ? primary_ip : "");
    if (!g->allow_private && k != FETCH_PUBLIC) {
        snprintf(why, sizeof why, "connected to %.64s, a %s address", primary_ip ? primary_ip : "?",
                 fetchpolicy_class_name(k));
        refuse(g, why, "");
        return CURL_PREREQFUNC_ABORT;
    }
    return CURL_PREREQFUNC_OK;
}

void fetchpolicy_apply(CURL *e, struct fetch_guard *g)
{
    g->refused = 0;
    g->why[0] = '\0';
    g->easy = e;
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, FETCH_MAX_REDIRECTS);
    curl_easy_setopt(e, CURLOPT_UNRESTRICTED_AUTH, 0L);
    curl_easy_setopt(e, CURLOPT_NETRC, (long)CURL_NETRC_IGNORED);
    /* a proxy from the environment would make the proxy's address the one
     * checked, and let the proxy reach what we may not */
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    /* never a pooled connection (one to KIE_BASE_URL on loopback, say), and
     * never leave ours in the pool for others */
    curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_opensocket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, g);
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, g);
}
