/*
 * sim_upload.c - KIE's file-upload API for kie-sim (see sim_upload.h).
 *
 * Checks, in order: the upload_mode knob, the Bearer key ("Authentication
 * failed: Invalid API Key"), the file (base64Data / file / fileUrl), then
 * uploadPath and fileName. Messages KIE documents are used as they are
 * ("Missing required parameter: uploadPath", "Base64 decoding failed:
 * Invalid Base64 format", "Authentication failed: Invalid API Key",
 * "Internal server error"); the others ("Invalid parameter: ...", "File size
 * exceeds the limit ...", "File download failed: ...") are the simulator's.
 * A missing fileName becomes 16 random hex digits plus an extension for the
 * type; file-url-upload takes the URL's last path segment first.
 */
#include "sim_upload.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "sim_admin.h"
#include "sim_fetch.h"
#include "sim_files.h"
#include "sim_form.h"
#include "sim_image.h"

#define SIM_UPLOAD_URL_TIMEOUT_MS 30000L /* KIE: "Download timeout is 30 seconds" */
#define SIM_JSON_SLACK            (64u * 1024u) /* JSON around the base64 data */

const char *const sim_upload_mode_names[] = {"normal", "http401", "http500", "hang", "reset",
                                             "nonjson", "code400", "code500", "nourl", NULL};
const char *const sim_upload_shape_names[] = {"openapi", "quickstart", NULL};

static const char sim_upload_unauth[] = "Authentication failed: Invalid API Key";

/* ------------------------------------------------------------ answers */

void sim_upload_error(struct sim_resp *resp, unsigned status, int code, const char *msg)
{
    cJSON *o = cJSON_CreateObject();

    cJSON_AddBoolToObject(o, "success", false);
    cJSON_AddNumberToObject(o, "code", code);
    cJSON_AddStringToObject(o, "msg", msg);
    sim_resp_json(resp, status, o);
}

static void sim_iso_time(long long ms, char *out, size_t outlen)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    char base[32];

    gmtime_r(&s, &tm);
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, outlen, "%s.%03lldZ", base, ms % 1000);
}

/* The success answer for a stored file, in the shape the knob picks. */
static void sim_upload_answer(struct sim_app *app, const struct sim_file_info *info, const struct sim_config *cfg,
                              bool with_url, struct sim_resp *resp)
{
    char path[3 * (SIM_UPLOAD_PATH_MAX + SIM_FILE_NAME_MAX) + 16], url[sizeof path + 64], file_path[sizeof path];
    char when[40], expires[40];
    cJSON *o = cJSON_CreateObject(), *d;
    unsigned port;

    pthread_mutex_lock(&app->lock);
    port = app->port;
    pthread_mutex_unlock(&app->lock);
    sim_files_url_path(info, path, sizeof path);
    snprintf(url, sizeof url, "http://%s:%u%s", app->host, port, path);
    snprintf(file_path, sizeof file_path, "%s/%s", info->upload_path, info->name);
    sim_iso_time(info->uploaded_ms, when, sizeof when);
    cJSON_AddBoolToObject(o, "success", true);
    cJSON_AddNumberToObject(o, "code", 200);
    cJSON_AddStringToObject(o, "msg", "File uploaded successfully");
    d = cJSON_AddObjectToObject(o, "data");
    if (cfg->upload_shape == SIM_SHAPE_QUICKSTART) {
        char dl[sizeof url];

        snprintf(dl, sizeof dl, "http://%s:%u/kie-download/%s", app->host, port, info->id);
        sim_iso_time(info->uploaded_ms + cfg->upload_ttl_ms, expires, sizeof expires);
        cJSON_AddStringToObject(d, "fileId", info->id);
        cJSON_AddStringToObject(d, "fileName", info->name);
        cJSON_AddStringToObject(d, "originalName", info->original_name);
        cJSON_AddNumberToObject(d, "fileSize", (double)info->size);
        cJSON_AddStringToObject(d, "mimeType", info->mime);
        cJSON_AddStringToObject(d, "uploadPath", info->upload_path);
        cJSON_AddStringToObject(d, "fileUrl", url);
        if (with_url)
            cJSON_AddStringToObject(d, "downloadUrl", dl);
        cJSON_AddStringToObject(d, "uploadTime", when);
        cJSON_AddStringToObject(d, "expiresAt", expires);
    } else {
        cJSON_AddStringToObject(d, "fileName", info->name);
        cJSON_AddStringToObject(d, "filePath", file_path);
        if (with_url)
            cJSON_AddStringToObject(d, "downloadUrl", url);
        cJSON_AddNumberToObject(d, "fileSize", (double)info->size);
        cJSON_AddStringToObject(d, "mimeType", info->mime);
        cJSON_AddStringToObject(d, "uploadedAt", when);
    }
    sim_resp_json(resp, 200, o);
}

