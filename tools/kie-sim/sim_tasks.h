/*
 * sim_tasks.h - KIE's job API: createTask and recordInfo, the task table, the
 * task state machine (waiting -> queuing -> generating -> success|fail, each
 * step step_ms long), the scheduler thread that advances it and the worker
 * threads that run background jobs (input downloads, callbacks).
 */
#ifndef SIM_TASKS_H
#define SIM_TASKS_H

#include <stdbool.h>

#include <cJSON.h>

#include "sim.h"
#include "sim_http.h"

/* "waiting", "queuing", ... indexed by enum sim_state. */
extern const char *const sim_state_names[];

/* Caller holds app->lock. Newest first; NULL if unknown (or evicted). */
struct sim_task *sim_task_find(struct sim_app *app, const char *id);

/* Frees t and everything it owns; NULL is a no-op. */
void sim_task_free(struct sim_task *t);

/* Caller holds app->lock. The KIE task record ("data" of recordInfo and of
 * the callback), a new object owned by the caller. Callbacks use null where
 * recordInfo uses "". */
cJSON *sim_task_data(const struct sim_app *app, const struct sim_task *t, bool for_callback);

/* Thread bodies (arg is the struct sim_app); both return when app->stopping
 * is set and app->wake / app->tick is broadcast. */
void *sim_scheduler_main(void *arg);
void *sim_worker_main(void *arg);

/* POST /api/v1/jobs/createTask, GET /api/v1/jobs/recordInfo. */
void sim_h_create(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp);
void sim_h_record(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp);

#endif
