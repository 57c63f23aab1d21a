/* SPDX-License-Identifier: MIT */
/* Unit tests for the agent's byte-range lock (agent/rangelock.c). */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "rangelock.h"
#include "repfabric/log.h"

struct locker {
	struct rfa_rangelock *rl;
	uint64_t off, len;
	atomic_int got;   /* 1 once the lock is held */
	atomic_int order; /* global acquisition order */
	atomic_int release;
	pthread_t t;
};

static atomic_int order_counter;

static void *locker_main(void *arg)
{
	struct locker *l = arg;

	if (rfa_rl_lock(l->rl, l->off, l->len))
		return NULL;
	atomic_store(&l->order, atomic_fetch_add(&order_counter, 1) + 1);
	atomic_store(&l->got, 1);
	while (!atomic_load(&l->release))
		usleep(1000);
	rfa_rl_unlock(l->rl, l->off, l->len);
	return NULL;
}

static void start(struct locker *l, struct rfa_rangelock *rl, uint64_t off, uint64_t len)
{
	l->rl = rl;
	l->off = off;
	l->len = len;
	atomic_init(&l->got, 0);
	atomic_init(&l->order, 0);
	atomic_init(&l->release, 0);
	assert_int_equal(pthread_create(&l->t, NULL, locker_main, l), 0);
}

/* Wait up to @ms for @l to hold its range. */
static bool got_within(struct locker *l, int ms)
{
	for (int i = 0; i < ms; i++) {
		if (atomic_load(&l->got))
			return true;
		usleep(1000);
	}
	return atomic_load(&l->got);
}

static void finish(struct locker *l)
{
	atomic_store(&l->release, 1);
	pthread_join(l->t, NULL);
}

static void test_overlapping_serialise(void **state)
{
	struct rfa_rangelock rl;
	struct locker a, b;

	assert_int_equal(rfa_rl_init(&rl), 0);
	start(&a, &rl, 0, 100);
	assert_true(got_within(&a, 2000));
	start(&b, &rl, 99, 10); /* one byte of overlap */
	assert_false(got_within(&b, 50));
	finish(&a);
	assert_true(got_within(&b, 2000));
	finish(&b);
	rfa_rl_destroy(&rl);
}

static void test_disjoint_parallel(void **state)
{
	struct rfa_rangelock rl;
	struct locker a, b, c;

	assert_int_equal(rfa_rl_init(&rl), 0);
	start(&a, &rl, 0, 100);
	assert_true(got_within(&a, 2000));
	start(&b, &rl, 100, 100); /* adjacent, not overlapping */
	start(&c, &rl, 1ull << 40, 4096);
	assert_true(got_within(&b, 2000));
	assert_true(got_within(&c, 2000));
	finish(&a);
	finish(&b);
	finish(&c);
	rfa_rl_destroy(&rl);
}

/*
 * FIFO among overlapping requests: a waiter is not overtaken by a later
 * request that overlaps it, even if that one overlaps no holder.
 */
static void test_fifo_no_starvation(void **state)
{
	struct rfa_rangelock rl;
	struct locker a, b, d, e;

	atomic_store(&order_counter, 0);
	assert_int_equal(rfa_rl_init(&rl), 0);
	start(&a, &rl, 0, 100);
	assert_true(got_within(&a, 2000));
	start(&b, &rl, 50, 100); /* waits for a: [50, 150) */
	assert_false(got_within(&b, 30));
	start(&d, &rl, 120, 10); /* overlaps only the waiting b */
	assert_false(got_within(&d, 30));
	start(&e, &rl, 200, 10); /* overlaps nothing */
	assert_true(got_within(&e, 2000));
	finish(&a);
	assert_true(got_within(&b, 2000));
	assert_false(got_within(&d, 30));
	finish(&b);
	assert_true(got_within(&d, 2000));
	assert_true(atomic_load(&b.order) < atomic_load(&d.order));
	finish(&d);
	finish(&e);
	rfa_rl_destroy(&rl);
}

static void quiet(void *ctx, enum rf_log_level level, const char *line)
{
}

static void test_errors(void **state)
{
	struct rfa_rangelock rl;

	rf_log_set_sink(quiet, NULL); /* the unlock-not-held errors are expected */
	assert_int_equal(rfa_rl_init(&rl), 0);
	assert_int_equal(rfa_rl_lock(&rl, 0, 0), -EINVAL);
	assert_int_equal(rfa_rl_lock(&rl, UINT64_MAX - 1, 10), -EINVAL);
	assert_int_equal(rfa_rl_lock(&rl, 10, 10), 0);
	assert_int_equal(rfa_rl_unlock(&rl, 10, 11), -ENOENT);
	assert_int_equal(rfa_rl_unlock(&rl, 10, 10), 0);
	assert_int_equal(rfa_rl_unlock(&rl, 10, 10), -ENOENT);
	rfa_rl_destroy(&rl);
	rf_log_set_sink(NULL, NULL);
}

/* ---- many threads ------------------------------------------------------ */

#define SPACE   4096
#define THREADS 8
#define ITERS   1500

static struct rfa_rangelock stress_rl;
static atomic_int owner[SPACE]; /* who holds each byte; 0: nobody */
static atomic_int violations;

static void *stress_main(void *arg)
{
	int id = (int)(intptr_t)arg;
	unsigned seed = (unsigned)id * 7919u;

	for (int i = 0; i < ITERS; i++) {
		uint64_t off = (uint64_t)(rand_r(&seed) % SPACE);
		uint64_t len = 1 + (uint64_t)(rand_r(&seed) % 64);

		if (off + len > SPACE)
			len = SPACE - off;
		if (rfa_rl_lock(&stress_rl, off, len))
			atomic_fetch_add(&violations, 1);
		for (uint64_t b = off; b < off + len; b++)
			if (atomic_exchange(&owner[b], id) != 0)
				atomic_fetch_add(&violations, 1);
		if (i % 64 == 0)
			sched_yield();
		for (uint64_t b = off; b < off + len; b++)
			if (atomic_exchange(&owner[b], 0) != id)
				atomic_fetch_add(&violations, 1);
		if (rfa_rl_unlock(&stress_rl, off, len))
			atomic_fetch_add(&violations, 1);
	}
	return NULL;
}

static void test_many_threads(void **state)
{
	pthread_t t[THREADS];

	assert_int_equal(rfa_rl_init(&stress_rl), 0);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(
		    pthread_create(&t[i], NULL, stress_main, (void *)(intptr_t)(i + 1)), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(atomic_load(&violations), 0);
	rfa_rl_destroy(&stress_rl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_overlapping_serialise), cmocka_unit_test(test_disjoint_parallel),
	    cmocka_unit_test(test_fifo_no_starvation),    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_many_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
