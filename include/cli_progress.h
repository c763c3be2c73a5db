/* cli_progress.h - what a batch shows while it runs, on stderr. On a
 * terminal: one live line per active photo (name, state, elapsed) and a total
 * line (done / failed / queued, credits spent, ETA), redrawn in place with
 * ANSI escapes; messages scroll above them. Otherwise: one plain line per
 * event and no escapes. Not thread-safe: the batch calls it under its lock. */
#ifndef PPA_CLI_PROGRESS_H
#define PPA_CLI_PROGRESS_H

#include <stddef.h>
#include <stdio.h>

struct cli_view {
    FILE *out;    /* stderr */
    int tty;      /* redraw in place */
    int quiet;    /* events only when they are failures */
    size_t drawn; /* lines of the live block now on screen */
};

struct cli_row {
    const char *name;
    const char *state;
    double elapsed;
};

struct cli_totals {
    size_t total, done, failed, queued, active;
    double credits; /* spent in this run */
    double eta_s;   /* < 0 unknown */
};

/* An event line ("mug.jpg: generating"). On a terminal it goes above the
 * live block (erased first, drawn again by the next cli_view_draw). */
void cli_view_event(struct cli_view *v, int failure, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Redraw the live block (terminal only; nothing otherwise). */
void cli_view_draw(struct cli_view *v, const struct cli_row *rows, size_t n, const struct cli_totals *t);
/* Erase the live block for good (before the summary). */
void cli_view_clear(struct cli_view *v);
/* "12 s", "3 m 05 s", "1 h 02 m". */
void cli_duration(double s, char *out, size_t cap);

#endif
