/* TEMPORARY (not committed): replaced by the s3ts branch. */
#include "taskstore.h"
#include <stdio.h>
const struct taskstore_ops taskstore_s3_ops = {.name = "s3"};
struct taskstore *taskstore_s3_open(const struct config *cfg, struct upstream *up, char *err, size_t cap)
{
    (void)cfg;
    (void)up;
    snprintf(err, cap, "the S3 task store is not built yet");
    return NULL;
}
