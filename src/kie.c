/* kie.c - see kie.h. Facts from KIE's docs: HTTP 200 may carry an error in
 * the body's `code` (402, 422, 429...), so the body code is always checked;
 * createTask uses `msg`, recordInfo `message`: both are read. */
#include "kie.h"
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *kie_create_body(const struct kie_input *in)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *input = NULL;
    cJSON *urls = NULL;
    char *text = NULL;

    if (!root)
        return NULL;
    if (!cJSON_AddStringToObject(root, "model", in->model))
        goto out;
    if (in->callback_url && !cJSON_AddStringToObject(root, "callBackUrl", in->callback_url))
        goto out;
    input = cJSON_AddObjectToObject(root, "input");
    if (!input)
        goto out;
    urls = cJSON_AddArrayToObject(input, "input_urls");
    if (!urls)
        goto out;
    for (size_t i = 0; i < in->n_input_urls; i++) {
        cJSON *s = cJSON_CreateString(in->input_urls[i]);
        if (!s || !cJSON_AddItemToArray(urls, s)) {
            cJSON_Delete(s);
            goto out;
        }
    }
    if (!cJSON_AddStringToObject(input, "prompt", in->prompt) ||
        !cJSON_AddStringToObject(input, "aspect_ratio", in->aspect_ratio) ||
        !cJSON_AddStringToObject(input, "resolution", in->resolution))
        goto out;
    text = cJSON_PrintUnformatted(root);
out:
    cJSON_Delete(root);
    return text;
}

enum kie_transport kie_transport_of(int result)
{
    return result == 0 ? KIE_OK : result == ERR_TIMEOUT ? KIE_TIMEOUT : KIE_UNREACHABLE;
}

cJSON *kie_error_extra(const struct kie_outcome *o)
{
    cJSON *extra;
    cJSON *kie;

    if (!o->kie_code)
        return NULL;
    extra = cJSON_CreateObject();
    kie = cJSON_AddObjectToObject(extra, "kie");
    if (!kie) {
        cJSON_Delete(extra);
        return NULL;
    }
    cJSON_AddNumberToObject(kie, "code", (double)o->kie_code);
    cJSON_AddStringToObject(kie, "msg", o->kie_msg);
    return extra;
}

int kie_add_result_urls(cJSON *data)
{
    cJSON *rj = cJSON_GetObjectItemCaseSensitive(data, "resultJson");
    cJSON *parsed;
    cJSON *urls;
    int rc = ERR_INVALID;

    if (!cJSON_IsString(rj) || !rj->valuestring[0])
        return ERR_INVALID;
    parsed = cJSON_Parse(rj->valuestring);
    if (!parsed)
        return ERR_INVALID;
    urls = cJSON_GetObjectItemCaseSensitive(parsed, "resultUrls");
    if (cJSON_IsArray(urls)) {
        cJSON *copy = cJSON_CreateArray();
        cJSON *u;
        cJSON_ArrayForEach(u, urls)
        {
            if (cJSON_IsString(u))
                cJSON_AddItemToArray(copy, cJSON_CreateString(u->valuestring));
        }
        while (cJSON_GetObjectItemCaseSensitive(data, "resultUrls")) /* duplicate keys: drop them all */
            cJSON_DeleteItemFromObjectCaseSensitive(data, "resultUrls");
        cJSON_AddItemToObject(data, "resultUrls", copy);
        rc = 0;
    }
    cJSON_Delete(parsed);
    return rc;
}