/* upload_mode and auth, common to the three routes. Returns the mode to go
 * on with (normal or nourl), or -1 when resp already holds the answer. */
static int sim_upload_begin(struct sim_app *app, struct MHD_Connection *c, struct sim_config *cfg,
                            struct sim_resp *resp)
{
    int mode = sim_take_mode(app, SIM_EP_UPLOAD, cfg);
    bool present;

    switch (mode) {
    case SIM_UPLOAD_NORMAL:
    case SIM_UPLOAD_NOURL:
        break;
    case SIM_UPLOAD_HTTP401:
        sim_upload_error(resp, 401, 401, sim_upload_unauth);
        return -1;
    case SIM_UPLOAD_HTTP500:
        sim_upload_error(resp, 500, 500, "Internal server error");
        return -1;
    case SIM_UPLOAD_HANG:
        sim_resp_mode(resp, SIM_MODE_HANG, false);
        return -1;
    case SIM_UPLOAD_RESET:
        sim_resp_mode(resp, SIM_MODE_RESET, false);
        return -1;
    case SIM_UPLOAD_NONJSON:
        sim_resp_mode(resp, SIM_MODE_NONJSON, false);
        return -1;
    case SIM_UPLOAD_CODE400:
        sim_upload_error(resp, 200, 400, "Request parameters are incorrect (simulated)");
        return -1;
    case SIM_UPLOAD_CODE500:
        sim_upload_error(resp, 200, 500, "Internal server error");
        return -1;
    default:
        sim_upload_error(resp, 500, 500, "unknown simulator upload mode");
        return -1;
    }
    if (!sim_auth_ok(app, c, &present)) {
        sim_upload_error(resp, 401, 401, sim_upload_unauth);
        return -1;
    }
    return mode;
}

/* ------------------------------------------------------- names, types */

static bool sim_bad_char(unsigned char ch)
{
    return ch < 0x20 || ch == 0x7F || ch == '\\';
}

/* uploadPath: required, no leading or trailing '/', no empty, "." or ".."
 * segment, no control character or backslash. */
static int sim_check_upload_path(const char *p, char *msg, size_t len)
{
    size_t n = strlen(p);

    if (n == 0) {
        snprintf(msg, len, "Missing required parameter: uploadPath");
        return -1;
    }
    if (p[0] == '/' || p[n - 1] == '/') {
        snprintf(msg, len, "Invalid parameter: uploadPath must not start or end with '/'");
        return -1;
    }
    if (n >= SIM_UPLOAD_PATH_MAX) {
        snprintf(msg, len, "Invalid parameter: uploadPath is longer than %d bytes", SIM_UPLOAD_PATH_MAX - 1);
        return -1;
    }
    for (const char *seg = p; seg; seg = strchr(seg, '/') ? strchr(seg, '/') + 1 : NULL) {
        size_t sl = strcspn(seg, "/");

        if (sl == 0 || (sl == 1 && seg[0] == '.') || (sl == 2 && seg[0] == '.' && seg[1] == '.')) {
            snprintf(msg, len, "Invalid parameter: uploadPath must not have an empty, '.' or '..' segment");
            return -1;
        }
    }
    for (const char *q = p; *q; q++)
        if (sim_bad_char((unsigned char)*q)) {
            snprintf(msg, len, "Invalid parameter: uploadPath must not contain control characters or '\\'");
            return -1;
        }
    return 0;
}

/* fileName (when given): one path segment, not "." or "..". */
static int sim_check_file_name(const char *p, char *msg, size_t len)
{
    size_t n = strlen(p);

    if (n >= SIM_FILE_NAME_MAX) {
        snprintf(msg, len, "Invalid parameter: fileName is longer than %d bytes", SIM_FILE_NAME_MAX - 1);
        return -1;
    }
    if (strcmp(p, ".") == 0 || strcmp(p, "..") == 0 || strchr(p, '/')) {
        snprintf(msg, len, "Invalid parameter: fileName must be a name, without '/'");
        return -1;
    }
    for (const char *q = p; *q; q++)
        if (sim_bad_char((unsigned char)*q)) {
            snprintf(msg, len, "Invalid parameter: fileName must not contain control characters or '\\'");
            return -1;
        }
    return 0;
}

