/* test_sigv4.c - SigV4 against the official vectors, AWS's S3 examples and botocore.
 *
 * usage: build/test_sigv4 [DATA_DIR]   (default tests/data/sigv4)
 * DATA_DIR holds aws-c-auth-v4/v4/<test>/ (38 tests, header + presigned
 * variants) and aws-sig-v4-test-suite-2015/aws-sig-v4-test-suite/ (31 tests).
 * See tests/data/sigv4/README.md for provenance and the two known errata.
 */
#include "sigv4.h"
#include "test.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#define MAX_FILE (1u << 20)
#define MAX_KV 64
#define MAX_NAMES 128
#define BIG 16384

/* ---- small helpers ----------------------------------------------------------------- */

static int path_join(char *out, size_t cap, const char *a, const char *b, const char *c)
{
    int n = snprintf(out, cap, "%s/%s%s%s", a, b, c ? "/" : "", c ? c : "");
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* Whole file, NUL-terminated, caller frees. NULL if missing or too big. */
static char *read_file(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0;
    if (f == NULL)
        return NULL;
    buf = malloc(MAX_FILE + 1);
    if (buf != NULL) {
        len = fread(buf, 1, MAX_FILE + 1, f);
        if (len > MAX_FILE || ferror(f)) {
            free(buf);
            buf = NULL;
        } else {
            buf[len] = '\0';
        }
    }
    fclose(f);
    if (len_out != NULL)
        *len_out = len;
    return buf;
}

/* Expected-value file with trailing CR/LF removed. */
static char *read_expected(const char *dir, const char *name);

/* Compare `got` with the expected value in `dir`/`file`; `label` names the check. */
static void expect_file(const char *dir, const char *file, const char *got, const char *label)
{
    char *want = read_expected(dir, file);
    TEST_STR_EQ(got, want, label);
    free(want);
}

static char *read_expected(const char *dir, const char *name)
{
    char path[1024];
    char *s;
    size_t n;
    if (path_join(path, sizeof(path), dir, name, NULL) < 0)
        return NULL;
    s = read_file(path, &n);
    while (s != NULL && n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* Value of "key" in a flat JSON object (strings without escapes, or bare
 * true/false/numbers). Enough for the vectors' context.json. */
static int json_get(const char *json, const char *key, char *out, size_t cap)
{
    char pat[80];
    const char *p;
    size_t n = 0;
    if (snprintf(pat, sizeof(pat), "\"%s\"", key) >= (int)sizeof(pat))
        return -1;
    p = strstr(json, pat);
    if (p == NULL)
        return -1;
    p += strlen(pat);
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    if (*p++ != ':')
        return -1;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    if (*p == '"') {
        for (p++; *p != '\0' && *p != '"'; p++) {
            if (n + 1 >= cap)
                return -1;
            out[n++] = *p;
        }
        if (*p != '"')
            return -1;
    } else {
        for (; *p != '\0' && *p != ',' && *p != '}' && *p != '\n' && *p != ' '; p++) {
            if (n + 1 >= cap)
                return -1;
            out[n++] = *p;
        }
    }
    out[n] = '\0';
    return 0;
}

static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* "2015-08-30T12:36:00Z" -> time_t (UTC). */
static time_t parse_iso(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (strlen(s) != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[19] != 'Z')
        return (time_t)-1;
    tm.tm_year = digits(s, 4) - 1900;
    tm.tm_mon = digits(s + 5, 2) - 1;
    tm.tm_mday = digits(s + 8, 2);
    tm.tm_hour = digits(s + 11, 2);
    tm.tm_min = digits(s + 14, 2);
    tm.tm_sec = digits(s + 17, 2);
    return timegm(&tm);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* ---- raw HTTP request parser (the vectors' request.txt / .req) ----------------------- */

enum fold_mode {
    FOLD_JOIN,    /* aws-c-auth: a continuation line extends the value (obs-fold) */
    FOLD_SEPARATE /* 2015 suite: a continuation line is one more value of that header */
};

struct parsed_req {
    char method[16];
    const char *path;
    struct sigv4_kv query[MAX_KV];
    size_t nquery;
    struct sigv4_kv headers[MAX_KV];
    size_t nheaders;
    const char *host;
    const char *body;
    size_t body_len;
    char arena[BIG];
    size_t used;
};

static char *arena_dup(struct parsed_req *r, const char *s, size_t n)
{
    char *p;
    if (n + 1 > sizeof(r->arena) - r->used)
        return NULL;
    p = r->arena + r->used;
    memcpy(p, s, n);
    p[n] = '\0';
    r->used += n + 1;
    return p;
}

static char *arena_decode(struct parsed_req *r, const char *s, size_t n)
{
    char *p = arena_dup(r, s, n);
    size_t j = 0;
    if (p == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '%' && i + 2 < n && hexval(p[i + 1]) >= 0 && hexval(p[i + 2]) >= 0) {
            p[j++] = (char)(hexval(p[i + 1]) * 16 + hexval(p[i + 2]));
            i += 2;
        } else {
            p[j++] = p[i];
        }
    }
    p[j] = '\0';
    return p;
}

static int add_header(struct parsed_req *r, const char *name, const char *value)
{
    if (r->nheaders >= MAX_KV || name == NULL || value == NULL)
        return -1;
    r->headers[r->nheaders].name = name;
    r->headers[r->nheaders].value = value;
    r->nheaders++;
    return 0;
}

static int parse_request(const char *text, enum fold_mode fold, struct parsed_req *r)
{
    const char *p = text, *eol, *sp1, *sp2, *q;
    memset(r, 0, sizeof(*r));

    eol = strchr(p, '\n');
    if (eol == NULL)
        return -1;
    sp1 = memchr(p, ' ', (size_t)(eol - p));
    sp2 = eol;
    while (sp2 > p && sp2[-1] != ' ')
        sp2--;
    if (sp1 == NULL || sp2 <= sp1 + 1 || (size_t)(sp1 - p) >= sizeof(r->method))
        return -1;
    memcpy(r->method, p, (size_t)(sp1 - p));
    sp2--; /* the space before HTTP/1.1 */
    q = memchr(sp1 + 1, '?', (size_t)(sp2 - sp1 - 1));
    r->path = arena_dup(r, sp1 + 1, (size_t)((q ? q : sp2) - sp1 - 1));
    if (r->path == NULL)
        return -1;
    if (q != NULL) {
        const char *s = q + 1;
        while (s < sp2) {
            const char *amp = memchr(s, '&', (size_t)(sp2 - s));
            const char *end = amp ? amp : sp2;
            const char *eq = memchr(s, '=', (size_t)(end - s));
            if (end > s) {
                if (r->nquery >= MAX_KV)
                    return -1;
                r->query[r->nquery].name = arena_decode(r, s, (size_t)((eq ? eq : end) - s));
                r->query[r->nquery].value = eq ? arena_decode(r, eq + 1, (size_t)(end - eq - 1)) : NULL;
                if (r->query[r->nquery].name == NULL)
                    return -1;
                r->nquery++;
            }
            s = end + 1;
        }
    }

    p = eol + 1;
    while (*p != '\0' && *p != '\n' && !(*p == '\r' && p[1] == '\n')) {
        const char *colon, *line_end;
        eol = strchr(p, '\n');
        line_end = eol ? eol : p + strlen(p);
        if (line_end > p && line_end[-1] == '\r')
            line_end--;
        if (*p == ' ' || *p == '\t') { /* continuation line */
            if (r->nheaders == 0)
                return -1;
            if (fold == FOLD_SEPARATE) {
                const char *v = p;
                while (v < line_end && (*v == ' ' || *v == '\t'))
                    v++;
                if (add_header(r, r->headers[r->nheaders - 1].name, arena_dup(r, v, (size_t)(line_end - v))) < 0)
                    return -1;
            }
            /* FOLD_JOIN: already part of the previous value, see below */
        } else {
            const char *vend = line_end;
            colon = memchr(p, ':', (size_t)(line_end - p));
            if (colon == NULL)
                return -1;
            if (fold == FOLD_JOIN) { /* extend the value over continuation lines */
                const char *n = eol;
                while (n != NULL && (n[1] == ' ' || n[1] == '\t')) {
                    const char *e2 = strchr(n + 1, '\n');
                    vend = e2 ? e2 : n + 1 + strlen(n + 1);
                    n = e2;
                }
            }
            if (add_header(r, arena_dup(r, p, (size_t)(colon - p)),
                           arena_dup(r, colon + 1, (size_t)(vend - colon - 1))) < 0)
                return -1;
            if (strcasecmp(r->headers[r->nheaders - 1].name, "host") == 0)
                r->host = r->headers[r->nheaders - 1].value;
        }
        if (eol == NULL) {
            p = line_end;
            break;
        }
        p = eol + 1;
    }
    if (*p == '\r')
        p++;
    if (*p == '\n')
        p++;
    r->body = p;
    r->body_len = strlen(p);
    return r->host != NULL ? 0 : -1;
}

/* ---- aws-c-auth v4 suite --------------------------------------------------------------- */

struct ctx {
    char ak[64], sk[128], token[1024], region[32], service[32], ts[32];
    int normalize, sign_body, omit_token;
    unsigned expires;
    time_t now;
};

static int load_ctx(const char *dir, struct ctx *c)
{
    char path[1024], tmp[32];
    char *json;
    int rc = -1;
    memset(c, 0, sizeof(*c));
    if (path_join(path, sizeof(path), dir, "context.json", NULL) < 0)
        return -1;
    json = read_file(path, NULL);
    if (json == NULL)
        return -1;
    if (json_get(json, "access_key_id", c->ak, sizeof(c->ak)) < 0 ||
        json_get(json, "secret_access_key", c->sk, sizeof(c->sk)) < 0 ||
        json_get(json, "region", c->region, sizeof(c->region)) < 0 ||
        json_get(json, "service", c->service, sizeof(c->service)) < 0 ||
        json_get(json, "timestamp", c->ts, sizeof(c->ts)) < 0 ||
        json_get(json, "expiration_in_seconds", tmp, sizeof(tmp)) < 0)
        goto out;
    c->expires = (unsigned)strtoul(tmp, NULL, 10);
    if (json_get(json, "token", c->token, sizeof(c->token)) < 0)
        c->token[0] = '\0';
    c->normalize = json_get(json, "normalize", tmp, sizeof(tmp)) == 0 && strcmp(tmp, "true") == 0;
    c->sign_body = json_get(json, "sign_body", tmp, sizeof(tmp)) == 0 && strcmp(tmp, "true") == 0;
    c->omit_token = json_get(json, "omit_session_token", tmp, sizeof(tmp)) == 0 && strcmp(tmp, "true") == 0;
    c->now = parse_iso(c->ts);
    rc = c->now == (time_t)-1 ? -1 : 0;
out:
    free(json);
    return rc;
}

/* The value of the line "<prefix>..." in text, copied into out. */
static int line_value(const char *text, const char *prefix, char *out, size_t cap)
{
    const char *p = text;
    size_t pl = strlen(prefix);
    while (p != NULL && *p != '\0') {
        if (strncmp(p, prefix, pl) == 0) {
            const char *e = strchr(p, '\n');
            size_t n = e ? (size_t)(e - p - (ptrdiff_t)pl) : strlen(p + pl);
            if (n > 0 && p[pl + n - 1] == '\r')
                n--;
            if (n + 1 > cap)
                return -1;
            memcpy(out, p + pl, n);
            out[n] = '\0';
            return 0;
        }
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return -1;
}

/* Percent-decode s[0..n) into out (raw bytes), NUL-terminated. */
static int pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (j + 1 >= cap)
            return -1;
        if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            out[j++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            out[j++] = s[i];
        }
    }
    out[j] = '\0';
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The query of a URL (or of a request line) in a comparable form: every
 * name/value decoded and re-encoded the same way, pairs sorted, '&'-joined. */
static int sorted_query(const char *url, char *out, size_t cap)
{
    char buf[BIG], raw[BIG];
    char *toks[MAX_KV];
    size_t n = 0, len = 0;
    const char *q = strchr(url, '?');
    char *save = NULL, *t;
    int rc = -1;
    if (q == NULL || strlen(q + 1) >= sizeof(buf))
        return -1;
    snprintf(buf, sizeof(buf), "%s", q + 1);
    t = strpbrk(buf, " \n");
    if (t != NULL)
        *t = '\0'; /* request line: stop before " HTTP/1.1" */
    for (t = strtok_r(buf, "&", &save); t != NULL && n < MAX_KV; t = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(t, '=');
        size_t nl = eq ? (size_t)(eq - t) : strlen(t), tl;
        char *tok = malloc(3 * strlen(t) + 2);
        if (tok == NULL || pct_decode(t, nl, raw, sizeof(raw)) < 0)
            goto out;
        toks[n++] = tok;
        if (sigv4_uri_encode(raw, 0, tok, 3 * nl + 1) < 0)
            goto out;
        tl = strlen(tok);
        tok[tl++] = '=';
        if (pct_decode(eq ? eq + 1 : "", eq ? strlen(eq + 1) : 0, raw, sizeof(raw)) < 0 ||
            sigv4_uri_encode(raw, 0, tok + tl, 3 * strlen(t) + 2 - tl) < 0)
            goto out;
    }
    qsort(toks, n, sizeof(toks[0]), cmp_str);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(out + len, cap - len, "%s%s", i ? "&" : "", toks[i]);
        if (w < 0 || (size_t)w >= cap - len)
            goto out;
        len += (size_t)w;
    }
    rc = 0;
out:
    for (size_t i = 0; i < n; i++)
        free(toks[i]);
    return rc;
}

/* The request's headers into h (without Host when drop_host: the one-call
 * APIs add it themselves); returns how many. */
static size_t copy_headers(const struct parsed_req *r, struct sigv4_kv *h, int drop_host)
{
    size_t n = 0;
    for (size_t i = 0; i < r->nheaders; i++)
        if (!drop_host || strcasecmp(r->headers[i].name, "host") != 0)
            h[n++] = r->headers[i];
    return n;
}

/* Check a canonical request and the steps that follow it against the suite's
 * <kind>-canonical-request.txt, <kind>-string-to-sign.txt, <kind>-signature.txt. */
static void expect_steps(const char *dir, const char *name, const char *kind, const char *creq, const char *amz,
                         const char *scope, const unsigned char key[32])
{
    static const char *const step[] = {"canonical-request", "string-to-sign", "signature"};
    char sts[512], sig[65], file[64], what[256];
    const char *got[3];

    sigv4_string_to_sign(amz, scope, creq, sts, sizeof(sts));
    sigv4_signature(key, sts, sig);
    got[0] = creq;
    got[1] = sts;
    got[2] = sig;
    for (size_t i = 0; i < 3; i++) {
        snprintf(file, sizeof(file), "%s-%s.txt", kind, step[i]);
        snprintf(what, sizeof(what), "%s: %s %s", name, kind, step[i]);
        expect_file(dir, file, got[i], what);
    }
}

static void run_crt_test(const char *root, const char *name)
{
    char dir[1024], path[1200], what[256];
    char amz[17], date8[9], scope[128], auth[1024], sh[512], url[BIG];
    char body_hash[65], cred[256], expires[16], want_auth[1024], got_q[BIG], want_q[BIG];
    char *creq = malloc(BIG), *text = NULL, *want = NULL;
    struct parsed_req *r = malloc(sizeof(*r));
    struct sigv4_kv h[MAX_KV + 4], q[MAX_KV + 8];
    struct sigv4_request req;
    struct sigv4_creds cr;
    unsigned char key[32];
    size_t nh = 0, nq = 0;
    struct ctx c;
    int ok;

    if (creq == NULL || r == NULL || path_join(dir, sizeof(dir), root, name, NULL) < 0)
        goto out;
    ok = load_ctx(dir, &c) == 0;
    TEST_ASSERT(ok, "%s: context.json unreadable", name);
    if (path_join(path, sizeof(path), dir, "request.txt", NULL) == 0)
        text = read_file(path, NULL);
    ok = ok && text != NULL && parse_request(text, FOLD_JOIN, r) == 0;
    TEST_ASSERT(ok, "%s: request.txt unparsable", name);
    if (!ok)
        goto out;
    sigv4_sha256_hex(r->body, r->body_len, body_hash);
    sigv4_format_time(c.now, amz, date8);
    sigv4_scope(date8, c.region, c.service, scope, sizeof(scope));
    sigv4_signing_key(c.sk, date8, c.region, c.service, key);
    cr = (struct sigv4_creds){c.ak, c.sk, (c.token[0] && !c.omit_token) ? c.token : NULL};

    /* header auth, step by step */
    nh = copy_headers(r, h, 0);
    h[nh++] = (struct sigv4_kv){"X-Amz-Date", amz};
    if (cr.session_token != NULL)
        h[nh++] = (struct sigv4_kv){"X-Amz-Security-Token", cr.session_token};
    if (c.sign_body)
        h[nh++] = (struct sigv4_kv){"x-amz-content-sha256", body_hash};
    {
        char curi[2048];
        sigv4_canonical_uri(r->path, c.normalize, curi, sizeof(curi));
        req = (struct sigv4_request){r->method, curi, r->query, r->nquery, h, nh, body_hash};
        sigv4_canonical_request(&req, creq, BIG, sh, sizeof(sh));
    }
    expect_steps(dir, name, "header", creq, amz, scope, key);

    /* header auth through the public one-call API */
    nh = copy_headers(r, h, 1);
    if (c.sign_body)
        h[nh++] = (struct sigv4_kv){"x-amz-content-sha256", body_hash};
    ok = sigv4_sign_headers(&cr, c.region, c.service, r->method, r->host, r->path, r->query, r->nquery, h, nh,
                            body_hash, c.now, !c.normalize, auth, sizeof(auth), amz) > 0;
    want = read_expected(dir, "header-signed-request.txt");
    if (want == NULL || line_value(want, "Authorization:", want_auth, sizeof(want_auth)) < 0)
        want_auth[0] = '\0';
    snprintf(what, sizeof(what), "%s: sigv4_sign_headers Authorization", name);
    TEST_STR_EQ(ok ? auth : NULL, want_auth, what);
    TEST_ASSERT(strcmp(amz, "20150830T123600Z") == 0, "%s: amz_date %s", name, amz);
    free(want);

    /* query auth (presigned), step by step */
    snprintf(cred, sizeof(cred), "%s/%s", c.ak, scope);
    snprintf(expires, sizeof(expires), "%u", c.expires);
    nh = copy_headers(r, h, 0);
    for (size_t i = 0; i < r->nquery; i++)
        q[nq++] = r->query[i];
    q[nq++] = (struct sigv4_kv){"X-Amz-Algorithm", "AWS4-HMAC-SHA256"};
    q[nq++] = (struct sigv4_kv){"X-Amz-Credential", cred};
    q[nq++] = (struct sigv4_kv){"X-Amz-Date", amz};
    q[nq++] = (struct sigv4_kv){"X-Amz-Expires", expires};
    q[nq++] = (struct sigv4_kv){"X-Amz-SignedHeaders", sh}; /* sh: host + request headers */
    if (c.token[0] && !c.omit_token)                        /* "omit": the token is added after signing */
        q[nq++] = (struct sigv4_kv){"X-Amz-Security-Token", c.token};
    {
        char curi[2048];
        req = (struct sigv4_request){r->method, curi, NULL, 0, h, nh, body_hash};
        sigv4_canonical_uri(r->path, c.normalize, curi, sizeof(curi));
        sigv4_canonical_request(&req, creq, BIG, sh, sizeof(sh)); /* signed headers only */
        req.query = q;
        req.nquery = nq;
        sigv4_canonical_request(&req, creq, BIG, NULL, 0);
    }
    expect_steps(dir, name, "query", creq, amz, scope, key);

    /* query auth through sigv4_presign_url: same parameters, same signature */
    nh = copy_headers(r, h, 1);
    cr.session_token = (c.token[0] && !c.omit_token) ? c.token : NULL;
    ok = sigv4_presign_url(&cr, c.region, c.service, r->method, "https", r->host, r->path, r->query, r->nquery, h, nh,
                           body_hash, c.expires, c.now, !c.normalize, url, sizeof(url)) > 0;
    if (ok && c.token[0] && c.omit_token) { /* append the unsigned token, as the test does */
        size_t ul = strlen(url);
        ok = snprintf(url + ul, sizeof(url) - ul, "&X-Amz-Security-Token=%s", c.token) < (int)(sizeof(url) - ul);
    }
    ok = ok && sorted_query(url, got_q, sizeof(got_q)) == 0;
    want = read_expected(dir, "query-signed-request.txt");
    if (want == NULL || sorted_query(want, want_q, sizeof(want_q)) < 0)
        want_q[0] = '\0';
    snprintf(what, sizeof(what), "%s: sigv4_presign_url query parameters", name);
    TEST_STR_EQ(ok ? got_q : NULL, want_q, what);
    free(want);
out:
    free(text);
    free(creq);
    free(r);
}

static int cmp_name128(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static size_t list_dirs(const char *root, char names[][128], size_t max)
{
    DIR *d = opendir(root);
    struct dirent *e;
    size_t n = 0;
    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL && n < max) {
        char path[1024];
        struct stat st;
        if (e->d_name[0] == '.' || strlen(e->d_name) >= 128)
            continue;
        if (path_join(path, sizeof(path), root, e->d_name, NULL) < 0 || stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
            continue;
        memcpy(names[n++], e->d_name, strlen(e->d_name) + 1); /* length checked above */
    }
    closedir(d);
    qsort(names, n, sizeof(names[0]), cmp_name128);
    return n;
}

static size_t run_crt_suite(const char *data)
{
    static char names[MAX_NAMES][128];
    char root[1024];
    size_t n;
    if (path_join(root, sizeof(root), data, "aws-c-auth-v4", "v4") < 0)
        return 0;
    n = list_dirs(root, names, MAX_NAMES);
    for (size_t i = 0; i < n; i++)
        run_crt_test(root, names[i]);
    return n;
}

/* ---- AWS SigV4 test suite, 2015 edition ------------------------------------------------ */

static int is_2015_erratum(const char *name)
{
    /* Their .creq signs content-length but their .sts/.authz were computed
     * without it; aws-c-auth's copies of these two tests are consistent. */
    return strcmp(name, "post-x-www-form-urlencoded") == 0 ||
           strcmp(name, "post-x-www-form-urlencoded-parameters") == 0;
}

static void run_2015_test(const char *dir, const char *name)
{
    char path[1200], what[256], curi[2048], sts[512], sig[65], authz[1024], date8[9], scope[128];
    char body_hash[65];
    char *text = NULL, *want = NULL, *creq = malloc(BIG);
    struct parsed_req *r = malloc(sizeof(*r));
    struct sigv4_request req;
    unsigned char key[32];
    const char *amz = "20150830T123600Z";
    int ok;

    if (creq == NULL || r == NULL)
        goto out;
    snprintf(path, sizeof(path), "%s/%s.req", dir, name);
    text = read_file(path, NULL);
    ok = text != NULL && parse_request(text, FOLD_SEPARATE, r) == 0;
    TEST_ASSERT(ok, "2015 %s: .req unparsable", name);
    if (!ok)
        goto out;
    sigv4_sha256_hex(r->body, r->body_len, body_hash);
    sigv4_canonical_uri(r->path, 1, curi, sizeof(curi));
    req = (struct sigv4_request){r->method, curi, r->query, r->nquery, r->headers, r->nheaders, body_hash};
    sigv4_canonical_request(&req, creq, BIG, NULL, 0);
    snprintf(path, sizeof(path), "%s.creq", name);
    snprintf(what, sizeof(what), "2015 %s: canonical request", name);
    expect_file(dir, path, creq, what);
    want = NULL;
    if (is_2015_erratum(name)) {
        printf("note: 2015 %s: .sts/.authz skipped (known erratum, aws-c-auth copy used)\n", name);
        goto out;
    }
    memcpy(date8, amz, 8);
    date8[8] = '\0';
    sigv4_scope(date8, "us-east-1", "service", scope, sizeof(scope));
    sigv4_string_to_sign(amz, scope, creq, sts, sizeof(sts));
    snprintf(path, sizeof(path), "%s.sts", name);
    snprintf(what, sizeof(what), "2015 %s: string to sign", name);
    expect_file(dir, path, sts, what);
    sigv4_signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", date8, "us-east-1", "service", key);
    sigv4_signature(key, sts, sig);
    {
        char sh[512];
        sigv4_canonical_request(&req, creq, BIG, sh, sizeof(sh));
        snprintf(authz, sizeof(authz), "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/%s, SignedHeaders=%s, Signature=%s",
                 scope, sh, sig);
    }
    snprintf(path, sizeof(path), "%s.authz", name);
    want = read_expected(dir, path);
    snprintf(what, sizeof(what), "2015 %s: authorization", name);
    TEST_STR_EQ(authz, want, what);
out:
    free(want);
    free(text);
    free(creq);
    free(r);
}

static size_t run_2015_suite(const char *data)
{
    static char names[MAX_NAMES][128], sub[MAX_NAMES][128];
    char root[1024], dir[1200], req[1400];
    size_t n, count = 0;
    struct stat st;
    if (path_join(root, sizeof(root), data, "aws-sig-v4-test-suite-2015", "aws-sig-v4-test-suite") < 0)
        return 0;
    n = list_dirs(root, names, MAX_NAMES);
    for (size_t i = 0; i < n; i++) {
        snprintf(dir, sizeof(dir), "%s/%s", root, names[i]);
        snprintf(req, sizeof(req), "%s/%s.req", dir, names[i]);
        if (stat(req, &st) == 0) {
            run_2015_test(dir, names[i]);
            count++;
            continue;
        }
        /* group folders: normalize-path/, post-sts-token/ */
        size_t m = list_dirs(dir, sub, MAX_NAMES);
        for (size_t j = 0; j < m; j++) {
            char d2[1400];
            snprintf(d2, sizeof(d2), "%s/%s", dir, sub[j]);
            run_2015_test(d2, sub[j]);
            count++;
        }
    }
    return count;
}

/* ---- S3: AWS documented examples + botocore (oracle) results --------------------------- */

#define EX_AK "AKIAIOSFODNN7EXAMPLE"
#define EX_SK "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define EX_HOST "examplebucket.s3.amazonaws.com"
#define EX_CRED EX_AK "/20130524/us-east-1/s3/aws4_request"
#define EX_TIME ((time_t)1369353600) /* 20130524T000000Z */

static void test_s3_documented(void)
{
    const struct sigv4_creds c = {EX_AK, EX_SK, NULL};
    char url[2048], auth[512], amz[17], creq[2048], hash[65];
    int rc;

    TEST_ASSERT(parse_iso("2013-05-24T00:00:00Z") == EX_TIME, "epoch of the S3 examples");

    /* sigv4-query-string-auth.html: presigned GET */
    rc = sigv4_presign_url(&c, "us-east-1", "s3", "GET", "https", EX_HOST, "/test.txt", NULL, 0, NULL, 0, NULL, 86400,
                           EX_TIME, 1, url, sizeof(url));
    TEST_ASSERT(rc > 0 && (size_t)rc == strlen(url), "presign returns the URL length");
    TEST_STR_EQ(url,
                "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
                "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
                "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
                "S3 doc presigned GET (aeeed9bb...d404)");
    {
        const struct sigv4_kv q[] = {{"X-Amz-Algorithm", "AWS4-HMAC-SHA256"},
                                     {"X-Amz-Credential", EX_CRED},
                                     {"X-Amz-Date", "20130524T000000Z"},
                                     {"X-Amz-Expires", "86400"},
                                     {"X-Amz-SignedHeaders", "host"}};
        const struct sigv4_kv h[] = {{"host", EX_HOST}};
        struct sigv4_request r = {"GET", "/test.txt", q, 5, h, 1, SIGV4_UNSIGNED_PAYLOAD};
        sigv4_canonical_request(&r, creq, sizeof(creq), NULL, 0);
        sigv4_sha256_hex(creq, strlen(creq), hash);
        TEST_STR_EQ(hash, "3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04",
                    "S3 doc presigned GET: hash of the canonical request");
    }

    /* sig-v4-header-based-auth.html: GET object with Range */
    {
        const struct sigv4_kv h[] = {{"Range", "bytes=0-9"}, {"x-amz-content-sha256", SIGV4_EMPTY_SHA256}};
        rc = sigv4_sign_headers(&c, "us-east-1", "s3", "GET", EX_HOST, "/test.txt", NULL, 0, h, 2, SIGV4_EMPTY_SHA256,
                                EX_TIME, 1, auth, sizeof(auth), amz);
        TEST_ASSERT(rc > 0, "sign GET object");
        TEST_STR_EQ(auth,
                    "AWS4-HMAC-SHA256 Credential=" EX_CRED ", SignedHeaders=host;range;"
                    "x-amz-content-sha256;x-amz-date, Signature="
                    "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
                    "S3 doc GET object");
        TEST_STR_EQ(amz, "20130524T000000Z", "S3 doc amz_date");
    }
    /* PUT object: key "test$file.text", Date header, storage class */
    {
        char body_hash[65];
        const char *body = "Welcome to Amazon S3.";
        sigv4_sha256_hex(body, strlen(body), body_hash);
        TEST_STR_EQ(body_hash, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
                    "sha256 of the PUT example body");
        const struct sigv4_kv h[] = {{"Date", "Fri, 24 May 2013 00:00:00 GMT"},
                                     {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
                                     {"x-amz-content-sha256", body_hash}};
        rc = sigv4_sign_headers(&c, "us-east-1", "s3", "PUT", EX_HOST, "/test$file.text", NULL, 0, h, 3, body_hash,
                                EX_TIME, 1, auth, sizeof(auth), amz);
        TEST_STR_EQ(rc > 0 ? auth : NULL,
                    "AWS4-HMAC-SHA256 Credential=" EX_CRED ", SignedHeaders=date;host;"
                    "x-amz-content-sha256;x-amz-date;x-amz-storage-class, Signature="
                    "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
                    "S3 doc PUT object");
    }
    /* GET ?lifecycle (bare sub-resource) and list objects (query sorting) */
    {
        const struct sigv4_kv h[] = {{"x-amz-content-sha256", SIGV4_EMPTY_SHA256}};
        const struct sigv4_kv lq[] = {{"lifecycle", NULL}};
        const struct sigv4_kv oq[] = {{"prefix", "J"}, {"max-keys", "2"}};
        rc = sigv4_sign_headers(&c, "us-east-1", "s3", "GET", EX_HOST, "/", lq, 1, h, 1, SIGV4_EMPTY_SHA256, EX_TIME, 1,
                                auth, sizeof(auth), amz);
        TEST_STR_EQ(rc > 0 ? auth : NULL,
                    "AWS4-HMAC-SHA256 Credential=" EX_CRED ", SignedHeaders=host;"
                    "x-amz-content-sha256;x-amz-date, Signature="
                    "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
                    "S3 doc GET ?lifecycle");
        rc = sigv4_sign_headers(&c, "us-east-1", "s3", "GET", EX_HOST, "/", oq, 2, h, 1, SIGV4_EMPTY_SHA256, EX_TIME, 1,
                                auth, sizeof(auth), amz);
        TEST_STR_EQ(rc > 0 ? auth : NULL,
                    "AWS4-HMAC-SHA256 Credential=" EX_CRED ", SignedHeaders=host;"
                    "x-amz-content-sha256;x-amz-date, Signature="
                    "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
                    "S3 doc list objects ?max-keys=2&prefix=J");
    }
}

/* Expected values below were produced by botocore (pure-Python signer) with a
 * frozen clock: tools' sigv4_oracle.py, at 20261124T120000Z. */
#define OR_TIME ((time_t)1795521600) /* 20261124T120000Z */
#define OR_TOKEN "FwoGZXIvYXdzEBYaDExampleSessionToken/with+plus=="

static void test_s3_oracle(void)
{
    const struct sigv4_creds s3rver = {"S3RVER", "S3RVER", NULL};
    const struct sigv4_creds temp = {"ASIAEXAMPLE", "secret/with+chars", OR_TOKEN};
    char url[2048], auth[512], amz[17];
    int rc;

    TEST_ASSERT(parse_iso("2026-11-24T12:00:00Z") == OR_TIME, "epoch of the oracle cases");
    rc = sigv4_presign_url(&s3rver, "us-east-1", "s3", "GET", "http", "127.0.0.1:4569",
                           "/test-bucket/uploads/a b+c.png", NULL, 0, NULL, 0, NULL, 900, OR_TIME, 1, url, sizeof(url));
    TEST_STR_EQ(rc > 0 ? url : NULL,
                "http://127.0.0.1:4569/test-bucket/uploads/a%20b%2Bc.png?X-Amz-Algorithm="
                "AWS4-HMAC-SHA256&X-Amz-Credential=S3RVER%2F20261124%2Fus-east-1%2Fs3%2F"
                "aws4_request&X-Amz-Date=20261124T120000Z&X-Amz-Expires=900&X-Amz-SignedHeaders="
                "host&X-Amz-Signature="
                "3f1d669e8f58eb1373f2389b0b4520e745a1cbdaffe3b61153be9f2db1c9277e",
                "path-style presigned GET, key with space and plus (botocore)");

    /* session token: a query parameter of a presign, a signed header otherwise */
    rc = sigv4_presign_url(&temp, "us-east-1", "s3", "GET", "http", "127.0.0.1:4569", "/test-bucket/uploads/x.png",
                           NULL, 0, NULL, 0, NULL, 900, OR_TIME, 1, url, sizeof(url));
    {
        char got[2048] = "", want[2048] = "";
        const char *bw = /* botocore's URL; its parameter order is not the canonical one */
            "http://127.0.0.1:4569/test-bucket/uploads/x.png?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=ASIAEXAMPLE%2F20261124%2Fus-east-1%2Fs3%2Faws4_request"
            "&X-Amz-Date=20261124T120000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host"
            "&X-Amz-Security-Token=FwoGZXIvYXdzEBYaDExampleSessionToken%2Fwith%2Bplus%3D%3D"
            "&X-Amz-Signature="
            "23ee10d3d75136df0a1694ede5d958473b5f9fffa79ae86db608ef5e93157ff8";
        TEST_ASSERT(rc > 0 && strncmp(url, bw, (size_t)(strchr(bw, '?') - bw + 1)) == 0,
                    "presigned GET with session token: URL prefix");
        TEST_ASSERT(rc > 0 && sorted_query(url, got, sizeof(got)) == 0 && sorted_query(bw, want, sizeof(want)) == 0,
                    "presigned GET with session token: parse");
        TEST_STR_EQ(got, want, "presigned GET with session token (botocore)");
    }
    {
        const char *ph = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072";
        const struct sigv4_kv h[] = {{"Content-Type", "image/png"}, {"x-amz-content-sha256", ph}};
        rc = sigv4_sign_headers(&temp, "us-east-1", "s3", "PUT", "127.0.0.1:4569", "/test-bucket/uploads/x.png", NULL,
                                0, h, 2, ph, OR_TIME, 1, auth, sizeof(auth), amz);
        TEST_STR_EQ(rc > 0 ? auth : NULL,
                    "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/20261124/us-east-1/s3/aws4_request, "
                    "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;"
                    "x-amz-security-token, Signature="
                    "274058b549394996e6478edf6651338700044d6461d802f7fb4580252b3dab8d",
                    "header-signed PUT with session token (botocore)");
        /* the token must change the signature: same request without it differs */
        const struct sigv4_creds no_tok = {"ASIAEXAMPLE", "secret/with+chars", NULL};
        char auth2[512];
        rc = sigv4_sign_headers(&no_tok, "us-east-1", "s3", "PUT", "127.0.0.1:4569", "/test-bucket/uploads/x.png", NULL,
                                0, h, 2, ph, OR_TIME, 1, auth2, sizeof(auth2), amz);
        TEST_ASSERT(rc > 0 && strcmp(auth, auth2) != 0 && strstr(auth2, "x-amz-security-token") == NULL,
                    "no token -> not signed, different signature");
    }
}

/* ---- primitives and error handling ------------------------------------------------------ */

static void test_primitives(void)
{
    char out[256], hex[65];
    unsigned char key[32];
    int rc;

    sigv4_sha256_hex("", 0, hex);
    TEST_STR_EQ(hex, SIGV4_EMPTY_SHA256, "sha256 of empty");
    sigv4_sha256_hex("abc", 3, hex);
    TEST_STR_EQ(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "sha256 of abc");

    /* documented signing-key example (General Reference, iam, 20120215) */
    rc = sigv4_signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam", key);
    {
        static const char hexd[] = "0123456789abcdef";
        for (int i = 0; i < 32; i++) {
            hex[2 * i] = hexd[key[i] >> 4];
            hex[2 * i + 1] = hexd[key[i] & 15];
        }
        hex[64] = '\0';
    }
    TEST_STR_EQ(rc == 0 ? hex : NULL, "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d",
                "signing key example");

    rc = sigv4_uri_encode("a b+c/\xc3\xa9~-._*'()!", 1, out, sizeof(out));
    TEST_STR_EQ(out, "a%20b%2Bc/%C3%A9~-._%2A%27%28%29%21", "uri encode keep slash");
    TEST_ASSERT(rc == (int)strlen(out), "uri encode returns length");
    sigv4_uri_encode("a/b", 0, out, sizeof(out));
    TEST_STR_EQ(out, "a%2Fb", "uri encode slash");
    TEST_ASSERT(sigv4_uri_encode("abcd", 0, out, 5) == 4, "exact fit");
    TEST_ASSERT(sigv4_uri_encode("abcde", 0, out, 5) < 0 && out[0] == '\0', "overflow -> <0, empty");
    TEST_ASSERT(sigv4_uri_encode("a b", 0, out, 3) < 0, "overflow inside an escape");
    TEST_ASSERT(sigv4_uri_encode(NULL, 0, out, sizeof(out)) < 0, "NULL input");

    sigv4_canonical_uri("/a/b/../c/./d", 1, out, sizeof(out));
    TEST_STR_EQ(out, "/a/c/d", "normalize dot segments");
    sigv4_canonical_uri("/a/b/..", 1, out, sizeof(out));
    TEST_STR_EQ(out, "/a/", "normalize trailing ..");
    sigv4_canonical_uri("/../../x", 1, out, sizeof(out));
    TEST_STR_EQ(out, "/x", "normalize .. above root");
    sigv4_canonical_uri("", 1, out, sizeof(out));
    TEST_STR_EQ(out, "/", "empty path");
    sigv4_canonical_uri("", 0, out, sizeof(out));
    TEST_STR_EQ(out, "/", "empty path, S3");
    sigv4_canonical_uri("//x//y/../a b", 0, out, sizeof(out));
    TEST_STR_EQ(out, "//x//y/../a%20b", "S3 keeps the path");
    sigv4_canonical_uri("/a%20b", 1, out, sizeof(out));
    TEST_STR_EQ(out, "/a%2520b", "generic: encoded path is encoded again");

    {
        const struct sigv4_kv q[] = {{"b", "2"}, {"a", "z"}, {"a", "y"}, {"a b", NULL}, {"~", "+"}};
        sigv4_canonical_query(q, 5, out, sizeof(out));
        TEST_STR_EQ(out, "a=y&a=z&a%20b=&b=2&~=%2B", "canonical query sort + encode");
        TEST_ASSERT(sigv4_canonical_query(q, 5, out, 10) < 0, "canonical query overflow");
        TEST_ASSERT(sigv4_canonical_query(NULL, 0, out, sizeof(out)) == 0 && out[0] == '\0', "empty query");
    }
    {
        const struct sigv4_kv h[] = {{"X-B", "  two   words \t"}, {"host", "h"}, {"x-b", "x"}, {"X-a", ""}};
        char sh[64];
        struct sigv4_request r = {"GET", "/", NULL, 0, h, 4, "p"};
        rc = sigv4_canonical_request(&r, out, sizeof(out), sh, sizeof(sh));
        TEST_STR_EQ(out, "GET\n/\n\nhost:h\nx-a:\nx-b:two words,x\n\nhost;x-a;x-b\np",
                    "canonical headers: lower, trim, collapse, merge, sort");
        TEST_STR_EQ(sh, "host;x-a;x-b", "signed headers");
        TEST_ASSERT(sigv4_canonical_request(&r, out, sizeof(out), sh, 5) < 0, "signed headers overflow");
        TEST_ASSERT(sigv4_canonical_request(&r, out, 20, NULL, 0) < 0 && out[0] == '\0', "canonical request overflow");
        const struct sigv4_kv bad[] = {{"bad name", "v"}};
        r.headers = bad;
        r.nheaders = 1;
        TEST_ASSERT(sigv4_canonical_request(&r, out, sizeof(out), NULL, 0) < 0, "bad header name");
        r.nheaders = 0;
        TEST_ASSERT(sigv4_canonical_request(&r, out, sizeof(out), NULL, 0) < 0, "no headers");
    }
    {
        char a[17], d[9];
        TEST_ASSERT(sigv4_format_time((time_t)0, a, d) == 0 && strcmp(a, "19700101T000000Z") == 0 &&
                        strcmp(d, "19700101") == 0,
                    "format epoch");
        TEST_ASSERT(sigv4_scope("20150830", "us/east", "s3", out, sizeof(out)) < 0, "region with a slash is refused");
    }
}

static void test_api_errors(void)
{
    const struct sigv4_creds c = {"AK", "SK", NULL};
    const struct sigv4_creds bad = {"AK", NULL, NULL};
    char url[512], auth[512], amz[17];
    const struct sigv4_kv host_h[] = {{"Host", "x"}};
    const struct sigv4_kv date_h[] = {{"X-Amz-Date", "x"}};
    const struct sigv4_kv sig_q[] = {{"X-Amz-Signature", "x"}};

    TEST_ASSERT(sigv4_presign_url(&c, "r", "s3", "GET", "http", "h", "/k", NULL, 0, NULL, 0, NULL, 0, 0, 1, url,
                                  sizeof(url)) < 0 &&
                    url[0] == '\0',
                "expires 0 refused");
    TEST_ASSERT(sigv4_presign_url(&c, "r", "s3", "GET", "http", "h", "/k", NULL, 0, NULL, 0, NULL,
                                  SIGV4_MAX_EXPIRES + 1, 0, 1, url, sizeof(url)) < 0,
                "expires > 7 days refused");
    TEST_ASSERT(sigv4_presign_url(&c, "r", "s3", "GET", "http", "h", "/k", NULL, 0, NULL, 0, NULL, SIGV4_MAX_EXPIRES, 0,
                                  1, url, sizeof(url)) > 0,
                "expires 7 days accepted");
    TEST_ASSERT(sigv4_presign_url(&c, "r", "s3", "GET", "http", "h", "/k", NULL, 0, NULL, 0, NULL, 60, 0, 1, url, 100) <
                        0 &&
                    url[0] == '\0',
                "URL overflow refused");
    TEST_ASSERT(sigv4_presign_url(&c, "r", "s3", "GET", "http", "h", "/k", sig_q, 1, NULL, 0, NULL, 60, 0, 1, url,
                                  sizeof(url)) < 0,
                "caller may not pass X-Amz-Signature");
    TEST_ASSERT(sigv4_presign_url(&bad, "r", "s3", "GET", "http", "h", "/k", NULL, 0, NULL, 0, NULL, 60, 0, 1, url,
                                  sizeof(url)) < 0,
                "missing secret refused");
    TEST_ASSERT(sigv4_sign_headers(&c, "r", "s3", "GET", "h", "/k", NULL, 0, host_h, 1, SIGV4_EMPTY_SHA256, 0, 1, auth,
                                   sizeof(auth), amz) < 0,
                "caller Host header refused");
    TEST_ASSERT(sigv4_sign_headers(&c, "r", "s3", "GET", "h", "/k", NULL, 0, date_h, 1, SIGV4_EMPTY_SHA256, 0, 1, auth,
                                   sizeof(auth), amz) < 0 &&
                    amz[0] == '\0',
                "caller X-Amz-Date refused");
    TEST_ASSERT(sigv4_sign_headers(&c, "r", "s3", "GET", "h", "/k", NULL, 0, NULL, 0, SIGV4_EMPTY_SHA256, 0, 1, auth,
                                   40, amz) < 0 &&
                    auth[0] == '\0',
                "Authorization overflow refused");
    TEST_ASSERT(
        sigv4_sign_headers(&c, "r", "s3", "GET", "h", "/k", NULL, 0, NULL, 0, NULL, 0, 1, auth, sizeof(auth), amz) < 0,
        "missing payload hash refused");
    /* the signature must depend on the secret */
    {
        const struct sigv4_creds c2 = {"AK", "SL", NULL};
        char url2[512];
        sigv4_presign_url(&c, "r", "s3", "GET", "http", "h", "/k", NULL, 0, NULL, 0, NULL, 60, 0, 1, url, sizeof(url));
        sigv4_presign_url(&c2, "r", "s3", "GET", "http", "h", "/k", NULL, 0, NULL, 0, NULL, 60, 0, 1, url2,
                          sizeof(url2));
        TEST_ASSERT(strcmp(url, url2) != 0, "different secret, different signature");
    }
}

int main(int argc, char **argv)
{
    const char *data = argc > 1 ? argv[1] : "tests/data/sigv4";
    size_t n;

    n = run_crt_suite(data);
    TEST_ASSERT(n == 38, "aws-c-auth v4 tests found in %s: %zu (want 38)", data, n);
    n = run_2015_suite(data);
    TEST_ASSERT(n == 31, "2015 suite tests found in %s: %zu (want 31)", data, n);
    test_s3_documented();
    test_s3_oracle();
    test_primitives();
    test_api_errors();
    return test_report();
}
