/* taskstore.c - see taskstore.h: backend selection and shared helpers. */
#include "taskstore.h"
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct taskstore *taskstore_open(const struct config *cfg, struct upstream *up, char *err, size_t cap)
{
    char path[4096];
    int n;

    if (cfg->use_s3)
        return taskstore_s3_open(cfg, up, err, cap);
    n = snprintf(path, sizeof path, "%s/tasks.db", cfg->upload_dir);
    if (n < 0 || (size_t)n >= sizeof path) {
        snprintf(err, cap, "UPLOAD_DIR is too long for the task store's path");
        return NULL;
    }
    return taskstore_sqlite_open(path, err, cap);
}

void taskstore_close(struct taskstore *s)
{
    if (s && s->ops && s->ops->destroy)
        s->ops->destroy(s);
}

void taskstore_op_clear(struct taskstore_op *op)
{
    free(op->text);
    op->text = NULL;
    for (size_t i = 0; i < op->n_records; i++)
        free(op->records[i]);
    free(op->records);
    op->records = NULL;
    op->n_records = 0;
}

int taskstore_key_valid(const char *key)
{
    size_t n = key ? strlen(key) : 0;

    if (n == 0 || n > 255 || key[0] == ' ' || key[n - 1] == ' ')
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)key[i] < 0x20 || (unsigned char)key[i] > 0x7e)
            return 0;
    return 1;
}