static void set_error(struct kie_outcome *out, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set_error(struct kie_outcome *out, unsigned status, const char *code, const char *fmt, ...)
{
    va_list ap;
    out->status = status;
    snprintf(out->code, sizeof out->code, "%s", code);
    va_start(ap, fmt);
    vsnprintf(out->message, sizeof out->message, fmt, ap);
    va_end(ap);
}

static const char *kie_hint(long code)
{
    switch (code) {
    case 401: return " Check KIE_API_KEY.";
    case 402: return " Top up your KIE credits.";
    case 422: return " KIE refused the request parameters.";
    case 429: return " KIE's rate limit was hit; wait a few seconds and retry.";
    case 433: return " The KIE key's usage limit was reached.";
    case 455: return " KIE is under maintenance; retry later.";
    default: return "";
    }
}

void kie_map(enum kie_transport transport, const char *transport_error, long timeout_s, long http_status,
             const char *body, size_t len, int is_status, const char *what, struct kie_outcome *out)
{
    cJSON *json = NULL;
    cJSON *code;
    cJSON *msg;

    memset(out, 0, sizeof *out);
    if (transport == KIE_TIMEOUT) {
        set_error(out, 504, "upstream_timeout", "KIE did not answer %s within %ld s (KIE_TIMEOUT_SECONDS).", what,
                  timeout_s);
        return;
    }
    if (transport == KIE_UNREACHABLE) {
        set_error(out, 502, "upstream_unreachable", "Could not reach KIE for %s: %s.", what,
                  transport_error && *transport_error ? transport_error : "connection failed");
        return;
    }
    if (body && len)
        json = cJSON_ParseWithLength(body, len);
    if (!cJSON_IsObject(json)) {
        cJSON_Delete(json);
        if (http_status == 429) {
            set_error(out, 429, "kie_rate_limited", "KIE's rate limit was hit; wait a few seconds and retry.");
            out->kie_code = 429;
            return;
        }
        if (http_status >= 500)
            set_error(out, 502, "upstream_error", "KIE answered %s with HTTP %ld.", what, http_status);
        else
            set_error(out, 502, "upstream_bad_response", "KIE answered %s with HTTP %ld and no JSON.", what,
                      http_status);
        return;
    }
    code = cJSON_GetObjectItemCaseSensitive(json, "code");
    msg = cJSON_GetObjectItemCaseSensitive(json, "msg");
    if (!cJSON_IsString(msg))
        msg = cJSON_GetObjectItemCaseSensitive(json, "message");
    if (cJSON_IsString(msg))
        snprintf(out->kie_msg, sizeof out->kie_msg, "%s", msg->valuestring);
    if (cJSON_IsNumber(code)) /* out-of-range doubles cannot be cast to long (UB): map them to -1 */
        out->kie_code = code->valuedouble >= -1e9 && code->valuedouble <= 1e9 ? (long)code->valuedouble : -1;
    if (http_status >= 500 && out->kie_code == 0) {
        cJSON_Delete(json);
        set_error(out, 502, "upstream_error", "KIE answered %s with HTTP %ld.", what, http_status);
        return;
    }
    if (!cJSON_IsNumber(code)) {
        /* no body code: trust the HTTP status */
        if (http_status == 200) {
            cJSON_Delete(json);
            set_error(out, 502, "upstream_bad_response", "KIE's answer to %s has no \"code\".", what);
            return;
        }
        out->kie_code = http_status;
    }
    if (out->kie_code != 200) {
        long c = out->kie_code;
        unsigned status = (c >= 400 && c <= 599) ? (unsigned)c : 502;
        if (status == 455) /* KIE's "service unavailable (maintenance)" */
            status = 503;
        cJSON_Delete(json);
        set_error(out, status, "kie_error", "KIE refused %s (code %ld): %s.%s", what, c,
                  out->kie_msg[0] ? out->kie_msg : "no message", kie_hint(c));
        return;
    }
    if (http_status != 200 && http_status != 0) {
        cJSON_Delete(json);
        set_error(out, 502, "upstream_error", "KIE answered %s with HTTP %ld.", what, http_status);
        return;
    }
    if (is_status) {
        cJSON *data = cJSON_GetObjectItemCaseSensitive(json, "data");
        if (cJSON_IsObject(data))
            (void)kie_add_result_urls(data);
    }
    out->status = 200;
    out->json = json;
}

void kie_outcome_free(struct kie_outcome *out)
{
    cJSON_Delete(out->json);
    out->json = NULL;
}

int kie_unknown_task(const struct kie_outcome *o)
{
    return o->status == 422 && o->kie_code == 422 && strstr(o->kie_msg, "null") != NULL;
}