static const struct {
    const char *mime, *ext;
} sim_types[] = {
    {"image/jpeg", "jpg"}, {"image/png", "png"}, {"image/webp", "webp"}, {"image/gif", "gif"},
    {"application/pdf", "pdf"}, {"video/mp4", "mp4"}, {"text/plain", "txt"}, {"application/json", "json"},
    {"image/jpeg", "jpeg"},
};
#define SIM_N_TYPES (sizeof sim_types / sizeof sim_types[0])

/* MIME type: the content's magic, else the declared type, else the name's
 * extension, else application/octet-stream. */
static void sim_upload_mime(const unsigned char *data, size_t len, const char *declared, const char *name, char *out,
                            size_t outlen)
{
    static const char *const sniffed[] = {NULL, "image/jpeg", "image/png", "image/webp"};
    enum sim_image_type t = sim_image_sniff(data, len, NULL, NULL);
    const char *ext = strrchr(name, '.');
    size_t dn = declared ? strcspn(declared, "; ") : 0;

    if (t != SIM_IMAGE_NONE) {
        sim_copy(out, outlen, sniffed[t]);
        return;
    }
    if (len >= 4 && memcmp(data, "GIF8", 4) == 0) {
        sim_copy(out, outlen, "image/gif");
        return;
    }
    if (len >= 5 && memcmp(data, "%PDF-", 5) == 0) {
        sim_copy(out, outlen, "application/pdf");
        return;
    }
    if (dn > 0 && dn < outlen && strncasecmp(declared, "application/octet-stream", dn) != 0) {
        bool ok = true;

        for (size_t i = 0; i < dn; i++)
            ok = ok && declared[i] > 0x20 && declared[i] < 0x7F;
        if (ok) {
            snprintf(out, outlen, "%.*s", (int)dn, declared);
            return;
        }
    }
    for (size_t i = 0; ext && i < SIM_N_TYPES; i++)
        if (strcasecmp(ext + 1, sim_types[i].ext) == 0) {
            sim_copy(out, outlen, sim_types[i].mime);
            return;
        }
    sim_copy(out, outlen, "application/octet-stream");
}

/* KIE: "If not provided, a random file name will be generated". */
static void sim_random_name(const char *mime, char *out, size_t outlen)
{
    unsigned char rnd[8] = {0};
    const char *ext = "bin";
    long long now = sim_wall_ms();

    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        memcpy(rnd, &now, sizeof rnd < sizeof now ? sizeof rnd : sizeof now);
    for (size_t i = 0; i < SIM_N_TYPES; i++)
        if (strcmp(mime, sim_types[i].mime) == 0) {
            ext = sim_types[i].ext;
            break;
        }
    snprintf(out, outlen, "%02x%02x%02x%02x%02x%02x%02x%02x.%s", rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5],
             rnd[6], rnd[7], ext);
}

/* Fill info's names and type and store data (taken over). Answers resp. */
static void sim_upload_finish(struct sim_app *app, const struct sim_config *cfg, int mode, const char *upload_path,
                              const char *file_name, const char *original, const char *declared, unsigned char *data,
                              size_t len, struct sim_resp *resp)
{
    struct sim_file_info info;
    char err[SIM_MSG_MAX];

    if (!data) /* an empty file */
        data = sim_xmalloc(1);
    memset(&info, 0, sizeof info);
    sim_copy(info.upload_path, sizeof info.upload_path, upload_path);
    sim_upload_mime(data, len, declared, file_name && *file_name ? file_name : original ? original : "", info.mime,
                    sizeof info.mime);
    if (file_name && *file_name)
        sim_copy(info.name, sizeof info.name, file_name);
    else
        sim_random_name(info.mime, info.name, sizeof info.name);
    sim_copy(info.original_name, sizeof info.original_name, original && *original ? original : info.name);
    if (sim_files_put(app->files, &info, data, len, err, sizeof err) != 0) {
        sim_log("upload refused: %s", err);
        sim_upload_error(resp, 500, 500, "Internal server error");
        return;
    }
    sim_log("upload stored %s/%s (%zu bytes, %s)", info.upload_path, info.name, info.size, info.mime);
    sim_upload_answer(app, &info, cfg, mode != SIM_UPLOAD_NOURL, resp);
}

/* Check uploadPath and fileName (may be NULL) of a request; 0 or -1 with
 * the answer in resp. */
