/* replay.h - a bounded, thread-safe memory of recently seen keys, to refuse
 * a replayed signed KIE callback: KIE's webhook signature covers only
 * "taskId.timestamp", so the same (taskId, timestamp) pair seen twice while
 * its timestamp is still accepted is a replay. */
#ifndef PPA_REPLAY_H
#define PPA_REPLAY_H

#include <stddef.h>
#include <time.h>

/* A signed callback's X-Webhook-Timestamp is accepted at most this many
 * seconds from now (handlers_results.c), so a seen pair is remembered as long. */
#define WEBHOOK_MAX_SKEW 300

struct replay;

/* Remember at most `capacity` keys, each for `window` seconds past its own
 * timestamp. NULL on out of memory. */
struct replay *replay_new(size_t capacity, long window);
void replay_free(struct replay *r);

enum replay_verdict { REPLAY_FRESH = 0, REPLAY_SEEN = 1, REPLAY_FULL = 2 };

/* Look `key` (copied; at most 200 bytes) up and remember it until ts+window.
 * REPLAY_FRESH: first time, now remembered; REPLAY_SEEN: a replay;
 * REPLAY_FULL: `capacity` keys are all still live, so the key cannot be
 * remembered (the caller refuses it: fail closed, never forget a live key). */
enum replay_verdict replay_check(struct replay *r, const char *key, time_t ts, time_t now);

#endif
