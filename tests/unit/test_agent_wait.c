/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for rf_agent_wait_durable() (agent/progress.c): the blocking wait
 * for the hub's durable sequence. No hub: the agent is started against a
 * port nobody listens on (its thread runs and keeps retrying), and the
 * test plays the loop's part in durable progress by calling
 * rfa_durable_advance(), the function the loop thread's rfa_durable_upto() uses to
 * publish a POSITION. Stop and restart go through the real loop thread.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent_internal.h"
#include "repfabric/agent.h"
#include "repfabric/log.h"
#include "repfabric/sockio.h"

/* "127.0.0.1:PORT" with a port that was free a moment ago: connects fail. */
static void dead_hub(char *buf, size_t len)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd);
	snprintf(buf, len, "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
}

static struct rf_agent *new_agent(void)
{
	struct rf_agent *a = NULL;
	char hub[64];

	dead_hub(hub, sizeof(hub));
	assert_int_equal(rf_agent_new(&a, hub, "wait-test", NULL), 0);
	return a;
}

static uint64_t durable_seq(struct rf_agent *a)
{
	struct rf_agent_status st;

	rf_agent_status(a, &st);
	return st.durable_seq;
}

struct waiter {
	struct rf_agent *a;
	uint64_t seq;
	int timeout_ms;
	atomic_int done; /* 1 once the wait returned */
	int rc;
	pthread_t t;
};

static void *waiter_main(void *arg)
{
	struct waiter *w = arg;

	w->rc = rf_agent_wait_durable(w->a, w->seq, w->timeout_ms);
	atomic_store(&w->done, 1);
	return NULL;
}

static void waiter_start(struct waiter *w, struct rf_agent *a, uint64_t seq, int timeout_ms)
{
	w->a = a;
	w->seq = seq;
	w->timeout_ms = timeout_ms;
	w->rc = 1;
	atomic_init(&w->done, 0);
	assert_int_equal(pthread_create(&w->t, NULL, waiter_main, w), 0);
}

/* Join @w, which must return within @ms (generous: a hang is the bug). */
static int waiter_join(struct waiter *w, int ms)
{
	int64_t end = rf_now_ms() + ms;

	while (!atomic_load(&w->done) && rf_now_ms() < end)
		usleep(1000);
	assert_true(atomic_load(&w->done));
	pthread_join(w->t, NULL);
	return w->rc;
}

/* Not started: what is reached returns 0, anything else -ESHUTDOWN at once. */
static void test_not_started(void **state)
{
	struct rf_agent *a = new_agent();
	int64_t t0;

	(void)state;
	assert_int_equal(rf_agent_wait_durable(a, 0, 0), 0);
	assert_int_equal(rf_agent_wait_durable(a, 0, -1), 0);
	assert_int_equal(rf_agent_wait_durable(a, 1, 0), -ESHUTDOWN);
	t0 = rf_now_ms();
	assert_int_equal(rf_agent_wait_durable(a, 1, 5000), -ESHUTDOWN);
	assert_int_equal(rf_agent_wait_durable(a, 1, -1), -ESHUTDOWN);
	assert_true(rf_now_ms() - t0 < 4000); /* did not sit out the timeout */
	rf_agent_destroy(&a);
}

/* Running, nothing durable: 0 only checks, a positive timeout waits it out. */
static void test_timeout(void **state)
{
	struct rf_agent *a = new_agent();
	int64_t t0, el;

	(void)state;
	assert_int_equal(rf_agent_start(a), 0);
	assert_int_equal(rf_agent_wait_durable(a, 1, 0), -ETIMEDOUT);
	t0 = rf_now_ms();
	assert_int_equal(rf_agent_wait_durable(a, 1, 60), -ETIMEDOUT);
	el = rf_now_ms() - t0;
	assert_true(el >= 59); /* CLOCK_MONOTONIC deadline, whole ms */
	assert_int_equal(rf_agent_wait_durable(a, 0, 60), 0);
	rf_agent_destroy(&a);
}

