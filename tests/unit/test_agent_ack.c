/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for acknowledgement levels (rf_agent_write_ack, agent/progress.c;
 * docs/DURABILITY.md). No hub and no loop thread: the test plays the loop's
 * part, marking the volume attached and the agent running, publishing
 * durable progress with rfa_durable_advance() and ending a link epoch as
 * rfa_posts_to_resend() does, so every rule is checked without timing
 * races: durable waits, landed waits (posts and LANDED played by the test
 * too), the fallback to async (not queued, timeout, link broken), the
 * return once caught up, and what needs no wait.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent_internal.h"
#include "repfabric/agent.h"
#include "repfabric/log.h"

#define SIZE (1u << 20)

static char path[64];

static int zero_read(void *ctx, void *buf, uint32_t len, uint64_t off)
{
	(void)ctx;
	(void)off;
	memset(buf, 0, len);
	return 0;
}

static struct rf_agent *agent_with_volume(struct rf_agent_vol **v, enum rf_agent_ack level,
                                          int timeout_ms)
{
	struct rf_agent *a = NULL;
	struct rf_agent_vol_conf conf = {
	    .name = "vm1-disk0", .size = SIZE, .vol_id = 1, .bitmap_path = path, .read = zero_read};

	snprintf(path, sizeof(path), "/tmp/rf-ack-test-%d.bitmap", (int)getpid());
	unlink(path);
	assert_int_equal(rf_agent_new(&a, "127.0.0.1:1", "ack-test", NULL), 0);
	assert_int_equal(rf_agent_add_volume(a, &conf, v), 0);
	assert_int_equal(rf_agent_vol_set_ack(*v, level, timeout_ms, 0), 0);
	return a;
}

/* The loop's part: the hub accepted the volume and the ring is attached. */
static void attach(struct rf_agent *a, struct rf_agent_vol *v)
{
	pthread_mutex_lock(&a->lock);
	v->attached = true;
	a->running = true;
	pthread_mutex_unlock(&a->lock);
}

/* Drop the queued records (the loop would post them) and tear down. */
static void done(struct rf_agent **a)
{
	pthread_mutex_lock(&(*a)->lock);
	while ((*a)->qhead) {
		struct rfa_rec *r = (*a)->qhead;

		(*a)->qhead = r->next;
		free(r->buf);
		free(r);
	}
	(*a)->qtail = NULL;
	(*a)->running = false;
	pthread_mutex_unlock(&(*a)->lock);
	rf_agent_destroy(a);
	unlink(path);
}

static struct rf_agent_ticket write4k(struct rf_agent_vol *v, uint64_t off)
{
	static char buf[4096];

	assert_int_equal(rf_agent_write_begin(v, off, sizeof(buf)), 0);
	return rf_agent_write_end(v, off, sizeof(buf), buf, RF_AGENT_WRITE, true);
}

static void status(struct rf_agent_vol *v, struct rf_agent_vol_status *st)
{
	assert_int_equal(rf_agent_vol_status(v, st), 0);
}

static void test_levels_checked(void **state)
{
	struct rf_agent_vol *v;
	struct rf_agent *a = agent_with_volume(&v, RF_AGENT_ACK_ASYNC, 1000);

	(void)state;
	assert_int_equal(rf_agent_vol_set_ack(v, (enum rf_agent_ack)3, 1000, 0), -EINVAL);
	assert_int_equal(rf_agent_vol_set_ack(v, RF_AGENT_ACK_LANDED, 1000, 0), 0);
	assert_int_equal(rf_agent_vol_set_ack(v, RF_AGENT_ACK_DURABLE, 0, 0), -EINVAL);
	assert_int_equal(rf_agent_vol_set_ack(v, RF_AGENT_ACK_DURABLE, 1000, -1), -EINVAL);
	done(&a);
}

/* async never waits, not even for a write that could not be queued. */
static void test_async_never_waits(void **state)
{
	struct rf_agent_vol_status st;
	struct rf_agent_vol *v;
	struct rf_agent *a = agent_with_volume(&v, RF_AGENT_ACK_ASYNC, 1000);
	struct rf_agent_ticket t;

	(void)state;
	t = write4k(v, 0); /* not attached: not queued */
	assert_int_equal(t.id, 0);
	assert_true(t.must_ack);
	assert_int_equal(rf_agent_write_ack(v, &t), 0);
	attach(a, v);
	t = write4k(v, 4096);
	assert_int_equal(t.id, 1);
	assert_int_equal(rf_agent_write_ack(v, &t), 0);
	status(v, &st);
	assert_false(st.ack_fallback);
	assert_int_equal(st.ack_waits, 0);
	done(&a);
}

