/* ratelimit.h - token buckets per client key (IP), thread-safe, bounded:
 * at most RATELIMIT_SLOTS clients are tracked; the least recently seen of a
 * probe window is forgotten first. */
#ifndef PPA_RATELIMIT_H
#define PPA_RATELIMIT_H

#define RATELIMIT_SLOTS 4096

struct ratelimit;

/* `per_minute` requests per minute, bursts up to the same number.
 * per_minute == 0 returns NULL (no limit); check with ratelimit_take(NULL,...). */
struct ratelimit *ratelimit_new(long per_minute);
void ratelimit_free(struct ratelimit *rl);
/* Take one token for `key` at time `now` (seconds). 0 when allowed, else
 * the whole seconds until a token is available (>= 1). NULL rl allows all. */
long ratelimit_take(struct ratelimit *rl, const char *key, double now);

#endif