static int sim_upload_names(const char *upload_path, const char *file_name, struct sim_resp *resp)
{
    char msg[256];

    if (sim_check_upload_path(upload_path ? upload_path : "", msg, sizeof msg) != 0 ||
        (file_name && *file_name && sim_check_file_name(file_name, msg, sizeof msg) != 0)) {
        sim_upload_error(resp, 400, 400, msg);
        return -1;
    }
    return 0;
}

static void sim_upload_too_big(struct sim_resp *resp, size_t max)
{
    char msg[160];

    snprintf(msg, sizeof msg, "File size exceeds the limit of %zu bytes", max);
    sim_upload_error(resp, 400, 400, msg);
}

/* ----------------------------------------------------- JSON bodies */

/* A JSON string member: NULL if missing or null; -1 (with the answer) if
 * it has another type. */
static int sim_json_str(const cJSON *body, const char *name, const char **out, struct sim_resp *resp)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, name);
    char msg[128];

    *out = NULL;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v)) {
        snprintf(msg, sizeof msg, "Invalid parameter: %s must be a string", name);
        sim_upload_error(resp, 400, 400, msg);
        return -1;
    }
    *out = v->valuestring;
    return 0;
}

/* Parse the body as an object and read its three string members. */
static cJSON *sim_upload_json(const struct sim_req *r, const char *file_key, const char **file, const char **path,
                              const char **name, struct sim_resp *resp)
{
    cJSON *body = cJSON_ParseWithLength(r->body ? r->body : "", r->len);

    if (!cJSON_IsObject(body)) {
        sim_upload_error(resp, 400, 400, "Invalid request body: expected a JSON object");
        cJSON_Delete(body);
        return NULL;
    }
    if (sim_json_str(body, file_key, file, resp) != 0 || sim_json_str(body, "uploadPath", path, resp) != 0 ||
        sim_json_str(body, "fileName", name, resp) != 0) {
        cJSON_Delete(body);
        return NULL;
    }
    return body;
}

static int sim_b64_value(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+')
        return 62;
    if (ch == '/')
        return 63;
    return -1;
}

/* Standard base64 (whitespace ignored, '=' padding optional but only at the
 * end). Returns the decoded bytes (malloc'd) or NULL if it is not base64. */
static unsigned char *sim_b64_decode(const char *in, size_t len, size_t *out_len)
{
    unsigned char *out = sim_xmalloc(len / 4 * 3 + 3);
    unsigned acc = 0;
    size_t n = 0, digits = 0, pad = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)in[i];
        int v;

        if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n')
            continue;
        if (ch == '=') {
            pad++;
            continue;
        }
        v = sim_b64_value(ch);
        if (v < 0 || pad > 0)
            goto bad;
        acc = (acc << 6) | (unsigned)v;
        if (++digits % 4 == 0) {
            out[n++] = (unsigned char)(acc >> 16);
            out[n++] = (unsigned char)(acc >> 8);
            out[n++] = (unsigned char)acc;
            acc = 0;
        }
    }
    if (digits == 0 || digits % 4 == 1 || pad > 2 || (pad && (digits + pad) % 4 != 0))
        goto bad;
    if (digits % 4 == 2) {
        out[n++] = (unsigned char)(acc >> 4);
    } else if (digits % 4 == 3) {
        out[n++] = (unsigned char)(acc >> 10);
        out[n++] = (unsigned char)(acc >> 2);
    }
    *out_len = n;
    return out;
bad:
    free(out);
    return NULL;
}

size_t sim_upload_base64_max_body(struct sim_app *app)
{
    size_t max;

    pthread_mutex_lock(&app->lock);
    max = (size_t)app->cfg.upload_base64_max_bytes;
    pthread_mutex_unlock(&app->lock);
    return (max + 2) / 3 * 4 + SIM_JSON_SLACK;
}

