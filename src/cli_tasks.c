/* cli_tasks.c - `product-photo-api tasks`: see cli_tasks.h.
 *
 * Pages through GET /tasks (newest first, at most 100 a page, following
 * "next") until --limit records are in, then prints them: a table (id, age,
 * state, credits, prompt) for people, or the records themselves with --json
 * (one JSON array, a record per line) for scripts. */
#include "cli_tasks.h"
#include "cli_http.h"
#include "config.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define CLI_CMD "tasks"
#define CLI_TASKS_PAGE_MAX 100     /* the server's largest page */
#define CLI_TASKS_LIMIT_MAX 10000L /* --limit */
#define CLI_TASKS_DEFAULT 20L
#define CLI_CURSOR_MAX 512
#define CLI_PROMPT_MIN_COLS 20 /* the prompt column is never cut narrower */

struct cli_tasks_opts {
    struct cli_conn c;
    long limit;
    int json;
};

void cli_tasks_usage(FILE *out)
{
    fprintf(out,
            "Usage: product-photo-api tasks [--limit N] [--json] [options]\n"
            "\n"
            "List the tasks a running product-photo-api server created, newest first (GET /tasks):\n"
            "id, age, state, credits and prompt, one task a line.\n"
            "\n"
            "Options:\n"
            "  -n, --limit N            how many tasks, 1-%ld [%ld]\n"
            "      --json               print the task records as a JSON array (one record a line)\n"
            "  -s, --server URL         the server [$PPA_SERVER or http://localhost:8000]\n"
            "  -t, --token TOKEN        API token sent as Authorization: Bearer [$PPA_API_TOKEN]\n"
            "  -h, --help               this text\n"
            "\n"
            "Exit status: 0 listed, 1 failed (the server's message is printed), 2 bad usage.\n"
            "\n"
            "Example:\n"
            "  product-photo-api tasks --limit 50\n",
            CLI_TASKS_LIMIT_MAX, CLI_TASKS_DEFAULT);
}

/* 0 ready, 1 help shown, -1 usage error printed. */
static int cli_tasks_parse(int argc, char **argv, struct cli_tasks_opts *o)
{
    const char *limit = NULL;
    struct cli_conn_args conn;

    cli_conn_begin(&conn);
    o->limit = CLI_TASKS_DEFAULT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v;
        int missing = 0;

        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            cli_tasks_usage(stdout);
            return 1;
        } else if (strcmp(a, "--json") == 0) {
            o->json = 1;
        } else if ((v = cli_opt(argc, argv, &i, "--limit", "-n", &missing))) {
            limit = v;
        } else if (!missing && cli_conn_opt(argc, argv, &i, &conn, &missing)) {
            continue;
        } else if (missing) {
            cli_usage_error(CLI_CMD, "%s needs a value.", a);
            return -1;
        } else if (a[0] == '-' && a[1]) {
            cli_usage_error(CLI_CMD, "unknown option %s.", a);
            return -1;
        } else {
            cli_usage_error(CLI_CMD, "unexpected argument %s (tasks takes only options).", a);
            return -1;
        }
    }
    if (limit && config_parse_long(limit, 1, CLI_TASKS_LIMIT_MAX, &o->limit)) {
        cli_usage_error(CLI_CMD, "--limit %s: give a whole number from 1 to %ld.", limit, CLI_TASKS_LIMIT_MAX);
        return -1;
    }
    return cli_conn_finish(CLI_CMD, &conn, &o->c);
}