/* Advancing wakes exactly the waiters whose sequence is reached. */
static void test_advance_wakes(void **state)
{
	struct rf_agent *a = new_agent();
	struct waiter w5, w8, w5b;

	(void)state;
	assert_int_equal(rf_agent_start(a), 0);
	waiter_start(&w5, a, 5, -1);
	waiter_start(&w5b, a, 5, 30000);
	waiter_start(&w8, a, 8, -1);
	usleep(20000);
	rfa_durable_advance(a, 3, 0);
	usleep(20000);
	assert_false(atomic_load(&w5.done));
	assert_false(atomic_load(&w5b.done));
	assert_false(atomic_load(&w8.done));
	rfa_durable_advance(a, 5, 0);
	assert_int_equal(waiter_join(&w5, 10000), 0);
	assert_int_equal(waiter_join(&w5b, 10000), 0);
	usleep(20000);
	assert_false(atomic_load(&w8.done));
	/* never backwards */
	rfa_durable_advance(a, 2, 0);
	assert_int_equal(durable_seq(a), 5);
	rfa_durable_advance(a, 100, 0);
	assert_int_equal(waiter_join(&w8, 10000), 0);
	assert_int_equal(durable_seq(a), 100);
	assert_int_equal(rf_agent_wait_durable(a, 100, 0), 0);
	assert_int_equal(rf_agent_wait_durable(a, 101, 0), -ETIMEDOUT);
	rf_agent_destroy(&a);
}

/* Stop wakes every waiter not reached with -ESHUTDOWN; a restart waits again. */
static void test_stop_and_restart(void **state)
{
	struct rf_agent *a = new_agent();
	struct waiter w[4];

	(void)state;
	assert_int_equal(rf_agent_start(a), 0);
	rfa_durable_advance(a, 10, 0);
	for (int i = 0; i < 4; i++)
		waiter_start(&w[i], a, 11 + (uint64_t)i, i % 2 ? -1 : 60000);
	usleep(20000);
	for (int i = 0; i < 4; i++)
		assert_false(atomic_load(&w[i].done));
	rf_agent_stop(a);
	for (int i = 0; i < 4; i++)
		assert_int_equal(waiter_join(&w[i], 10000), -ESHUTDOWN);
	/* what was reached stays reached */
	assert_int_equal(rf_agent_wait_durable(a, 10, -1), 0);
	assert_int_equal(rf_agent_wait_durable(a, 11, -1), -ESHUTDOWN);
	/* stopped twice: still -ESHUTDOWN, no hang */
	rf_agent_stop(a);
	assert_int_equal(rf_agent_wait_durable(a, 11, 1000), -ESHUTDOWN);
	/* started again: a waiter waits (and times out) instead */
	assert_int_equal(rf_agent_start(a), 0);
	assert_int_equal(rf_agent_wait_durable(a, 11, 20), -ETIMEDOUT);
	waiter_start(&w[0], a, 11, -1);
	usleep(20000);
	assert_false(atomic_load(&w[0].done));
	rfa_durable_advance(a, 11, 0);
	assert_int_equal(waiter_join(&w[0], 10000), 0);
	rf_agent_destroy(&a); /* stops */
}

/*
 * Lost-wakeup hunt: one thread advances the sequence one by one as fast as
 * it can, several waiters wait for every value in turn with no timeout. A
 * wakeup lost between a waiter's test and its sleep leaves it asleep for
 * ever (the join below fails after 60 s).
 */
#define STEPS   20000
#define WAITERS 4

struct chaser {
	struct rf_agent *a;
	uint64_t stride;
	int bad;
	atomic_int done;
	pthread_t t;
};

static void *chaser_main(void *arg)
{
	struct chaser *c = arg;

	for (uint64_t s = c->stride; s <= STEPS; s += c->stride)
		if (rf_agent_wait_durable(c->a, s, -1) != 0)
			c->bad++;
	atomic_store(&c->done, 1);
	return NULL;
}

static void test_no_lost_wakeup(void **state)
{
	struct rf_agent *a = new_agent();
	struct chaser c[WAITERS];
	int64_t end;

	(void)state;
	assert_int_equal(rf_agent_start(a), 0);
	for (int i = 0; i < WAITERS; i++) {
		c[i] = (struct chaser){.a = a, .stride = (uint64_t)i + 1};
		atomic_init(&c[i].done, 0);
		assert_int_equal(pthread_create(&c[i].t, NULL, chaser_main, &c[i]), 0);
	}
	for (uint64_t s = 1; s <= STEPS; s++) {
		rfa_durable_advance(a, s, 0);
		if (s % 64 == 0)
			sched_yield();
	}
	end = rf_now_ms() + 60000;
	for (int i = 0; i < WAITERS; i++) {
		while (!atomic_load(&c[i].done) && rf_now_ms() < end)
			usleep(1000);
		assert_true(atomic_load(&c[i].done));
		pthread_join(c[i].t, NULL);
		assert_int_equal(c[i].bad, 0);
	}
	rf_agent_destroy(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_not_started),    cmocka_unit_test(test_timeout),
	    cmocka_unit_test(test_advance_wakes),  cmocka_unit_test(test_stop_and_restart),
	    cmocka_unit_test(test_no_lost_wakeup),
	};

	rf_log_set_level(RF_LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
