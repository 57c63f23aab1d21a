/* SPDX-License-Identifier: MIT */
/*
 * The framed non-blocking control stream (common/ctl_stream.c) over a
 * socketpair: partial headers, a header split over reads, the payload cap,
 * bad headers, the read budget, the peer closing, output backpressure.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "repfabric/ctl_stream.h"

struct pair {
	int us, peer; /* us: non-blocking, the stream's; peer: blocking, the test's */
	struct rf_ctl_stream s;
};

static int setup(void **state)
{
	struct pair *p = calloc(1, sizeof(*p));
	int sv[2];

	assert_non_null(p);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	p->us = sv[0];
	p->peer = sv[1];
	fcntl(p->us, F_SETFL, O_NONBLOCK);
	rf_ctl_stream_init(&p->s, p->us, 0);
	*state = p;
	return 0;
}

static int teardown(void **state)
{
	struct pair *p = *state;

	rf_ctl_stream_fini(&p->s);
	close(p->us);
	if (p->peer >= 0)
		close(p->peer);
	free(p);
	return 0;
}

static void put(int fd, const void *b, size_t n)
{
	assert_int_equal(write(fd, b, n), (ssize_t)n);
}

static int recv1(struct pair *p, uint32_t max, const char **why)
{
	size_t budget = SIZE_MAX;

	return rf_ctl_stream_recv(&p->s, max, &budget, why);
}

static void test_partial_header_then_payload(void **state)
{
	struct pair *p = *state;
	uint8_t f[RF_CTL_HDR_LEN + 5];
	const char *why = NULL;

	rf_ctl_hdr_encode(f, RF_CTL_HELLO, 42, 5);
	memcpy(f + RF_CTL_HDR_LEN, "abcde", 5);
	assert_int_equal(recv1(p, RF_CTL_MAX_PAYLOAD, &why), 0); /* nothing yet */
	assert_false(rf_ctl_stream_mid_frame(&p->s));
	put(p->peer, f, 10);
	assert_int_equal(recv1(p, RF_CTL_MAX_PAYLOAD, &why), 0);
	assert_true(rf_ctl_stream_mid_frame(&p->s));
	put(p->peer, f + 10, RF_CTL_HDR_LEN - 10 + 2); /* the rest of the header, 2 payload bytes */
	assert_int_equal(recv1(p, RF_CTL_MAX_PAYLOAD, &why), 0);
	assert_true(p->s.rx_payload);
	put(p->peer, f + RF_CTL_HDR_LEN + 2, 3);
	assert_int_equal(recv1(p, RF_CTL_MAX_PAYLOAD, &why), 1);
	assert_int_equal(p->s.h.type, RF_CTL_HELLO);
	assert_true(p->s.h.req_id == 42);
	assert_int_equal(p->s.h.len, 5);
	assert_memory_equal(p->s.pl, "abcde", 5);
	rf_ctl_stream_next(&p->s);
	assert_false(rf_ctl_stream_mid_frame(&p->s));
}

static void test_header_byte_by_byte_and_empty_payload(void **state)
{
	struct pair *p = *state;
	uint8_t f[2 * RF_CTL_HDR_LEN];
	const char *why = NULL;

	rf_ctl_hdr_encode(f, RF_CTL_HEARTBEAT, 1, 0);
	rf_ctl_hdr_encode(f + RF_CTL_HDR_LEN, RF_CTL_STATUS, 2, 0);
	for (size_t i = 0; i + 1 < RF_CTL_HDR_LEN; i++) {
		put(p->peer, f + i, 1);
		assert_int_equal(recv1(p, RF_CTL_MAX_PAYLOAD, &why), 0);
	}
	/* The last header byte and the whole next frame in one read. */
	put(p->peer, f + RF_CTL_HDR_LEN - 1, RF_CTL_HDR_LEN + 1);
	assert_int_equal(recv1(p, RF_CTL_MAX_PAYLOAD, &why), 1);
	assert_int_equal(p->s.h.type, RF_CTL_HEARTBEAT);
	assert_int_equal(p->s.h.len, 0);
	rf_ctl_stream_next(&p->s);
	/* The stream read exactly one header: the next frame is still there. */
	assert_int_equal(recv1(p, RF_CTL_MAX_PAYLOAD, &why), 1);
	assert_int_equal(p->s.h.type, RF_CTL_STATUS);
	assert_true(p->s.h.req_id == 2);
}

static void test_payload_cap(void **state)
{
	struct pair *p = *state;
	uint8_t f[RF_CTL_HDR_LEN];
	const char *why = NULL;

	rf_ctl_hdr_encode(f, RF_CTL_VOLUME_REPORT, 9, 257);
	put(p->peer, f, sizeof(f));
	assert_int_equal(recv1(p, 256, &why), -EMSGSIZE);
	assert_int_equal(p->s.h.len, 257);
	assert_true(p->s.h.req_id == 9);
	assert_null(p->s.pl); /* nothing was allocated for it */
}

