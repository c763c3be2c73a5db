/*
 * sim_http.h - the HTTP shell of kie-sim: per-request state, the response a
 * handler fills in, response helpers, and the libmicrohttpd callbacks that
 * read bodies (capped), route requests and carry out the response (send,
 * drop, reset or hang the connection).
 */
#ifndef SIM_HTTP_H
#define SIM_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include <cJSON.h>
#include <microhttpd.h>

#include "sim.h"

#define SIM_MAX_BODY (64u * 1024u) /* request bodies; more -> 413 */

/* KIE's answer to a missing or wrong Bearer key. */
extern const char sim_unauth_msg[];

struct sim_route;

/* A route that streams its body (multipart) instead of buffering it: open
 * is called with the request headers (NULL result: nothing to feed), feed
 * with each piece, end once the whole body is in (before the request is
 * logged and handled), summary for the request log (a new object or NULL)
 * and close once, when the request ends (also on aborted connections). */
struct sim_sink_ops {
    void *(*open)(struct sim_app *app, struct MHD_Connection *c);
    void (*feed)(void *sink, const char *data, size_t n);
    void (*end)(void *sink);
    cJSON *(*summary)(const void *sink);
    void (*close)(void *sink);
};

/* Per-request state, allocated on MHD's first callback, freed in
 * sim_completed (also on aborted connections). */
struct sim_req {
    const char *url;                    /* path, percent-decoded by MHD */
    const struct sim_route *route;      /* NULL: no route for this method and path */
    const struct sim_route *path_route; /* a route for this path (any method), or NULL */
    char *body; /* NUL-terminated, at most max bytes; NULL on streaming routes */
    size_t len; /* bytes in body; streaming routes: bytes fed to the sink */
    size_t cap, max;
    void *sink; /* streaming routes: what sink->open returned */
    bool too_large;
    bool responded;
};

enum sim_action { SIM_SEND, SIM_DROP, SIM_RESET, SIM_HANG };

/* What a handler answers; sim_http.c turns it into the real response. */
struct sim_resp {
    unsigned status;
    char *body; /* malloc'd, handed to MHD */
    size_t len;
    const char *ctype; /* a literal, or ctype_buf */
    char ctype_buf[128];
    const char *allow;
    enum sim_action action;
};

/* Replace resp's body with a copy of text. */
void sim_resp_text(struct sim_resp *r, unsigned status, const char *ctype, const char *text);

/* Replace resp's body with obj printed; takes ownership of obj. */
void sim_resp_json(struct sim_resp *r, unsigned status, cJSON *obj);

/* KIE envelope {"code":code,"msg":msg[,"data":null]} with HTTP status. */
void sim_resp_kie(struct sim_resp *r, unsigned status, int code, const char *msg, bool null_data);

/* The answer of a failure mode (enum sim_mode other than normal); record
 * picks recordInfo's wording where it differs. */
void sim_resp_mode(struct sim_resp *r, int mode, bool record);

/* Wait ms milliseconds in this connection's own thread. Returns 0 when the
 * time is up, -1 early if the client hung up or the simulator is stopping. */
int sim_wait_client(struct sim_app *app, struct MHD_Connection *c, long ms);

/* The index in app->api_keys of the key in "Authorization: Bearer <key>",
 * or -1; *present tells whether it had an Authorization header at all. */
int sim_auth_key(const struct sim_app *app, struct MHD_Connection *c, bool *present);

/* sim_auth_key() >= 0 */
bool sim_auth_ok(const struct sim_app *app, struct MHD_Connection *c, bool *present);

/* MHD callbacks; cls is the struct sim_app. */
enum MHD_Result sim_access(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                           const char *version, const char *upload_data, size_t *upload_data_size, void **req_cls);
void sim_completed(void *cls, struct MHD_Connection *c, void **req_cls, enum MHD_RequestTerminationCode toe);

#endif