struct publisher {
	struct rf_agent *a;
	uint64_t ticket;
	pthread_t t;
};

static void *publish_later(void *arg)
{
	struct publisher *p = arg;

	usleep(20000);
	rfa_durable_advance(p->a, 100, p->ticket);
	return NULL;
}

/* durable: the write waits until its ticket is durable, then completes. */
static void test_durable_waits_for_its_ticket(void **state)
{
	struct rf_agent_vol_status st;
	struct rf_agent_vol *v;
	struct rf_agent *a = agent_with_volume(&v, RF_AGENT_ACK_DURABLE, 60000);
	struct rf_agent_ticket t1, t2;
	struct publisher p;

	(void)state;
	attach(a, v);
	t1 = write4k(v, 0);
	t2 = write4k(v, 8192);
	assert_int_equal(t1.id, 1);
	assert_int_equal(t2.id, 2);
	/* Ticket 1 durable: the first write is acknowledged, not the second yet. */
	rfa_durable_advance(a, 5, 1);
	assert_int_equal(rf_agent_write_ack(v, &t1), 0);
	p = (struct publisher){.a = a, .ticket = 2};
	assert_int_equal(pthread_create(&p.t, NULL, publish_later, &p), 0);
	assert_int_equal(rf_agent_write_ack(v, &t2), 0); /* woken by the publisher */
	pthread_join(p.t, NULL);
	status(v, &st);
	assert_int_equal(st.ack, RF_AGENT_ACK_DURABLE);
	assert_int_equal(st.ack_waits, 2);
	assert_false(st.ack_fallback);
	assert_int_equal(st.ack_fallbacks, 0);
	done(&a);
}

/* A write that could not be queued falls back at once; the next ones are
 * async until the volume caught up, then durable again. */
static void test_not_queued_falls_back_until_caught_up(void **state)
{
	struct rf_agent_vol_status st;
	struct rf_agent_vol *v;
	struct rf_agent *a = agent_with_volume(&v, RF_AGENT_ACK_DURABLE, 60000);
	struct rf_agent_ticket t;

	(void)state;
	t = write4k(v, 0); /* not attached */
	assert_int_equal(rf_agent_write_ack(v, &t), -EAGAIN);
	status(v, &st);
	assert_true(st.ack_fallback);
	assert_int_equal(st.ack_fallbacks, 1);
	t = write4k(v, 4096);
	assert_int_equal(rf_agent_write_ack(v, &t), 0); /* async now: no wait */
	status(v, &st);
	assert_int_equal(st.ack_fallbacks, 1);
	/* Not caught up while detached, or while something waits for a resend. */
	rfa_ack_check_caught_up(v, 0, 4096);
	status(v, &st);
	assert_true(st.ack_fallback);
	attach(a, v);
	rfa_ack_check_caught_up(v, 65536, 4096);
	status(v, &st);
	assert_true(st.ack_fallback);
	rfa_ack_check_caught_up(v, 0, 4096);
	status(v, &st);
	assert_false(st.ack_fallback);
	/* Durable again: a queued write waits for its ticket. */
	t = write4k(v, 8192);
	assert_int_equal(t.id, 1);
	rfa_durable_advance(a, 9, t.id);
	assert_int_equal(rf_agent_write_ack(v, &t), 0);
	status(v, &st);
	assert_int_equal(st.ack_waits, 1);
	done(&a);
}

/* No answer within the timeout: fall back, and the write completes. */
static void test_timeout_falls_back(void **state)
{
	struct rf_agent_vol_status st;
	struct rf_agent_vol *v;
	struct rf_agent *a = agent_with_volume(&v, RF_AGENT_ACK_DURABLE, 50);
	struct rf_agent_ticket t;

	(void)state;
	attach(a, v);
	t = write4k(v, 0);
	assert_int_equal(rf_agent_write_ack(v, &t), -ETIMEDOUT);
	status(v, &st);
	assert_true(st.ack_fallback);
	assert_int_equal(st.ack_fallbacks, 1);
	assert_int_equal(st.ack_waits, 0);
	/* Not caught up while the write that timed out is not durable. */
	rfa_ack_check_caught_up(v, 0, 4096);
	status(v, &st);
	assert_true(st.ack_fallback);
	rfa_durable_advance(a, 4, t.id);
	rfa_ack_check_caught_up(v, 0, 4096);
	status(v, &st);
	assert_false(st.ack_fallback);
	done(&a);
}

