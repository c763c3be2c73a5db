/* taskcache.h - a bounded, thread-safe memory of KIE tasks: the final
 * (success/fail) recordInfo answer, whether the result should be kept, and
 * the name of our stable copy of the result. When full, the least recently
 * touched entry is forgotten (polling KIE still works for it). */
#ifndef PPA_TASKCACHE_H
#define PPA_TASKCACHE_H

#include <stddef.h>
#include <time.h>

struct taskcache;

struct taskcache *taskcache_new(size_t capacity);
void taskcache_free(struct taskcache *tc);

/* Final answers are kept within a byte budget as well as an entry count
 * (hostile callbacks were 60 KB each): larger answers are not cached, and
 * the least recently touched go first when the budget is used up. */
#define TASKCACHE_MAX_ENTRY_BYTES (64 * 1024)
#define TASKCACHE_MAX_BYTES (16 * 1024 * 1024)

/* Remember the final answer (JSON text, copied) of a finished task. The
 * first one wins: a later answer (another callback, another poll) never
 * replaces it, so a finished task's resultUrls never change. 1 when stored,
 * 0 when an earlier final answer was kept (too large, or out of memory). */
int taskcache_put_final(struct taskcache *tc, const char *task_id, const char *json_text);
/* Bytes held by final answers (for tests and /healthz). */
size_t taskcache_bytes(struct taskcache *tc);
/* A malloc'd copy of the final answer, or NULL. Caller frees. */
char *taskcache_get_final(struct taskcache *tc, const char *task_id);
/* 1 when a final answer is held for the task (no copy made). */
int taskcache_has_final(struct taskcache *tc, const char *task_id);

/* Right after createTask KIE may answer "recordInfo is null" for a moment:
 * /status and /results report a task this server created that recently as
 * still waiting rather than unknown. */
#define TASK_NEW_GRACE_SECONDS 30

/* This server created the task at `now` (KIE may not know it for a moment). */
void taskcache_note_created(struct taskcache *tc, const char *task_id, time_t now);
/* 1 when this server created the task less than `seconds` before `now`. */
int taskcache_created_within(struct taskcache *tc, const char *task_id, time_t now, long seconds);

/* keep_result was asked for this task. */
void taskcache_set_keep(struct taskcache *tc, const char *task_id);
/* Claim the right to start copying the result: 1 when the caller should
 * start (keep asked, no copy yet, none running), else 0. */
int taskcache_claim_copy(struct taskcache *tc, const char *task_id, int force);
/* The copy finished: `stable_name` ("results/<id>.png") or NULL on failure. */
void taskcache_copy_done(struct taskcache *tc, const char *task_id, const char *stable_name);
/* 1 and the stable name when our copy exists. */
int taskcache_get_stable(struct taskcache *tc, const char *task_id, char *out, size_t cap);

/* What we last wrote to the task store for this task, as a short
 * fingerprint: 1 when `fp` differs (and is remembered now), 0 when the same. */
int taskcache_changed(struct taskcache *tc, const char *task_id, const char *fp);

#endif
