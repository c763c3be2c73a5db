/* cli.h - `product-photo-api generate`: the one-command client of a running
 * server (upload -> generate -> poll status -> download the result). */
#ifndef PPA_CLI_H
#define PPA_CLI_H

#include <stdio.h>

/* Run the subcommand; argv[0] is "generate". Blocks until done. Progress goes
 * to stderr, the saved file's path to stdout. Returns the process exit code:
 * 0 success, 1 any failure (server, network, task, file), 2 bad usage. */
int cli_generate(int argc, char **argv);

/* Print the subcommand's help text to `out`. */
void cli_usage(FILE *out);

#endif