static void test_bad_header(void **state)
{
	struct pair *p = *state;
	uint8_t f[RF_CTL_HDR_LEN];
	const char *why = NULL;

	rf_ctl_hdr_encode(f, RF_CTL_HELLO, 9, RF_CTL_MAX_PAYLOAD + 1);
	put(p->peer, f, sizeof(f));
	assert_int_equal(recv1(p, RF_CTL_MAX_PAYLOAD, &why), -EPROTO);
	assert_non_null(strstr(why, "cap"));
	assert_memory_equal(p->s.hdr, f, sizeof(f)); /* kept for the caller's ERROR */
}

static void test_budget_and_close(void **state)
{
	struct pair *p = *state;
	uint8_t f[RF_CTL_HDR_LEN + 8];
	const char *why = NULL;
	size_t budget = 5;

	rf_ctl_hdr_encode(f, RF_CTL_HELLO, 1, 8);
	memset(f + RF_CTL_HDR_LEN, 'x', 8);
	put(p->peer, f, sizeof(f));
	assert_int_equal(rf_ctl_stream_recv(&p->s, RF_CTL_MAX_PAYLOAD, &budget, &why), 0);
	assert_int_equal(budget, 0);
	assert_int_equal(p->s.got, 5);
	budget = RF_CTL_HDR_LEN; /* the header's rest, and 5 payload bytes */
	assert_int_equal(rf_ctl_stream_recv(&p->s, RF_CTL_MAX_PAYLOAD, &budget, &why), 0);
	assert_true(p->s.rx_payload);
	close(p->peer);
	p->peer = -1;
	budget = SIZE_MAX;
	assert_int_equal(rf_ctl_stream_recv(&p->s, RF_CTL_MAX_PAYLOAD, &budget, &why), 1);
	rf_ctl_stream_next(&p->s);
	assert_int_equal(recv1(p, RF_CTL_MAX_PAYLOAD, &why), -ECONNRESET);
	assert_false(rf_ctl_stream_mid_frame(&p->s)); /* closed between frames */
}

static void test_output_backpressure(void **state)
{
	struct pair *p = *state;
	static uint8_t payload[64 << 10];
	uint8_t buf[RF_CTL_HDR_LEN + sizeof(payload)];
	size_t queued = 0, drained = 0;
	int snd = 4096;

	setsockopt(p->us, SOL_SOCKET, SO_SNDBUF, &snd, sizeof(snd));
	p->s.out_max = 4 * (RF_CTL_HDR_LEN + sizeof(payload));
	memset(payload, 0xab, sizeof(payload));
	assert_int_equal(
	    rf_ctl_stream_queue(&p->s, RF_CTL_IO_DATA, 1, payload, RF_CTL_MAX_PAYLOAD + 1),
	    -EMSGSIZE);
	/* The peer reads nothing: the socket fills, the rest stays queued. */
	for (int i = 0; i < 4; i++) {
		assert_int_equal(rf_ctl_stream_queue(&p->s, RF_CTL_IO_DATA, (uint64_t)i + 1,
		                                     payload, sizeof(payload)),
		                 0);
		assert_int_equal(rf_ctl_stream_flush(&p->s), 0);
		queued += RF_CTL_HDR_LEN + sizeof(payload);
	}
	assert_true(rf_ctl_stream_pending(&p->s) > 0);
	assert_true(rf_ctl_stream_pending(&p->s) < queued);
	/* More than out_max queued: refused, the queue unchanged. */
	{
		size_t before = rf_ctl_stream_pending(&p->s);

		assert_int_equal(
		    rf_ctl_stream_queue(&p->s, RF_CTL_IO_DATA, 9, payload, sizeof(payload)),
		    -ENOBUFS);
		assert_int_equal(rf_ctl_stream_pending(&p->s), before);
	}
	/* The peer reads: every frame arrives whole and in order. */
	for (uint64_t want = 1; want <= 4; want++) {
		struct rf_ctl_hdr h;
		const char *why = NULL;

		while (drained < RF_CTL_HDR_LEN + sizeof(payload)) {
			ssize_t n = read(p->peer, buf + drained, sizeof(buf) - drained);

			assert_true(n > 0);
			drained += (size_t)n;
			assert_int_equal(rf_ctl_stream_flush(&p->s), 0);
		}
		assert_int_equal(rf_ctl_hdr_decode(buf, &h, &why), 0);
		assert_true(h.req_id == want);
		assert_int_equal(h.len, sizeof(payload));
		assert_memory_equal(buf + RF_CTL_HDR_LEN, payload, sizeof(payload));
		drained = 0;
	}
	assert_int_equal(rf_ctl_stream_pending(&p->s), 0);
	assert_null(p->s.out); /* a big buffer is given back once empty */
}

static void test_send_to_a_closed_peer(void **state)
{
	struct pair *p = *state;

	close(p->peer);
	p->peer = -1;
	assert_int_equal(rf_ctl_stream_queue(&p->s, RF_CTL_HEARTBEAT, 1, NULL, 0), 0);
	assert_int_equal(rf_ctl_stream_flush(&p->s), -EPIPE);
	rf_ctl_stream_reset(&p->s, p->us);
	assert_int_equal(rf_ctl_stream_pending(&p->s), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_partial_header_then_payload, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_header_byte_by_byte_and_empty_payload, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_payload_cap, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_header, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_budget_and_close, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_output_backpressure, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_send_to_a_closed_peer, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