int cli_tasks_page(const struct cli_conn *c, int limit, const char *cursor, cJSON **page, long *status, char *msg,
                   size_t cap)
{
    struct cli_reply r;
    char url[CLI_URL_MAX];
    char *esc = NULL;
    int n;
    int rc = -1;

    *page = NULL;
    *status = 0;
    buf_init(&r.body, CLI_MAX_REPLY);
    if (cursor && cursor[0]) {
        esc = curl_easy_escape(NULL, cursor, 0);
        if (!esc) {
            snprintf(msg, cap, "tasks: out of memory.");
            goto cleanup;
        }
    }
    n = snprintf(url, sizeof url, "%s/tasks?limit=%d%s%s", c->server, limit, esc ? "&before=" : "", esc ? esc : "");
    if (n < 0 || (size_t)n >= sizeof url) {
        snprintf(msg, cap, "tasks: the request URL is longer than %zu bytes.", sizeof url - 1);
        goto cleanup;
    }
    cli_call(c, url, NULL, NULL, NULL, NULL, CLI_API_TIMEOUT_S, NULL, &r);
    *status = r.status;
    *page = cli_json_ok(c, "tasks", &r, msg, cap);
    if (!*page) {
        if (r.code == CURLE_OK && (r.status == 404 || r.status == 405)) {
            size_t len = strlen(msg);
            snprintf(msg + len, cap - len, " (this server has no GET /tasks: it is older than this client.)");
        }
        goto cleanup;
    }
    if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(*page, "tasks"))) {
        snprintf(msg, cap, "tasks: the server's answer has no \"tasks\" array.");
        cJSON_Delete(*page);
        *page = NULL;
        goto cleanup;
    }
    rc = 0;
cleanup:
    curl_free(esc);
    buf_free(&r.body);
    return rc;
}

/* Up to o->limit records, newest first, into `out` (an array). 0 or -1
 * (message printed). */
static int cli_tasks_collect(const struct cli_tasks_opts *o, cJSON *out)
{
    char cursor[CLI_CURSOR_MAX] = "";
    char msg[CLI_MSG_MAX];
    cJSON *page = NULL;
    long status;
    int rc = -1;

    while (cJSON_GetArraySize(out) < o->limit) {
        long want = o->limit - cJSON_GetArraySize(out);
        const cJSON *next;
        cJSON *list;
        int got;

        if (cli_tasks_page(&o->c, want > CLI_TASKS_PAGE_MAX ? CLI_TASKS_PAGE_MAX : (int)want, cursor, &page, &status,
                           msg, sizeof msg))
            goto cleanup;
        list = cJSON_GetObjectItemCaseSensitive(page, "tasks");
        got = cJSON_GetArraySize(list);
        while (cJSON_GetArraySize(list) > 0 && cJSON_GetArraySize(out) < o->limit) {
            cJSON *rec = cJSON_DetachItemFromArray(list, 0);
            if (cJSON_IsObject(rec))
                cJSON_AddItemToArray(out, rec);
            else
                cJSON_Delete(rec);
        }
        next = cJSON_GetObjectItemCaseSensitive(page, "next");
        /* the end: no cursor, an empty page, or a cursor that does not move */
        if (!cJSON_IsString(next) || !next->valuestring[0] || got == 0 || strcmp(next->valuestring, cursor) == 0)
            break;
        if (strlen(next->valuestring) >= sizeof cursor) {
            snprintf(msg, sizeof msg, "tasks: the server's \"next\" cursor is longer than %zu bytes.",
                     sizeof cursor - 1);
            goto cleanup;
        }
        snprintf(cursor, sizeof cursor, "%s", next->valuestring);
        cJSON_Delete(page);
        page = NULL;
    }
    rc = 0;
cleanup:
    if (rc)
        fprintf(stderr, "error: %s\n", msg);
    cJSON_Delete(page);
    return rc;
}

static const char *cli_str(const cJSON *rec, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, name);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* "42s", "5m", "3h", "12d" since the record's created_at; "?" when unknown. */
static void cli_age(const cJSON *rec, time_t now, char *out, size_t cap)
{
    time_t t;
    double s;
    long secs;

    if (cli_parse_utc(cli_str(rec, "created_at"), &t)) {
        snprintf(out, cap, "?");
        return;
    }
    s = difftime(now, t);
    secs = s > 0 ? (long)s : 0;
    if (secs < 60)
        snprintf(out, cap, "%lds", secs);
    else if (secs < 3600)
        snprintf(out, cap, "%ldm", secs / 60);
    else if (secs < 86400)
        snprintf(out, cap, "%ldh", secs / 3600);
    else
        snprintf(out, cap, "%ldd", secs / 86400);
}

static void cli_credits(const cJSON *rec, char *out, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, "credits");

    if (cJSON_IsNumber(v))
        snprintf(out, cap, "%g", v->valuedouble);
    else
        snprintf(out, cap, "-");
}

/* The prompt on one line (control characters as spaces), cut to `cols`
 * characters (0 = no limit) on a UTF-8 boundary with "..." at the end. */
