/*
 * sim_credits.h - KIE's credits: a balance per API key (initial_credits
 * knob), taken by createTask (price_1k / price_2k) - HTTP 200 {"code":402,
 * "msg":"Insufficient credits"} when the balance is lower than the price -
 * and given back when the task fails (refund_failed, default 1). A finished
 * task reports creditsConsumed in recordInfo and the callback.
 *
 *   GET /api/v1/chat/credit   Bearer auth; {"code":200,"msg":"success","data":<balance>}
 */
#ifndef SIM_CREDITS_H
#define SIM_CREDITS_H

#include "sim.h"
#include "sim_http.h"

/* Caller holds app->lock. Every key's balance becomes n. */
void sim_credits_reset(struct sim_app *app, long long n);

/* What a createTask at resolution ("1K", "2K") costs. */
long sim_credits_price(const struct sim_config *cfg, const char *resolution);

/* Caller holds app->lock. Take price from key's balance; -1 (nothing
 * taken) if the balance is lower. */
int sim_credits_charge(struct sim_app *app, size_t key, long price);

/* Caller holds app->lock; t has just failed: give its credits back if its
 * refund flag is set. */
void sim_credits_refund(struct sim_app *app, struct sim_task *t);

/* GET /api/v1/chat/credit */
void sim_h_credit(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp);

#endif
