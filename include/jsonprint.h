/* jsonprint.h - cJSON_PrintUnformatted, cheaper for KIE's answers. */
#ifndef PPA_JSONPRINT_H
#define PPA_JSONPRINT_H

#include <cjson/cJSON.h>

/* The text cJSON_PrintUnformatted gives for `root` (free with cJSON_free),
 * or NULL on out of memory. cJSON prints a number beyond int's range through
 * printf("%1.15g") and checks it with sscanf, which was about 6 % of the CPU
 * of GET /status (KIE's recordInfo carries three millisecond timestamps);
 * here every integral number below 1e15 in magnitude (but -0) is first made
 * a raw item holding its digits, the same text cJSON would print. `root` is
 * changed that way, so call this on a tree that is freed next. */
char *jsonprint_consume(cJSON *root);

#endif
