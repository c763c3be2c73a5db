/*
 * sim_callback.h - KIE's callBackUrl: POST the finished task's JSON to the
 * caller (loopback only), signed with X-Webhook-Timestamp and
 * X-Webhook-Signature when the webhook_hmac_key knob is set.
 */
#ifndef SIM_CALLBACK_H
#define SIM_CALLBACK_H

#include "sim.h"

/* Worker thread: deliver job (kind SIM_JOB_CALLBACK; job->url, job->body
 * stay owned by the caller) and record the outcome in the task
 * (callback_done, callback_status, callback_error). Takes app->lock itself. */
void sim_job_callback(struct sim_app *app, const struct sim_job *job);

#endif