/* A write whose ticket died with the link is never durable as that ticket:
 * with nothing dirty left (it was resent and made durable), an idle volume
 * is caught up all the same; while anything is dirty it is not. */
static void test_idle_catches_up(void **state)
{
	struct rf_agent_vol_status st;
	struct rf_agent_vol *v;
	struct rf_agent *a = agent_with_volume(&v, RF_AGENT_ACK_DURABLE, 60000);
	struct rf_agent_ticket t;

	(void)state;
	attach(a, v);
	t = write4k(v, 0);
	rfa_ack_epoch_end(a);
	assert_int_equal(rf_agent_write_ack(v, &t), -ECONNRESET);
	rfa_ack_check_caught_up(v, 0, 4096);
	status(v, &st);
	assert_true(st.ack_fallback);
	rfa_ack_check_caught_up(v, 0, 0);
	status(v, &st);
	assert_false(st.ack_fallback);
	done(&a);
}

/* A link epoch ends (records not durable became resends): tickets durable
 * by then are acknowledged, later ones of that epoch never are, even when
 * a higher ticket of the new epoch becomes durable. */
static void test_link_break(void **state)
{
	struct rf_agent_vol_status st;
	struct rf_agent_vol *v;
	struct rf_agent *a = agent_with_volume(&v, RF_AGENT_ACK_DURABLE, 60000);
	struct rf_agent_ticket t1, t2, t3;

	(void)state;
	attach(a, v);
	t1 = write4k(v, 0);
	t2 = write4k(v, 4096);
	rfa_durable_advance(a, 3, t1.id);
	/* rfa_posts_to_resend()'s epoch step, without its loop-private part. */
	rfa_ack_epoch_end(a);
	t3 = write4k(v, 8192);
	assert_int_equal(t3.epoch, t1.epoch + 1);
	rfa_durable_advance(a, 9, t3.id); /* t3 > t2: must not acknowledge t2 */
	assert_int_equal(rf_agent_write_ack(v, &t1), 0);
	assert_int_equal(rf_agent_write_ack(v, &t2), -ECONNRESET);
	status(v, &st);
	assert_true(st.ack_fallback);
	rfa_ack_check_caught_up(v, 0, 4096);
	assert_int_equal(rf_agent_write_ack(v, &t3), 0);
	/* Two epochs later nothing of the old one is acknowledged. */
	pthread_mutex_lock(&a->lock);
	a->link_epoch++;
	pthread_mutex_unlock(&a->lock);
	assert_int_equal(rf_agent_write_ack(v, &t1), -ECONNRESET);
	done(&a);
}

/* The loop's part: record @seq (ending queued write @ticket, 0: a piece)
 * was posted. */
static void posted(struct rf_agent *a, uint64_t seq, uint64_t ticket)
{
	struct rfa_conn *c = &a->c;
	struct rfa_post *p = calloc(1, sizeof(*p));

	assert_non_null(p);
	p->seq = seq;
	p->ticket = ticket;
	p->sent = true;
	rfa_posts_append(c, p);
}

static void posts_free(struct rf_agent *a)
{
	struct rfa_conn *c = &a->c;

	while (c->phead) {
		struct rfa_post *p = c->phead;

		c->phead = p->next;
		free(p);
	}
	c->ptail = c->pland = NULL;
}

struct lander {
	struct rf_agent *a;
	uint64_t seq;
	pthread_t t;
};

static void *land_later(void *arg)
{
	struct lander *l = arg;

	usleep(20000);
	rfa_landed_upto(l->a, l->seq);
	return NULL;
}

/*
 * landed: a write completes once LANDED covers the record that ends it
 * (LANDED is inclusive, by sequence; pieces carry no ticket); durable
 * implies landed; a write that landed before a link break stays
 * acknowledged, one that had not falls back.
 */
