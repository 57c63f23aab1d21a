/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the admission helper (common/admit.c): the pending FIFOs
 * (cap, oldest first, silent before engaged, deadlines) with explicit
 * clocks, and the accept path on a real loopback listener whose process
 * runs out of descriptors (RLIMIT_NOFILE lowered to the next free fd).
 */
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "repfabric/admit.h"

#define N 8

static struct rf_pending conns[N];

static struct rf_admit fresh(unsigned max_pending, int handshake_ms)
{
	struct rf_admit a;

	rf_admit_init(&a, "test", -1, NULL, NULL);
	assert_int_equal(rf_admit_set_limits(&a, handshake_ms, max_pending), 0);
	for (int i = 0; i < N; i++)
		conns[i] = (struct rf_pending){0};
	return a;
}

static void test_limits_checked(void **state)
{
	struct rf_admit a = fresh(4, 1000);

	(void)state;
	assert_int_equal(rf_admit_set_limits(&a, 0, 4), -EINVAL);
	assert_int_equal(rf_admit_set_limits(&a, 1000, 0), -EINVAL);
	assert_int_equal(a.max_pending, 4);
	assert_int_equal(a.handshake_ms, 1000);
}

static void test_cap_evicts_oldest(void **state)
{
	struct rf_admit a = fresh(3, 1000);

	(void)state;
	for (int i = 0; i < 3; i++)
		assert_null(rf_admit_pending_add(&a, &conns[i], 10 + i));
	assert_int_equal(a.npending, 3);
	/* The fourth pushes out the first, then the second. */
	assert_ptr_equal(rf_admit_pending_add(&a, &conns[3], 20), &conns[0]);
	assert_false(conns[0].queued);
	assert_ptr_equal(rf_admit_pending_add(&a, &conns[4], 21), &conns[1]);
	assert_int_equal(a.npending, 3);
	assert_int_equal(a.stats.pending_evicted, 2);
	/* Adding a queued one again changes nothing. */
	assert_null(rf_admit_pending_add(&a, &conns[4], 22));
	assert_int_equal(a.npending, 3);
}

static void test_silent_evicted_before_engaged(void **state)
{
	struct rf_admit a = fresh(3, 1000);

	(void)state;
	for (int i = 0; i < 3; i++)
		rf_admit_pending_add(&a, &conns[i], 10 + i);
	rf_admit_engaged(&a, &conns[0]); /* the oldest began its handshake */
	rf_admit_engaged(&a, &conns[0]); /* twice: no-op */
	assert_ptr_equal(rf_admit_pending_add(&a, &conns[3], 20), &conns[1]);
	assert_ptr_equal(rf_admit_pending_add(&a, &conns[4], 21), &conns[2]);
	assert_ptr_equal(rf_admit_pending_add(&a, &conns[5], 22), &conns[3]);
	/* Engaged out of accept order: the engaged FIFO stays in accept order,
	 * and with no silent one left the oldest engaged one goes first. */
	rf_admit_engaged(&a, &conns[5]);
	rf_admit_engaged(&a, &conns[4]);
	assert_ptr_equal(rf_admit_evict_oldest(&a), &conns[0]);
	assert_ptr_equal(rf_admit_evict_oldest(&a), &conns[4]);
	assert_ptr_equal(rf_admit_evict_oldest(&a), &conns[5]);
	assert_null(rf_admit_evict_oldest(&a));
	assert_int_equal(a.npending, 0);
	assert_int_equal(a.stats.pending_evicted, 6);
}

static void test_deadlines_in_accept_order(void **state)
{
	struct rf_admit a = fresh(8, 100);

	(void)state;
	rf_admit_pending_add(&a, &conns[0], 0);
	rf_admit_pending_add(&a, &conns[1], 50);
	rf_admit_pending_add(&a, &conns[2], 60);
	rf_admit_engaged(&a, &conns[1]);
	assert_null(rf_admit_expired(&a, 99));
	assert_ptr_equal(rf_admit_expired(&a, 100), &conns[0]);
	assert_null(rf_admit_expired(&a, 149));
	/* The engaged one is older than the silent one left. */
	assert_ptr_equal(rf_admit_expired(&a, 1000), &conns[1]);
	assert_ptr_equal(rf_admit_expired(&a, 1000), &conns[2]);
	assert_null(rf_admit_expired(&a, 1000));
	assert_int_equal(a.stats.handshake_timeouts, 3);
}

