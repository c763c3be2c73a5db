/* cli_common.h - what the client subcommands share (implemented in cli.c):
 * the server and token options, usage errors, time and size formatting. */
#ifndef PPA_CLI_COMMON_H
#define PPA_CLI_COMMON_H

#include <stddef.h>
#include <time.h>

#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2
#define CLI_SERVER_MAX 1024 /* --server, without the trailing slash */
#define CLI_TOKEN_MAX 1024
#define CLI_URL_MAX 2048
#define CLI_MSG_MAX 4096

struct cli_conn {
    char server[CLI_SERVER_MAX]; /* http(s)://host[:port][/prefix], no trailing slash */
    const char *token;           /* Bearer token or NULL (not owned: argv or environ) */
    int quiet;
    int tty; /* stderr is a terminal: redraw one line */
};

/* The connection options every subcommand takes. Start with
 * cli_conn_begin (defaults from $PPA_SERVER / $PPA_API_TOKEN), offer each
 * argument to cli_conn_opt, then validate with cli_conn_finish. */
struct cli_conn_args {
    const char *server;
    const char *token;
};
void cli_conn_begin(struct cli_conn_args *a);
/* 1 when argv[*i] was --server/-s or --token/-t (value consumed), 0 when it
 * is another argument; sets *missing when the value is absent. */
int cli_conn_opt(int argc, char **argv, int *i, struct cli_conn_args *a, int *missing);
/* Validate and copy into c. 0, or -1 with the usage error printed. */
int cli_conn_finish(const char *cmd, const struct cli_conn_args *a, struct cli_conn *c);

/* Value of option `lng` / `shrt` at argv[*i] ("--name V", "--name=V", "-x V").
 * Returns NULL when argv[*i] is not this option; sets *missing when it is but
 * has no value. Advances *i past a separate value. */
const char *cli_opt(int argc, char **argv, int *i, const char *lng, const char *shrt, int *missing);

/* "error: <message>" and the hint to run `product-photo-api <cmd> --help`. */
void cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Copy src into dst[cap], cut to fit (always NUL-terminated; cap > 0). */
void cli_copy(char *dst, size_t cap, const char *src);

/* Monotonic seconds. */
double cli_now(void);
/* Wall-clock seconds since the epoch (with fractions). */
double cli_wall(void);
void cli_sleep_ms(long ms);
/* "1.5 MiB", "12 KiB", "80 B". */
void cli_human(double bytes, char *out, size_t cap);
/* An RFC 3339 UTC time ("2026-12-01T10:00:00Z", fractions allowed) -> unix
 * seconds. 0, or -1 when it is not one. */
int cli_parse_utc(const char *s, time_t *out);

#endif
