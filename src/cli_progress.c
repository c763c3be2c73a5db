/* cli_progress.c - the batch's live display: see cli_progress.h. */
#include "cli_progress.h"

#include <stdarg.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define CLI_NAME_COLS 32

void cli_duration(double s, char *out, size_t cap)
{
    long t = s > 0 ? (long)(s + 0.5) : 0;

    if (t < 60)
        snprintf(out, cap, "%ld s", t);
    else if (t < 3600)
        snprintf(out, cap, "%ld m %02ld s", t / 60, t % 60);
    else
        snprintf(out, cap, "%ld h %02ld m", t / 3600, (t % 3600) / 60);
}

void cli_view_clear(struct cli_view *v)
{
    if (!v->tty || v->drawn == 0)
        return;
    fprintf(v->out, "\r\033[%zuA\033[J", v->drawn);
    v->drawn = 0;
    fflush(v->out);
}

void cli_view_event(struct cli_view *v, int failure, const char *fmt, ...)
{
    va_list ap;

    if (v->quiet && !failure)
        return;
    cli_view_clear(v);
    va_start(ap, fmt);
    vfprintf(v->out, fmt, ap);
    va_end(ap);
    fputc('\n', v->out);
    fflush(v->out);
}

/* The terminal's height, so the live block never scrolls (24 if unknown). */
static size_t cli_rows(const struct cli_view *v)
{
    struct winsize ws;

    if (ioctl(fileno(v->out), TIOCGWINSZ, &ws) != 0 || ws.ws_row == 0)
        return 24;
    return ws.ws_row;
}

void cli_view_draw(struct cli_view *v, const struct cli_row *rows, size_t n, const struct cli_totals *t)
{
    size_t room = cli_rows(v);
    size_t shown = n;
    char eta[32];
    char el[32];

    if (!v->tty)
        return;
    room = room > 3 ? room - 2 : 1;
    if (shown > room)
        shown = room;
    cli_view_clear(v);
    for (size_t i = 0; i < shown; i++) {
        size_t len = strlen(rows[i].name);
        const char *name = len > CLI_NAME_COLS ? rows[i].name + len - CLI_NAME_COLS : rows[i].name;
        cli_duration(rows[i].elapsed, el, sizeof el);
        fprintf(v->out, "\033[K  %-*s  %-11s %8s\n", CLI_NAME_COLS, name, rows[i].state, el);
    }
    if (t->eta_s >= 0)
        cli_duration(t->eta_s, eta, sizeof eta);
    else
        snprintf(eta, sizeof eta, "?");
    fprintf(v->out, "\033[K%zu/%zu done, %zu failed, %zu queued, %zu active%s, %g credits, ETA %s\n", t->done,
            t->total, t->failed, t->queued, t->active, shown < n ? " (not all shown)" : "", t->credits, eta);
    v->drawn = shown + 1;
    fflush(v->out);
}