static void cli_print_prompt(const char *p, size_t cols)
{
    size_t shown = 0;
    size_t total = 0;

    for (const unsigned char *q = (const unsigned char *)p; *q; q++)
        total += (*q & 0xC0) != 0x80;
    for (const unsigned char *q = (const unsigned char *)p; *q; q++) {
        int lead = (*q & 0xC0) != 0x80;
        if (lead && cols && total > cols && shown + 3 >= cols) {
            fputs("...", stdout);
            return;
        }
        shown += (size_t)lead;
        fputc(*q < 0x20 || *q == 0x7f ? ' ' : *q, stdout);
    }
}

/* Width of the terminal on stdout, 0 when it is not one. */
static size_t cli_columns(void)
{
    struct winsize ws;

    if (!isatty(STDOUT_FILENO) || ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) != 0 || ws.ws_col == 0)
        return 0;
    return ws.ws_col;
}

static void cli_tasks_table(const cJSON *list)
{
    int w_id = 2, w_age = 3, w_state = 5, w_cred = 7;
    size_t cols = cli_columns();
    size_t used;
    time_t now = time(NULL);
    const cJSON *rec;
    char age[32];
    char cred[32];

    cJSON_ArrayForEach(rec, list) {
        int n = (int)strlen(cli_str(rec, "id"));
        w_id = n > w_id ? n : w_id;
        n = (int)strlen(cli_str(rec, "state"));
        w_state = n > w_state ? n : w_state;
        cli_age(rec, now, age, sizeof age);
        n = (int)strlen(age);
        w_age = n > w_age ? n : w_age;
        cli_credits(rec, cred, sizeof cred);
        n = (int)strlen(cred);
        w_cred = n > w_cred ? n : w_cred;
    }
    used = (size_t)(w_id + w_age + w_state + w_cred) + 8;
    cols = cols == 0 ? 0 : cols > used + CLI_PROMPT_MIN_COLS ? cols - used : CLI_PROMPT_MIN_COLS;
    printf("%-*s  %*s  %-*s  %*s  %s\n", w_id, "ID", w_age, "AGE", w_state, "STATE", w_cred, "CREDITS", "PROMPT");
    cJSON_ArrayForEach(rec, list) {
        cli_age(rec, now, age, sizeof age);
        cli_credits(rec, cred, sizeof cred);
        printf("%-*s  %*s  %-*s  %*s  ", w_id, cli_str(rec, "id"), w_age, age, w_state, cli_str(rec, "state"), w_cred,
               cred);
        cli_print_prompt(cli_str(rec, "prompt"), cols);
        fputc('\n', stdout);
    }
}

/* A JSON array, one record a line. 0, or -1 out of memory. */
static int cli_tasks_json(const cJSON *list)
{
    const cJSON *rec;
    int first = 1;

    fputs("[", stdout);
    cJSON_ArrayForEach(rec, list) {
        char *text = cJSON_PrintUnformatted(rec);
        if (!text)
            return -1;
        printf("%s\n%s", first ? "" : ",", text);
        cJSON_free(text);
        first = 0;
    }
    fputs(first ? "]\n" : "\n]\n", stdout);
    return 0;
}

int cli_tasks(int argc, char **argv)
{
    struct cli_tasks_opts o;
    cJSON *list = NULL;
    int rc;

    memset(&o, 0, sizeof o);
    rc = cli_tasks_parse(argc, argv, &o);
    if (rc > 0)
        return 0;
    if (rc < 0)
        return CLI_EXIT_USAGE;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "error: libcurl failed to start.\n");
        return CLI_EXIT_FAIL;
    }
    rc = CLI_EXIT_FAIL;
    list = cJSON_CreateArray();
    if (!list) {
        fprintf(stderr, "error: out of memory.\n");
        goto cleanup;
    }
    if (cli_tasks_collect(&o, list))
        goto cleanup;
    if (o.json) {
        if (cli_tasks_json(list)) {
            fprintf(stderr, "error: out of memory.\n");
            goto cleanup;
        }
    } else if (cJSON_GetArraySize(list) == 0) {
        fprintf(stderr, "No tasks on %s yet.\n", o.c.server);
    } else {
        cli_tasks_table(list);
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "error: cannot write the list.\n");
        goto cleanup;
    }
    rc = 0;
cleanup:
    cJSON_Delete(list);
    curl_global_cleanup();
    return rc;
}
