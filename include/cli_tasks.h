/* cli_tasks.h - `product-photo-api tasks [--limit N] [--json]`: the server's
 * recent tasks (GET /tasks) as a table or as JSON records. */
#ifndef PPA_CLI_TASKS_H
#define PPA_CLI_TASKS_H

#include "cli_common.h"

#include <cjson/cJSON.h>
#include <stdio.h>

/* argv[0] is "tasks". Returns the exit code: 0, 1 failed, 2 bad usage. */
int cli_tasks(int argc, char **argv);

void cli_tasks_usage(FILE *out);

/* One page of GET /tasks?limit=&before=: on 0, *page is the parsed answer
 * (its "tasks" is an array; the caller deletes it). -1 with the reason in
 * msg, and *status the HTTP status (0 when none came). */
int cli_tasks_page(const struct cli_conn *c, int limit, const char *cursor, cJSON **page, long *status, char *msg,
                   size_t cap);

#endif
