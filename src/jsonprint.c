/* jsonprint.c - see jsonprint.h. */
#include "jsonprint.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Below 1e15 cJSON's "%1.15g" prints an integer's plain digits (and its
 * sscanf check passes); from 1e15 on it prints "1e+15" and the like, which
 * is left to cJSON, as is -0 (printed "-0"). */
#define PLAIN_INT_LIMIT 1e15

/* Integral numbers under `item` become raw items with their digits; 0, or
 * -1 on out of memory (the tree stays valid: what was changed prints the
 * same). */
static int raw_integers(cJSON *item)
{
    for (; item; item = item->next) {
        if (cJSON_IsNumber(item)) {
            double d = item->valuedouble;
            char digits[24];
            char *copy;
            size_t n;

            if (!isfinite(d) || fabs(d) >= PLAIN_INT_LIMIT || d != floor(d) || (d == 0 && signbit(d)))
                continue;
            snprintf(digits, sizeof digits, "%lld", (long long)d);
            n = strlen(digits) + 1;
            copy = cJSON_malloc(n);
            if (!copy)
                return -1;
            memcpy(copy, digits, n);
            item->valuestring = copy;
            item->type = (item->type & ~0xFF) | cJSON_Raw; /* keeps the flags on the key */
        } else if ((cJSON_IsObject(item) || cJSON_IsArray(item)) && raw_integers(item->child) != 0) {
            return -1;
        }
    }
    return 0;
}

char *jsonprint_consume(cJSON *root)
{
    if (!root)
        return NULL;
    if (raw_integers(root) != 0)
        return NULL;
    return cJSON_PrintUnformatted(root);
}