static void test_landed_waits_for_landed(void **state)
{
	struct rf_agent_vol_status st;
	struct rf_agent_vol *v;
	struct rf_agent *a = agent_with_volume(&v, RF_AGENT_ACK_LANDED, 60000);
	struct rf_agent_ticket t1, t2, t3, t4, t5;
	struct lander l;

	(void)state;
	assert_int_equal(atomic_load(&a->landed_vols), 1);
	attach(a, v);
	t1 = write4k(v, 0);
	t2 = write4k(v, 4096);
	t3 = write4k(v, 8192);
	posted(a, 10, t1.id);
	posted(a, 11, 0); /* t2 in two pieces */
	posted(a, 12, t2.id);
	posted(a, 13, t3.id);
	rfa_landed_upto(a, 11); /* t1's record and t2's first piece */
	assert_int_equal(rf_agent_write_ack(v, &t1), 0);
	l = (struct lander){.a = a, .seq = 12};
	assert_int_equal(pthread_create(&l.t, NULL, land_later, &l), 0);
	assert_int_equal(rf_agent_write_ack(v, &t2), 0); /* woken by LANDED 12 */
	pthread_join(l.t, NULL);
	/* Durable implies landed: t3 needs no LANDED. */
	rfa_durable_advance(a, 14, t3.id);
	assert_int_equal(rf_agent_write_ack(v, &t3), 0);
	/* A break: t4 landed before it (acknowledged), t5 did not (falls back). */
	t4 = write4k(v, 12288);
	t5 = write4k(v, 16384);
	posted(a, 14, t4.id);
	posted(a, 15, t5.id);
	rfa_landed_upto(a, 14);
	rfa_ack_epoch_end(a);
	assert_int_equal(rf_agent_write_ack(v, &t4), 0);
	assert_int_equal(rf_agent_write_ack(v, &t5), -ECONNRESET);
	status(v, &st);
	assert_int_equal(st.ack, RF_AGENT_ACK_LANDED);
	assert_int_equal(st.ack_waits, 4);
	assert_true(st.ack_fallback);
	assert_int_equal(st.ack_fallbacks, 1);
	/* Back to async: no volume asks for LANDED any more. */
	assert_int_equal(rf_agent_vol_set_ack(v, RF_AGENT_ACK_ASYNC, 1000, 0), 0);
	assert_int_equal(atomic_load(&a->landed_vols), 0);
	posts_free(a);
	done(&a);
}

/* durable is not satisfied by landed: LANDED alone never acknowledges. */
static void test_durable_ignores_landed(void **state)
{
	struct rf_agent_vol_status st;
	struct rf_agent_vol *v;
	struct rf_agent *a = agent_with_volume(&v, RF_AGENT_ACK_DURABLE, 50);
	struct rf_agent_ticket t;

	(void)state;
	attach(a, v);
	t = write4k(v, 0);
	posted(a, 3, t.id);
	rfa_landed_upto(a, 3);
	assert_int_equal(rf_agent_write_ack(v, &t), -ETIMEDOUT);
	status(v, &st);
	assert_true(st.ack_fallback);
	posts_free(a);
	done(&a);
}

/* A trim and a failed write have nothing to wait for. */
static void test_nothing_to_ack(void **state)
{
	struct rf_agent_vol_status st;
	struct rf_agent_vol *v;
	struct rf_agent *a = agent_with_volume(&v, RF_AGENT_ACK_DURABLE, 60000);
	struct rf_agent_ticket t;
	char buf[512] = {0};

	(void)state;
	attach(a, v);
	assert_int_equal(rf_agent_write_begin(v, 0, 4096), 0);
	t = rf_agent_write_end(v, 0, 4096, NULL, RF_AGENT_TRIM, true);
	assert_false(t.must_ack);
	assert_int_equal(rf_agent_write_ack(v, &t), 0);
	assert_int_equal(rf_agent_write_begin(v, 0, sizeof(buf)), 0);
	t = rf_agent_write_end(v, 0, sizeof(buf), buf, RF_AGENT_WRITE, false);
	assert_false(t.must_ack);
	assert_int_equal(rf_agent_write_ack(v, &t), 0);
	status(v, &st);
	assert_false(st.ack_fallback);
	done(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_levels_checked),
	    cmocka_unit_test(test_async_never_waits),
	    cmocka_unit_test(test_durable_waits_for_its_ticket),
	    cmocka_unit_test(test_not_queued_falls_back_until_caught_up),
	    cmocka_unit_test(test_timeout_falls_back),
	    cmocka_unit_test(test_link_break),
	    cmocka_unit_test(test_idle_catches_up),
	    cmocka_unit_test(test_nothing_to_ack),
	    cmocka_unit_test(test_landed_waits_for_landed),
	    cmocka_unit_test(test_durable_ignores_landed),
	};

	rf_log_set_level(RF_LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
