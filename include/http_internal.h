/* http_internal.h - the answers http.c's dispatcher takes from http_reply.c
 * (not for handlers: they use http.h). */
#ifndef PPA_HTTP_INTERNAL_H
#define PPA_HTTP_INTERNAL_H

#include <microhttpd.h>

struct req;

/* 204 to OPTIONS on a known path: Allow: `allow`, and the CORS preflight
 * headers when the Origin is allowed (CORS_ORIGINS). */
enum MHD_Result http_preflight(struct req *r, const char *allow);
/* 405 method_not_allowed with Allow: `allow` (the path's methods). */
enum MHD_Result http_method_not_allowed(struct req *r, const char *allow);
/* 401 unauthorized with WWW-Authenticate: Bearer. */
enum MHD_Result http_unauthorized(struct req *r);

#endif
