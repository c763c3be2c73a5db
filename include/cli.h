/* cli.h - the command-line clients of a running server, subcommands of the
 * same binary: `generate` (photo -> studio shot, cli_generate.h) and `tasks`
 * (the server's recent tasks, cli_tasks.h). cli.c
 * dispatches and holds what the subcommands share (cli_common.h). */
#ifndef PPA_CLI_H
#define PPA_CLI_H

#include <stdio.h>

/* 1 when `cmd` (argv[1] of the binary) names a client subcommand. */
int cli_is_command(const char *cmd);

/* Run the subcommand argv[0] ("generate"...). Blocks until done. Returns the
 * process exit code: 0 success, 1 any failure, 2 bad usage. */
int cli_run(int argc, char **argv);

/* Print every subcommand's help text to `out`. */
void cli_usage(FILE *out);

#endif
