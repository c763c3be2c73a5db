/*
 * sim_admin.h - the simulator's own controls: the knob table (start-up flags
 * and POST /sim/config alike), the request log and the test-only routes
 * GET|POST /sim/config, GET|DELETE /sim/requests and GET /sim/tasks.
 */
#ifndef SIM_ADMIN_H
#define SIM_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "sim.h"
#include "sim_http.h"

struct sim_knob;

/* The start-up values of every knob before flags are applied. */
extern const struct sim_config sim_config_defaults;

/* "normal", "http500", ... indexed by enum sim_mode. */
extern const char *const sim_mode_names[];

/* The knob called name (snake_case), or NULL. */
const struct sim_knob *sim_knob_find(const char *name);

/* Parse v (a flag's text) into k's field of cfg. Returns 0, or -1 with a
 * message in err. */
int sim_knob_set_str(struct sim_config *cfg, const struct sim_knob *k, const char *v, char *err, size_t errlen);

/* --help: one entry per knob with its range and default. */
void sim_knobs_usage(FILE *f);

/* Snapshot app->cfg into *snap and consume one use of ep's failure mode
 * (create_mode, record_mode, upload_mode); returns the mode that applies
 * now (0 is always "normal"). */
int sim_take_mode(struct sim_app *app, enum sim_endpoint ep, struct sim_config *snap);

/* Append one entry to the /sim/requests log (oldest dropped beyond cap).
 * Its "body" is summary if not NULL (taken over), else r's body parsed as
 * JSON (null if it is not JSON); trim shortens strings longer than
 * SIM_LOG_STR_MAX bytes to their start and length. */
void sim_log_request(struct sim_app *app, struct MHD_Connection *c, const char *method, const char *url,
                     const struct sim_req *r, cJSON *summary, bool trim);

void sim_h_config_get(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp);
void sim_h_config_set(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp);
void sim_h_requests_get(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp);
void sim_h_requests_delete(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r,
                           struct sim_resp *resp);
void sim_h_tasks(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp);

#endif
