/*
 * sim_ratelimit.c - the createTask rate limit of kie-sim (see
 * sim_ratelimit.h): a sliding window per key, a ring of the monotonic times
 * of the requests let through.
 */
#include "sim_ratelimit.h"

#include <pthread.h>

bool sim_rate_admit(struct sim_app *app, size_t key, const struct sim_config *cfg)
{
    struct sim_rate *w = &app->accounts[key].rate;
    long long now = sim_mono_ms();
    size_t max = (size_t)cfg->rate_limit_max;
    bool ok;

    if (!cfg->rate_limit)
        return true;
    if (max > SIM_RATE_CAP)
        max = SIM_RATE_CAP;
    pthread_mutex_lock(&app->lock);
    while (w->count > 0 && now - w->times[w->head] >= cfg->rate_limit_window_ms) {
        w->head = (w->head + 1) % SIM_RATE_CAP;
        w->count--;
    }
    ok = w->count < max;
    if (ok) {
        w->times[(w->head + w->count) % SIM_RATE_CAP] = now;
        w->count++;
    }
    pthread_mutex_unlock(&app->lock);
    return ok;
}

void sim_rate_clear(struct sim_app *app)
{
    for (size_t i = 0; i < SIM_MAX_KEYS; i++)
        app->accounts[i].rate.head = app->accounts[i].rate.count = 0;
}
