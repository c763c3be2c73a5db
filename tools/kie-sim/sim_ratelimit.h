/*
 * sim_ratelimit.h - KIE's rate limit on new generation requests (kie-api.md
 * §1.1): with the rate_limit knob on (off by default), at most
 * rate_limit_max (20) createTask per rate_limit_window_ms (10 s) per API key
 * get through; the others are answered HTTP 429 {"code":429,...} at once and
 * not queued (and not counted).
 */
#ifndef SIM_RATELIMIT_H
#define SIM_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>

#include "sim.h"

/* A createTask by key under cfg's knobs: true if it may go on (and is
 * counted), false if it is over the limit. Takes app->lock itself. */
bool sim_rate_admit(struct sim_app *app, size_t key, const struct sim_config *cfg);

/* Caller holds app->lock. Forget every key's recent requests. */
void sim_rate_clear(struct sim_app *app);

#endif
