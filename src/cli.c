/* cli.c - the client subcommands' dispatcher (cli.h) and what they share
 * (cli_common.h): the --server/--token options, usage errors, time and
 * size formatting. Each subcommand lives in its own file (cli_generate.c,
 * cli_tasks.c); their HTTP exchanges are in cli_http.c. */
#include "cli.h"
#include "cli_common.h"
#include "cli_generate.h"
#include "cli_tasks.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct cli_command {
    const char *name;
    int (*run)(int argc, char **argv);
    void (*usage)(FILE *out);
};

static const struct cli_command CLI_COMMANDS[] = {
    {"generate", cli_generate, cli_generate_usage},
    {"tasks", cli_tasks, cli_tasks_usage},
};

#define CLI_N_COMMANDS (sizeof CLI_COMMANDS / sizeof CLI_COMMANDS[0])

static const struct cli_command *cli_find(const char *cmd)
{
    for (size_t i = 0; cmd && i < CLI_N_COMMANDS; i++)
        if (strcmp(CLI_COMMANDS[i].name, cmd) == 0)
            return &CLI_COMMANDS[i];
    return NULL;
}

int cli_is_command(const char *cmd)
{
    return cli_find(cmd) != NULL;
}

int cli_run(int argc, char **argv)
{
    const struct cli_command *c = argc > 0 ? cli_find(argv[0]) : NULL;

    if (!c) {
        fprintf(stderr, "error: unknown client command.\n");
        return CLI_EXIT_USAGE;
    }
    return c->run(argc, argv);
}

void cli_usage(FILE *out)
{
    for (size_t i = 0; i < CLI_N_COMMANDS; i++) {
        if (i)
            fputc('\n', out);
        CLI_COMMANDS[i].usage(out);
    }
}

/* ---- shared helpers ------------------------------------------------------ */

void cli_copy(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);

    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double cli_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void cli_sleep_ms(long ms)
{
    struct timespec ts;
    if (ms <= 0)
        return;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

void cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fputs("error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nRun 'product-photo-api %s --help' for usage.\n", cmd);
}

void cli_human(double bytes, char *out, size_t cap)
{
    if (bytes >= 1024.0 * 1024.0)
        snprintf(out, cap, "%.1f MiB", bytes / (1024.0 * 1024.0));
    else if (bytes >= 1024.0)
        snprintf(out, cap, "%.0f KiB", bytes / 1024.0);
    else
        snprintf(out, cap, "%.0f B", bytes);
}

int cli_parse_utc(const char *s, time_t *out)
{
    struct tm tm;
    const char *p;

    memset(&tm, 0, sizeof tm);
    p = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    if (!p)
        return -1;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return -1;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (strcmp(p, "Z") != 0 && strcmp(p, "+00:00") != 0)
        return -1;
    *out = timegm(&tm);
    return *out == (time_t)-1 ? -1 : 0;
}

const char *cli_opt(int argc, char **argv, int *i, const char *lng, const char *shrt, int *missing)
{
    const char *a = argv[*i];
    size_t n = strlen(lng);

    if (strncmp(a, lng, n) == 0 && a[n] == '=')
        return a + n + 1;
    if (strcmp(a, lng) != 0 && !(shrt && strcmp(a, shrt) == 0))
        return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    return argv[++*i];
}

/* ---- --server and --token ------------------------------------------------ */

void cli_conn_begin(struct cli_conn_args *a)
{
    a->server = getenv("PPA_SERVER");
    a->token = getenv("PPA_API_TOKEN");
}

int cli_conn_opt(int argc, char **argv, int *i, struct cli_conn_args *a, int *missing)
{
    const char *v;

    if ((v = cli_opt(argc, argv, i, "--server", "-s", missing))) {
        a->server = v;
        return 1;
    }
    if (!*missing && (v = cli_opt(argc, argv, i, "--token", "-t", missing))) {
        a->token = v;
        return 1;
    }
    return 0;
}

int cli_conn_finish(const char *cmd, const struct cli_conn_args *a, struct cli_conn *c)
{
    const char *server = a->server;
    size_t len;

    if (a->token && strlen(a->token) > CLI_TOKEN_MAX) {
        cli_usage_error(cmd, "the API token is longer than %d characters.", CLI_TOKEN_MAX);
        return -1;
    }
    c->token = a->token;
    if (!server || !*server)
        server = "http://localhost:8000";
    if (strncmp(server, "http://", 7) != 0 && strncmp(server, "https://", 8) != 0) {
        cli_usage_error(cmd, "--server %s: give an http:// or https:// URL.", server);
        return -1;
    }
    len = strlen(server);
    while (len > 0 && server[len - 1] == '/')
        len--;
    if (len >= sizeof c->server) {
        cli_usage_error(cmd, "%s", "the --server URL is too long.");
        return -1;
    }
    memcpy(c->server, server, len);
    c->server[len] = '\0';
    return 0;
}
