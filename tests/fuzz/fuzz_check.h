/* fuzz_check.h - the one assertion of the fuzz targets.
 *
 *   FUZZ_CHECK(cond, fmt, ...)  when cond is false, print "fuzz check failed
 *                               file:line: <message>" and abort(), which
 *                               libFuzzer reports as a crash with the input.
 * Include from one target file; the targets share nothing else. */
#ifndef FUZZ_CHECK_H
#define FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond, ...)                                               \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "fuzz check failed %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                                   \
            fputc('\n', stderr);                                            \
            abort();                                                        \
        }                                                                   \
    } while (0)

#endif
