/* SPDX-License-Identifier: MIT */
/*
 * A byte-range lock: overlapping ranges are granted one at a time, in the
 * order they were requested (FIFO among overlapping requests, so a waiting
 * sync read is not starved by a stream of writes); disjoint ranges are
 * held at the same time.
 *
 * A holder is identified by its range: held ranges never overlap, so
 * rfa_rl_unlock() finds the holder by (off, len). Empty ranges are not
 * locked. Functions return 0 or -errno.
 */
#ifndef REPFABRIC_AGENT_RANGELOCK_H
#define REPFABRIC_AGENT_RANGELOCK_H

#include <pthread.h>
#include <stdint.h>

struct rfa_rl_entry;

struct rfa_rangelock {
	pthread_mutex_t mu;        /* protects the list */
	struct rfa_rl_entry *head; /* held and waiting entries, in request order */
	struct rfa_rl_entry *tail;
};

int rfa_rl_init(struct rfa_rangelock *rl);
/* The lock must be free (no holder, no waiter). */
void rfa_rl_destroy(struct rfa_rangelock *rl);

/*
 * Wait until [off, off + len) overlaps no range requested earlier and still
 * held or waiting, then hold it. Returns 0, -EINVAL (len 0 or the range
 * wraps) or -ENOMEM.
 */
int rfa_rl_lock(struct rfa_rangelock *rl, uint64_t off, uint64_t len);

/*
 * Release the held range [off, off + len). Returns 0, or -ENOENT when no
 * such range is held (a caller bug; logged).
 */
int rfa_rl_unlock(struct rfa_rangelock *rl, uint64_t off, uint64_t len);

#endif /* REPFABRIC_AGENT_RANGELOCK_H */
