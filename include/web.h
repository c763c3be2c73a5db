/* web.h - the web page's files, built into the binary (tools/embed.c). */
#ifndef PPA_WEB_H
#define PPA_WEB_H

#include <stddef.h>

struct web_asset {
    const char *name; /* "index.html", "app.js", "app.css", "openapi.json" */
    const unsigned char *data;
    size_t len;
};

/* Terminated by a NULL name. */
extern const struct web_asset WEB_ASSETS[];

#endif