void sim_h_upload_base64(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp)
{
    static const char bad64[] = "Base64 decoding failed: Invalid Base64 format";
    const char *b64, *path, *name, *payload;
    char declared[SIM_MIME_MAX] = "";
    struct sim_config cfg;
    unsigned char *data = NULL;
    size_t len = 0;
    cJSON *body = NULL;
    int mode = sim_upload_begin(app, c, &cfg, resp);

    if (mode < 0)
        return;
    body = sim_upload_json(r, "base64Data", &b64, &path, &name, resp);
    if (!body)
        return;
    if (!b64 || !*b64) {
        sim_upload_error(resp, 400, 400, "Missing required parameter: base64Data");
        goto out;
    }
    payload = b64;
    if (strncasecmp(b64, "data:", 5) == 0) { /* data:<mime>[;...];base64,<data> */
        const char *comma = strchr(b64, ',');
        size_t hl = comma ? (size_t)(comma - b64) : 0;

        if (!comma || hl < 12 || strncasecmp(comma - 7, ";base64", 7) != 0) {
            sim_upload_error(resp, 400, 400, bad64);
            goto out;
        }
        snprintf(declared, sizeof declared, "%.*s", (int)strcspn(b64 + 5, ";,"), b64 + 5);
        payload = comma + 1;
    }
    data = sim_b64_decode(payload, strlen(payload), &len);
    if (!data) {
        sim_upload_error(resp, 400, 400, bad64);
        goto out;
    }
    if (len > (size_t)cfg.upload_base64_max_bytes) {
        sim_upload_too_big(resp, (size_t)cfg.upload_base64_max_bytes);
        goto out;
    }
    if (sim_upload_names(path, name, resp) != 0)
        goto out;
    sim_upload_finish(app, &cfg, mode, path, name, name, declared, data, len, resp);
    data = NULL;
out:
    free(data);
    cJSON_Delete(body);
}

/* The last segment of url's path, decoded, if it is a usable file name. */
static void sim_url_file_name(const char *url, char *out, size_t outlen)
{
    CURLU *u = curl_url();
    char *path = NULL, msg[128];
    const char *slash;

    out[0] = '\0';
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PATH, &path, CURLU_URLDECODE) == CURLUE_OK && path) {
        slash = strrchr(path, '/');
        slash = slash ? slash + 1 : path;
        if (*slash && sim_check_file_name(slash, msg, sizeof msg) == 0)
            sim_copy(out, outlen, slash);
    }
    curl_free(path);
    curl_url_cleanup(u);
}

void sim_h_upload_url(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp)
{
    const char *url, *path, *name;
    char host[256], from_url[SIM_FILE_NAME_MAX], what[600], msg[SIM_MSG_MAX + 64], why[SIM_MSG_MAX];
    struct sim_config cfg;
    struct sim_download d;
    enum sim_dl e;
    cJSON *body = NULL;
    int mode = sim_upload_begin(app, c, &cfg, resp);

    if (mode < 0)
        return;
    body = sim_upload_json(r, "fileUrl", &url, &path, &name, resp);
    if (!body)
        return;
    if (!url || !*url) {
        sim_upload_error(resp, 400, 400, "Missing required parameter: fileUrl");
        goto out;
    }
    if (sim_url_host(url, host, sizeof host) != 0) {
        sim_upload_error(resp, 400, 400, "Invalid parameter: fileUrl must be an http or https URL");
        goto out;
    }
    if (sim_upload_names(path, name, resp) != 0)
        goto out;
    snprintf(what, sizeof what, "fileUrl %.512s", url);
    e = sim_download(app, url, (size_t)cfg.upload_max_bytes, (size_t)cfg.upload_max_bytes,
                     SIM_UPLOAD_URL_TIMEOUT_MS, &d);
    if (e != SIM_DL_OK) {
        sim_download_describe(e, &d, what, (size_t)cfg.upload_max_bytes, why, sizeof why);
        snprintf(msg, sizeof msg, "File download failed: %s", why);
        sim_upload_error(resp, 400, 400, msg);
        sim_download_free(&d);
        goto out;
    }
    sim_url_file_name(url, from_url, sizeof from_url);
    sim_upload_finish(app, &cfg, mode, path, name && *name ? name : from_url, from_url, d.content_type, d.data,
                      d.kept, resp);
    d.data = NULL; /* taken over */
out:
    cJSON_Delete(body);
}

void sim_h_upload_stream(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp)
{
    struct sim_form *f = r->sink;
    struct sim_config cfg;
    int mode = sim_upload_begin(app, c, &cfg, resp);

    if (mode < 0)
        return;
    if (!f || !f->multipart || !f->has_file) {
        sim_upload_error(resp, 400, 400, "Missing required parameter: file");
        return;
    }
    if (f->file_too_big) {
        sim_upload_too_big(resp, f->file_max);
        return;
    }
    if (f->field_too_long) {
        sim_upload_error(resp, 400, 400, "Invalid parameter: uploadPath and fileName must be shorter than 1024 bytes");
        return;
    }
    if (sim_upload_names(f->upload_path, f->file_name, resp) != 0)
        return;
    sim_upload_finish(app, &cfg, mode, f->upload_path, f->file_name, f->part_name, f->part_type, f->file, f->file_len,
                      resp);
    f->file = NULL; /* taken over */
    f->file_len = f->file_cap = 0;
}
