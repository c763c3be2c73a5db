/*
 * sim_results.h - the "generated" images of kie-sim. With result_style
 * studio (the default) a task's result is made by a worker right after its
 * inputs are downloaded: the first input fitted on a light studio background
 * in the requested aspect_ratio and resolution, marked "SIMULATED"
 * (sim_image.c), kept in memory within --max-result-bytes (oldest results
 * dropped first). With result_style gradient it is the older gradient PNG
 * (256 px wide, 512 for 2K), drawn on request. Served at
 * GET|HEAD /results/<taskId>.png once the task succeeded.
 */
#ifndef SIM_RESULTS_H
#define SIM_RESULTS_H

#include <stddef.h>
#include <stdint.h>

#include "sim.h"
#include "sim_http.h"

enum sim_result_style { SIM_STYLE_STUDIO, SIM_STYLE_GRADIENT };

/* Names for the result_style knob, NULL-terminated. */
extern const char *const sim_result_style_names[];

/* Worker thread, no lock held: the studio result for a task from its first
 * input (url, in[0..len)). Returns 0 with *png (malloc'd, *png_len bytes,
 * *w x *h), or -1 with a KIE-style failMsg naming url. */
int sim_result_make(const char *url, const unsigned char *in, size_t len, const char *aspect,
                    const char *resolution, unsigned char **png, size_t *png_len, uint32_t *w, uint32_t *h,
                    char *msg, size_t msglen);

/* Caller holds app->lock. Keep png (taken over in every case) as t's
 * result, dropping the oldest other results while the total would exceed
 * app->max_result_bytes. Returns 0, or -1 if png alone is larger. */
int sim_result_keep(struct sim_app *app, struct sim_task *t, unsigned char *png, size_t len, uint32_t w, uint32_t h);

/* Caller holds app->lock. Forget t's result (before t is dropped). */
void sim_result_drop(struct sim_app *app, struct sim_task *t);

/* GET|HEAD /results/<taskId>.png */
void sim_h_result(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp);

#endif
