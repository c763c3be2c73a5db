/* cli_generate.h - `product-photo-api generate PHOTO --prompt TEXT`: upload
 * -> generate -> poll status -> download the result, in one command. */
#ifndef PPA_CLI_GENERATE_H
#define PPA_CLI_GENERATE_H

#include <stdio.h>

/* argv[0] is "generate". Progress goes to stderr, the saved file's path to
 * stdout. Returns the exit code: 0 saved, 1 failed, 2 bad usage. */
int cli_generate(int argc, char **argv);

void cli_generate_usage(FILE *out);

#endif
