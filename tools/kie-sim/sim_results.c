/*
 * sim_results.c - the result images of kie-sim (see sim_results.h).
 */
#include "sim_results.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim_image.h"
#include "sim_tasks.h"

#define SIM_RESULT_WIDTH_1K 256u /* result_style gradient */
#define SIM_RESULT_WIDTH_2K 512u

const char *const sim_result_style_names[] = {"studio", "gradient", NULL};

int sim_result_make(const char *url, const unsigned char *in, size_t len, const char *aspect,
                    const char *resolution, unsigned char **png, size_t *png_len, uint32_t *w, uint32_t *h,
                    char *msg, size_t msglen)
{
    char err[512];

    if (sim_result_render(in, len, aspect, resolution, png, png_len, w, h, err, sizeof err) == 0)
        return 0;
    snprintf(msg, msglen, "input image %.512s could not be decoded: %s", url, err);
    return -1;
}

void sim_result_drop(struct sim_app *app, struct sim_task *t)
{
    if (!t->result)
        return;
    app->result_bytes -= t->result_len;
    free(t->result);
    t->result = NULL;
    t->result_len = 0;
}

int sim_result_keep(struct sim_app *app, struct sim_task *t, unsigned char *png, size_t len, uint32_t w, uint32_t h)
{
    size_t cap = (size_t)app->max_tasks, max = (size_t)app->max_result_bytes;

    sim_result_drop(app, t);
    if (len > max) {
        free(png);
        return -1;
    }
    for (size_t i = 0; i < app->task_count && app->result_bytes + len > max; i++) {
        struct sim_task *old = app->tasks[(app->task_head + i) % cap];

        if (old->result) {
            sim_log("result of %s dropped (--max-result-bytes %zu)", old->id, max);
            sim_result_drop(app, old);
        }
    }
    t->result = png;
    t->result_len = len;
    t->result_w = w;
    t->result_h = h;
    app->result_bytes += len;
    return 0;
}

static void sim_gradient_dims(const struct sim_task *t, uint32_t *w, uint32_t *h)
{
    uint32_t width = strcmp(t->resolution, "2K") == 0 ? SIM_RESULT_WIDTH_2K : SIM_RESULT_WIDTH_1K;
    uint32_t rw = 1, rh = 1;
    uint64_t height;

    if (!sim_aspect_ratio(t->aspect, &rw, &rh) && t->img_w && t->img_h) { /* auto */
        rw = t->img_w;
        rh = t->img_h;
    }
    height = ((uint64_t)width * rh + rw / 2) / rw;
    if (height < 16)
        height = 16;
    if (height > 2048)
        height = 2048;
    *w = width;
    *h = (uint32_t)height;
}

/* GET|HEAD /results/<taskId>.png: the kept result (studio) or one drawn now
 * (gradient) for a task that succeeded; 404 otherwise or once dropped. */
void sim_h_result(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp)
{
    const char *name = r->url + strlen("/results/");
    size_t n = strlen(name);
    char id[SIM_ID_LEN];
    struct sim_task *t;
    uint32_t w = 0, h = 0, seed = 2166136261u;
    unsigned char *png = NULL;
    size_t png_len = 0;
    bool gradient = false;

    (void)c;
    if (n <= 4 || n - 4 >= sizeof id || strcmp(name + n - 4, ".png") != 0) {
        sim_resp_kie(resp, 404, 404, "Not found", false);
        return;
    }
    memcpy(id, name, n - 4);
    id[n - 4] = '\0';
    pthread_mutex_lock(&app->lock);
    t = sim_task_find(app, id);
    if (t && t->state == SIM_ST_SUCCESS && t->style == SIM_STYLE_GRADIENT) {
        gradient = true;
        sim_gradient_dims(t, &w, &h);
    } else if (t && t->state == SIM_ST_SUCCESS && t->result) {
        png = sim_xmalloc(t->result_len);
        memcpy(png, t->result, t->result_len);
        png_len = t->result_len;
    }
    pthread_mutex_unlock(&app->lock);
    if (gradient) {
        for (const char *p = id; *p; p++) /* FNV-1a: a per-task tint */
            seed = (seed ^ (unsigned char)*p) * 16777619u;
        if (sim_png_render(w, h, seed, &png, &png_len) != 0) {
            sim_resp_kie(resp, 500, 500, "could not render PNG", false);
            return;
        }
    }
    if (!png) {
        sim_resp_kie(resp, 404, 404, "Not found", false);
        return;
    }
    free(resp->body);
    resp->status = 200;
    resp->ctype = "image/png";
    resp->body = (char *)png;
    resp->len = png_len;
    resp->action = SIM_SEND;
}