static void test_proven_leaves_the_queue(void **state)
{
	struct rf_admit a = fresh(2, 100);

	(void)state;
	rf_admit_pending_add(&a, &conns[0], 0);
	rf_admit_pending_add(&a, &conns[1], 0);
	rf_admit_engaged(&a, &conns[1]);
	rf_admit_pending_del(&a, &conns[0]);
	rf_admit_pending_del(&a, &conns[1]);
	rf_admit_pending_del(&a, &conns[1]); /* not queued: no-op */
	assert_int_equal(a.npending, 0);
	assert_null(rf_admit_expired(&a, 1000));
	assert_null(rf_admit_pending_add(&a, &conns[2], 0));
	assert_int_equal(a.stats.handshake_timeouts + a.stats.pending_evicted, 0);
	rf_admit_refused_full(&a);
	assert_int_equal(a.stats.refused_full, 1);
}

/* ---- the accept path on a real socket ---------------------------------- */

struct watch_log {
	int calls;
	bool on;
};

static int watch(void *ctx, bool on)
{
	struct watch_log *w = ctx;

	w->calls++;
	w->on = on;
	return 0;
}

static int listen_loopback(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 8), 0);
	return fd;
}

static int connect_to(int lfd)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &sl), 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sl), 0);
	return fd;
}

static void test_accept_out_of_descriptors(void **state)
{
	struct watch_log w = {0};
	struct rf_admit a;
	struct rlimit saved, low;
	int lfd = listen_loopback(), cfd, fd, next;

	(void)state;
	rf_admit_init(&a, "test listener", lfd, watch, &w);
	assert_int_equal(rf_admit_accept(&a, 0), -EAGAIN); /* nothing queued */
	assert_int_equal(w.calls, 0);
	cfd = connect_to(lfd);

	/* No descriptor left: the next one the kernel would hand out is the limit. */
	next = dup(0);
	assert_true(next >= 0);
	close(next);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
	low = saved;
	low.rlim_cur = (rlim_t)next;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	fd = rf_admit_accept(&a, 1000);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);

	assert_int_equal(fd, -EMFILE);
	assert_int_equal(a.stats.accept_failed[RF_ACCEPT_FDS], 1);
	assert_true(a.paused);
	assert_int_equal(w.calls, 1);
	assert_false(w.on);
	/* Paused: no accept4 at all (a spinning loop would count more failures). */
	for (int i = 0; i < 1000; i++)
		assert_int_equal(rf_admit_accept(&a, 1000 + i / 100), -EAGAIN);
	assert_int_equal(a.stats.accept_failed[RF_ACCEPT_FDS], 1);
	rf_admit_tick(&a, 1000 + RF_ADMIT_RETRY_MS - 1);
	assert_true(a.paused);
	assert_int_equal(w.calls, 1);
	rf_admit_tick(&a, 1000 + RF_ADMIT_RETRY_MS);
	assert_false(a.paused);
	assert_int_equal(w.calls, 2);
	assert_true(w.on);
	/* The connection waited in the backlog and is accepted now. */
	fd = rf_admit_accept(&a, 1200);
	assert_true(fd >= 0);
	assert_int_equal(a.stats.accept_failed[RF_ACCEPT_FDS], 1);
	assert_int_equal(a.stats.accept_failed[RF_ACCEPT_MEMORY], 0);
	assert_int_equal(a.stats.accept_failed[RF_ACCEPT_OTHER], 0);
	close(fd);
	close(cfd);
	close(lfd);
}

static void test_accept_other_error_does_not_pause(void **state)
{
	struct watch_log w = {0};
	struct rf_admit a;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	(void)state;
	/* A socket that is not listening: accept4 fails with EINVAL. */
	rf_admit_init(&a, "not listening", fd, watch, &w);
	assert_int_equal(rf_admit_accept(&a, 0), -EINVAL);
	assert_int_equal(a.stats.accept_failed[RF_ACCEPT_OTHER], 1);
	assert_false(a.paused);
	assert_int_equal(w.calls, 0);
	assert_string_equal(rf_accept_reason_name(RF_ACCEPT_FDS), "descriptors");
	assert_string_equal(rf_accept_reason_name(RF_ACCEPT_MEMORY), "memory");
	assert_string_equal(rf_accept_reason_name(RF_ACCEPT_OTHER), "other");
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_limits_checked),
	    cmocka_unit_test(test_cap_evicts_oldest),
	    cmocka_unit_test(test_silent_evicted_before_engaged),
	    cmocka_unit_test(test_deadlines_in_accept_order),
	    cmocka_unit_test(test_proven_leaves_the_queue),
	    cmocka_unit_test(test_accept_out_of_descriptors),
	    cmocka_unit_test(test_accept_other_error_does_not_pause),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
