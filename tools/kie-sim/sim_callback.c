/*
 * sim_callback.c - callback delivery for kie-sim (see sim_callback.h).
 */
#include "sim_callback.h"

#include <stdio.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sim_fetch.h"
#include "sim_tasks.h"

#define SIM_CALLBACK_TIMEOUT_MS 10000L

static size_t sim_discard(char *p, size_t size, size_t n, void *userdata)
{
    (void)p;
    (void)userdata;
    return size * n;
}

/* X-Webhook-Signature = Base64(HMAC-SHA256(key, taskId + "." + timestamp)). */
static void sim_sign(const char *key, const char *task_id, long long ts, char *out, size_t outlen)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned char b64[2 * EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char msg[SIM_ID_LEN + 32];

    out[0] = '\0';
    snprintf(msg, sizeof msg, "%s.%lld", task_id, ts);
    if (!HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)msg, strlen(msg), md, &mdlen))
        return;
    EVP_EncodeBlock(b64, md, (int)mdlen);
    sim_copy(out, outlen, (const char *)b64);
}

void sim_job_callback(struct sim_app *app, const struct sim_job *job)
{
    char host[256], errbuf[CURL_ERROR_SIZE] = "", err[SIM_MSG_MAX] = "", key[128];
    char hdr_ts[64], hdr_sig[192], sig[2 * EVP_MAX_MD_SIZE];
    struct curl_slist *hdrs = NULL, *tmp;
    struct sim_task *t;
    CURL *c = NULL;
    bool blocked = false;
    long status = -1;
    CURLcode rc;

    pthread_mutex_lock(&app->lock);
    sim_copy(key, sizeof key, app->cfg.webhook_hmac_key);
    pthread_mutex_unlock(&app->lock);

    if (sim_url_host(job->url, host, sizeof host) != 0 || !sim_host_is_loopback(host)) {
        snprintf(err, sizeof err, "callBackUrl %.512s is not reachable: not a loopback URL", job->url);
        goto out;
    }
    c = curl_easy_init();
    if (!c) {
        sim_copy(err, sizeof err, "curl_easy_init failed");
        goto out;
    }
    sim_curl_common(c, app, &blocked, errbuf, SIM_CALLBACK_TIMEOUT_MS);
    tmp = curl_slist_append(hdrs, "Content-Type: application/json");
    if (tmp)
        hdrs = tmp;
    if (key[0]) {
        long long ts = sim_wall_ms() / 1000;

        sim_sign(key, job->task_id, ts, sig, sizeof sig);
        snprintf(hdr_ts, sizeof hdr_ts, "X-Webhook-Timestamp: %lld", ts);
        snprintf(hdr_sig, sizeof hdr_sig, "X-Webhook-Signature: %s", sig);
        tmp = curl_slist_append(hdrs, hdr_ts);
        if (tmp)
            hdrs = tmp;
        tmp = curl_slist_append(hdrs, hdr_sig);
        if (tmp)
            hdrs = tmp;
    }
    curl_easy_setopt(c, CURLOPT_URL, job->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, job->body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(job->body));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sim_discard);
    rc = curl_easy_perform(c);
    if (blocked)
        snprintf(err, sizeof err, "callBackUrl %.512s is not reachable: non-loopback address refused", job->url);
    else if (rc != CURLE_OK)
        snprintf(err, sizeof err, "callback POST failed: %.256s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
    else
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
out:
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    sim_log("callback %s -> %.256s: %ld %s", job->task_id, job->url, status, err);
    pthread_mutex_lock(&app->lock);
    t = sim_task_find(app, job->task_id);
    if (t) {
        t->callback_done = true;
        t->callback_status = status;
        sim_copy(t->callback_error, sizeof t->callback_error, err);
    }
    pthread_mutex_unlock(&app->lock);
}

