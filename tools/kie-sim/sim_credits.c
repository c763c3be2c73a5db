/*
 * sim_credits.c - credit balances for kie-sim (see sim_credits.h).
 */
#include "sim_credits.h"

#include <pthread.h>
#include <string.h>

#include "sim_admin.h"

void sim_credits_reset(struct sim_app *app, long long n)
{
    for (size_t i = 0; i < app->n_keys; i++)
        app->accounts[i].balance = n;
}

long sim_credits_price(const struct sim_config *cfg, const char *resolution)
{
    return strcmp(resolution, "2K") == 0 ? cfg->price_2k : cfg->price_1k;
}

int sim_credits_charge(struct sim_app *app, size_t key, long price)
{
    struct sim_account *a = &app->accounts[key];

    if (a->balance < price)
        return -1;
    a->balance -= price;
    return 0;
}

void sim_credits_refund(struct sim_app *app, struct sim_task *t)
{
    if (!t->refund || t->refunded || t->credits == 0)
        return;
    app->accounts[t->key].balance += t->credits;
    t->refunded = true;
}

void sim_h_credit(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp)
{
    struct sim_config cfg;
    cJSON *o;
    bool present;
    long long balance;
    int key, mode = sim_take_mode(app, SIM_EP_CREDIT, &cfg);

    (void)r;
    if (mode != SIM_MODE_NORMAL) {
        sim_resp_mode(resp, mode, false);
        return;
    }
    key = sim_auth_key(app, c, &present);
    if (key < 0) {
        sim_resp_kie(resp, 401, 401, sim_unauth_msg, false);
        return;
    }
    pthread_mutex_lock(&app->lock);
    balance = app->accounts[key].balance;
    pthread_mutex_unlock(&app->lock);
    o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "code", 200);
    cJSON_AddStringToObject(o, "msg", "success");
    cJSON_AddNumberToObject(o, "data", (double)balance);
    sim_resp_json(resp, 200, o);
}
