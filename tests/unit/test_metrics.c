/* test_metrics.c - the Prometheus text and the CloudWatch EMF line. */
#include "err.h"
#include "metrics.h"
#include "test.h"
#include "upstream.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    static const char *const methods[] = {"GET", "POST"};
    static const char *const patterns[] = {"/healthz", "/upload"};
    struct metrics *m = metrics_new(2);
    struct metrics_gauges g = {.active_requests = 1, .image_queue = 3, .disk_low = 1};
    struct upstream_call c;
    char *text;
    char *emf;
    cJSON *j;

    TEST_ASSERT(m != NULL, "new");
    metrics_request(m, 0, 200, 0.4);
    metrics_request(m, 0, 200, 30.0);
    metrics_request(m, 1, 413, 2.0);
    metrics_request(m, 2, 404, 0.1);  /* no route */
    metrics_request(m, 1, 599, 1.0);  /* an unlisted status */
    metrics_request(m, 1, 503, 1.0);
    memset(&c, 0, sizeof c);
    c.target = TARGET_KIE;
    c.http_status = 200;
    metrics_upstream(m, &c);
    c.result = ERR_TIMEOUT;
    metrics_upstream(m, &c);
    c.target = TARGET_S3;
    c.result = 0;
    c.http_status = 403;
    metrics_upstream(m, &c);
    metrics_add(m, M_TASKS_CREATED, 2);
    metrics_add_credits(m, 7.5);
    text = metrics_prometheus(m, methods, patterns, &g);
    TEST_ASSERT(text != NULL, "render");
    TEST_ASSERT(strstr(text, "ppa_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 2\n") != NULL,
                "by route and status");
    TEST_ASSERT(strstr(text, "ppa_http_requests_total{method=\"\",route=\"unmatched\",status=\"404\"} 1\n") != NULL,
                "unmatched");
    TEST_ASSERT(strstr(text, "route=\"/upload\",status=\"other\"} 1\n") != NULL, "unlisted status");
    TEST_ASSERT(strstr(text, "ppa_http_request_duration_seconds_bucket{method=\"GET\",route=\"/healthz\",le=\"0.001\"} 1\n") &&
                    strstr(text, "ppa_http_request_duration_seconds_bucket{method=\"GET\",route=\"/healthz\",le=\"0.025\"} 1\n") &&
                    strstr(text, "ppa_http_request_duration_seconds_bucket{method=\"GET\",route=\"/healthz\",le=\"0.05\"} 2\n") &&
                    strstr(text, "ppa_http_request_duration_seconds_bucket{method=\"GET\",route=\"/healthz\",le=\"+Inf\"} 2\n"),
                "cumulative buckets");
    TEST_ASSERT(strstr(text, "ppa_upstream_calls_total{target=\"kie\",outcome=\"ok\"} 1\n") &&
                    strstr(text, "ppa_upstream_calls_total{target=\"kie\",outcome=\"timeout\"} 1\n") &&
                    strstr(text, "ppa_upstream_calls_total{target=\"s3\",outcome=\"http_error\"} 1\n"),
                "upstream outcomes");
    TEST_ASSERT(strstr(text, "ppa_tasks_created_total 2\n") && strstr(text, "ppa_credits_spent_total 7.50\n") &&
                    strstr(text, "ppa_disk_guard_active 1\n") && strstr(text, "ppa_image_queue 3\n"),
                "counters and gauges");
    free(text);
    emf = metrics_emf(m, &g, 1764583200000LL);
    j = emf ? cJSON_Parse(emf) : NULL;
    TEST_ASSERT(j != NULL, "EMF is JSON: %s", emf ? emf : "(null)");
    TEST_ASSERT(cJSON_GetObjectItem(j, "Requests")->valuedouble == 6 &&
                    cJSON_GetObjectItem(j, "Errors5xx")->valuedouble == 1 &&
                    cJSON_GetObjectItem(j, "TasksCreated")->valuedouble == 2 &&
                    cJSON_GetObjectItem(j, "CreditsSpent")->valuedouble == 7.5 &&
                    cJSON_GetObjectItem(j, "UpstreamErrors")->valuedouble == 2 &&
                    cJSON_GetObjectItem(j, "ImageQueue")->valuedouble == 3,
                "EMF values");
    TEST_ASSERT(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "_aws"), "Timestamp")->valuedouble == 1764583200000.0 &&
                    cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(
                        cJSON_GetObjectItem(j, "_aws"), "CloudWatchMetrics"), 0), "Metrics")) == 10,
                "EMF envelope");
    cJSON_Delete(j);
    free(emf);
    /* the next line has only what happened since */
    metrics_request(m, 0, 200, 1.0);
    emf = metrics_emf(m, &g, 1764583260000LL);
    j = emf ? cJSON_Parse(emf) : NULL;
    TEST_ASSERT(j && cJSON_GetObjectItem(j, "Requests")->valuedouble == 1 &&
                    cJSON_GetObjectItem(j, "TasksCreated")->valuedouble == 0,
                "EMF deltas");
    cJSON_Delete(j);
    free(emf);
    metrics_free(m);
    return test_report();
}
