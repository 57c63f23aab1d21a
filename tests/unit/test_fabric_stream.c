/* SPDX-License-Identifier: MIT */
/*
 * The tcp:// and shm:// providers over real loopback sockets, with a plain
 * buffer as the ring: placement, doorbells, positions, refusal, malformed
 * frames, fence, and the listener's counters (struct rf_fab_stats). The hub
 * runs in a thread of its own; it copies the counters after every poll into
 * a snapshot the test thread reads under a mutex.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>
#include <fcntl.h>

#include <cmocka.h>

#include "repfabric/fabric.h"
#include "repfabric/log.h"

#define RING_BYTES (1u << 20)
#define DATA_OFF   4096
#define GOOD_TOKEN 0x1234

struct hub {
	struct rf_fab_listener *l;
	uint8_t *map; /* DATA_OFF + RING_BYTES, MAP_SHARED on a file */
	char file[64];
	atomic_int stop;
	atomic_ullong last_seq;
	atomic_int attached, detached, data_events;
	atomic_int fence_now, publish_now;
	struct rf_fab_peer *peer;
	pthread_t thread;
	pthread_mutex_t mu;
	struct rf_fab_stats stats, peer_stats; /* snapshots, under mu */
	int polls;                             /* polls since start, under mu */
};

static int hub_attach(void *ctx, uint64_t token, struct rf_fab_ring_mem *mem)
{
	struct hub *h = ctx;

	if (token != GOOD_TOKEN)
		return -ENOENT;
	mem->data = h->map + DATA_OFF;
	mem->data_size = RING_BYTES;
	mem->path = h->file;
	mem->data_off = DATA_OFF;
	mem->info.ring_id = 77;
	mem->info.data_size = RING_BYTES;
	mem->info.pos = (struct rf_fab_position){.durable_pos = 512, .durable_seq = 3};
	return 0;
}

static const struct rf_fab_hub_ops hub_ops = {.attach = hub_attach};

static void *hub_loop(void *arg)
{
	struct hub *h = arg;
	struct rf_fab_hub_event evs[16];

	while (!atomic_load(&h->stop)) {
		int n = rf_fab_listener_poll(h->l, evs, 16, 20);

		assert_true(n >= 0);
		for (int i = 0; i < n; i++) {
			switch (evs[i].type) {
			case RF_FAB_HEV_ATTACHED:
				h->peer = evs[i].peer;
				atomic_fetch_add(&h->attached, 1);
				break;
			case RF_FAB_HEV_DATA:
				atomic_store(&h->last_seq, evs[i].seq);
				atomic_fetch_add(&h->data_events, 1);
				break;
			case RF_FAB_HEV_DETACHED:
				if (h->peer == evs[i].peer)
					h->peer = NULL;
				atomic_fetch_add(&h->detached, 1);
				break;
			}
		}
		if (h->peer && atomic_exchange(&h->publish_now, 0)) {
			struct rf_fab_position pos = {100, 101, 102, 103};

			assert_int_equal(rf_fab_publish(h->peer, &pos), 0);
		}
		if (h->peer && atomic_exchange(&h->fence_now, 0))
			rf_fab_peer_fence(h->peer);
		pthread_mutex_lock(&h->mu);
		rf_fab_listener_stats(h->l, &h->stats);
		if (h->peer)
			rf_fab_peer_stats(h->peer, &h->peer_stats);
		h->polls++;
		pthread_mutex_unlock(&h->mu);
	}
	return NULL;
}

static void hub_start(struct hub *h, const char *url)
{
	int fd;

	memset(h, 0, sizeof(*h));
	snprintf(h->file, sizeof(h->file), "/dev/shm/rf-test-ring.%d", (int)getpid());
	fd = open(h->file, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, DATA_OFF + RING_BYTES), 0);
	h->map = mmap(NULL, DATA_OFF + RING_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(h->map != MAP_FAILED);
	close(fd);
	assert_int_equal(rf_fab_listen(url, &hub_ops, h, &h->l), 0);
	pthread_mutex_init(&h->mu, NULL);
	assert_int_equal(pthread_create(&h->thread, NULL, hub_loop, h), 0);
}

static void hub_stop(struct hub *h)
{
	atomic_store(&h->stop, 1);
	pthread_join(h->thread, NULL);
	pthread_mutex_destroy(&h->mu);
	rf_fab_listener_close(&h->l);
	assert_null(h->l);
	munmap(h->map, DATA_OFF + RING_BYTES);
	unlink(h->file);
}

/* The listener's counters as of the hub thread's next completed poll. */
static struct rf_fab_stats hub_stats(struct hub *h)
{
	struct rf_fab_stats st;
	int start;

	pthread_mutex_lock(&h->mu);
	start = h->polls;
	pthread_mutex_unlock(&h->mu);
	for (int i = 0; i < 500; i++) {
		pthread_mutex_lock(&h->mu);
		st = h->stats;
		if (h->polls > start + 1) {
			pthread_mutex_unlock(&h->mu);
			return st;
		}
		pthread_mutex_unlock(&h->mu);
		usleep(2000);
	}
	fail_msg("the hub thread stopped polling");
	return st;
}

/* The counters once @field reached @want (bounded), or as they are then. */
#define WAIT_STATS(h, field, want)                                                                 \
	({                                                                                         \
		struct rf_fab_stats st_ = hub_stats(h);                                            \
		for (int i_ = 0; i_ < 250 && st_.field < (want); i_++)                             \
			st_ = hub_stats(h);                                                        \
		st_;                                                                               \
	})

static int wait_until(atomic_int *v, int want)
{
	for (int i = 0; i < 500 && atomic_load(v) < want; i++)
		usleep(10000);
	return atomic_load(v) >= want;
}

/* Reap events until one of @type arrives (bounded). */
static int wait_event(struct rf_fab_conn *c, enum rf_fab_event_type type, struct rf_fab_event *out)
{
	for (int i = 0; i < 500; i++) {
		struct rf_fab_event evs[8];
		int n = rf_fab_poll(c, evs, 8, 10);

		if (n < 0)
			return n;
		for (int k = 0; k < n; k++) {
			if (evs[k].type == type) {
				*out = evs[k];
				return 0;
			}
		}
	}
	return -ETIMEDOUT;
}

static int port_counter = 0;

static void make_url(char *url, size_t len, int shm)
{
	if (shm)
		snprintf(url, len, "shm:///tmp/rf-test-fab.%d.%d", (int)getpid(), port_counter++);
	else
		snprintf(url, len, "tcp://127.0.0.1:%d",
		         30000 + (getpid() % 20000) + port_counter++);
}

static void run_roundtrip(int shm)
{
	struct hub h;
	struct rf_fab_conn *c;
	struct rf_fab_ring_info info;
	struct rf_fab_event ev;
	char url[128];
	static uint8_t big[RING_BYTES / 2];
	uint8_t small[3] = {1, 2, 3};
	struct rf_fab_stats st, pst;

	make_url(url, sizeof(url), shm);
	hub_start(&h, url);
	assert_int_equal(rf_fab_connect(url, GOOD_TOKEN, 2000, &c, &info), 0);
	assert_int_equal(info.ring_id, 77);
	assert_int_equal(info.data_size, RING_BYTES);
	assert_int_equal(info.pos.durable_pos, 512);
	assert_int_equal(info.pos.durable_seq, 3);
	assert_true(wait_until(&h.attached, 1));
	st = hub_stats(&h);
	assert_int_equal(st.attaches, 1);
	assert_int_equal(st.detaches, 0);
	assert_int_equal(st.completions, 0);
	assert_int_equal(st.credits, 0);
	assert_int_equal(st.errors, 0);

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7 + 1);
	struct rf_fab_seg segs[2] = {{.off = 1000, .buf = big, .len = sizeof(big)},
	                             {.off = RING_BYTES - 3, .buf = small, .len = 3}};
	assert_int_equal(rf_fab_post(c, segs, 2, 41, 0xc00c1e), 0);
	assert_int_equal(wait_event(c, RF_FAB_EV_SENT, &ev), 0);
	assert_int_equal(ev.cookie, 0xc00c1e);
	assert_true(wait_until(&h.data_events, 1));
	assert_int_equal(atomic_load(&h.last_seq), 41);
	assert_memory_equal(h.map + DATA_OFF + 1000, big, sizeof(big));
	assert_memory_equal(h.map + DATA_OFF + RING_BYTES - 3, small, 3);
	/* One doorbell per post, whatever its segment count. */
	assert_int_equal(WAIT_STATS(&h, completions, 1).completions, 1);
	/* Asked for, the hub answers the doorbell with LANDED for its sequence
	 * (none came for 41: it was not asked for). */
	rf_fab_conn_want_landed(c, true);
	segs[0] = (struct rf_fab_seg){.off = 0, .buf = small, .len = 3};
	assert_int_equal(rf_fab_post(c, segs, 1, 42, 7), 0);
	assert_int_equal(wait_event(c, RF_FAB_EV_LANDED, &ev), 0);
	assert_int_equal(ev.seq, 42);
	assert_int_equal(WAIT_STATS(&h, completions, 2).completions, 2);
	rf_fab_conn_want_landed(c, false);

	/* Segments outside the data area never leave the producer. */
	segs[0] = (struct rf_fab_seg){.off = RING_BYTES - 2, .buf = small, .len = 3};
	assert_int_equal(rf_fab_post(c, segs, 1, 43, 1), -EINVAL);
	assert_int_equal(rf_fab_post(c, segs, 0, 43, 1), -EINVAL);

	for (int k = 1; k <= 2; k++) {
		atomic_store(&h.publish_now, 1);
		assert_int_equal(wait_event(c, RF_FAB_EV_POSITION, &ev), 0);
		assert_int_equal(ev.pos.durable_pos, 100);
		assert_int_equal(ev.pos.durable_seq, 101);
		assert_int_equal(ev.pos.head_pos, 102);
		assert_int_equal(ev.pos.head_seq, 103);
		/* Sent means counted: the hub counts before the frame leaves. */
		st = hub_stats(&h);
		assert_int_equal(st.credits, k);
		/* Head went 0 (the attach) -> 102, then stayed: 102 bytes freed. */
		assert_int_equal(st.credit_bytes, 102);
	}
	assert_int_equal(st.completions, 2);
	assert_int_equal(st.errors, 0);
	pthread_mutex_lock(&h.mu);
	pst = h.peer_stats;
	pthread_mutex_unlock(&h.mu);
	assert_int_equal(pst.attaches, 1);
	assert_int_equal(pst.completions, 2);
	assert_int_equal(pst.credits, 2);
	assert_int_equal(pst.credit_bytes, 102);

	/* Fence: the producer sees its connection die; nothing more lands. */
	atomic_store(&h.fence_now, 1);
	assert_true(wait_until(&h.detached, 1));
	assert_int_equal(wait_event(c, RF_FAB_EV_CLOSED, &ev), 0);
	assert_true(ev.err < 0);
	assert_int_equal(rf_fab_post(c, segs, 1, 44, 2), -ENOTCONN);
	rf_fab_close(&c);
	assert_null(c);
	/* A fence detaches without an error. */
	st = hub_stats(&h);
	assert_int_equal(st.attaches, 1);
	assert_int_equal(st.detaches, 1);
	assert_int_equal(st.errors, 0);
	assert_int_equal(st.refused, 0);
	assert_int_equal(st.completions, 2);
	hub_stop(&h);
}

static void test_tcp_roundtrip(void **state)
{
	run_roundtrip(0);
}

static void test_shm_roundtrip(void **state)
{
	run_roundtrip(1);
}

static void test_refused_token(void **state)
{
	struct hub h;
	struct rf_fab_conn *c;
	struct rf_fab_ring_info info;
	char url[128];

	struct rf_fab_stats st;

	make_url(url, sizeof(url), 0);
	hub_start(&h, url);
	assert_int_equal(rf_fab_connect(url, 999, 2000, &c, &info), -ENOENT);
	assert_null(c);
	st = hub_stats(&h);
	assert_int_equal(st.refused, 1);
	assert_int_equal(st.errors, 1);
	assert_int_equal(st.attaches, 0);
	assert_int_equal(st.detaches, 0);
	/* The hub still serves a good producer afterwards. */
	assert_int_equal(rf_fab_connect(url, GOOD_TOKEN, 2000, &c, &info), 0);
	rf_fab_close(&c);
	assert_true(wait_until(&h.detached, 1));
	/* A producer that closes is a detach, not an error. */
	st = hub_stats(&h);
	assert_int_equal(st.attaches, 1);
	assert_int_equal(st.detaches, 1);
	assert_int_equal(st.refused, 1);
	assert_int_equal(st.errors, 1);
	hub_stop(&h);
}

/* Raw bytes at the hub: every malformed frame closes that connection only. */
static void test_malformed_frames(void **state)
{
	static const uint8_t bad_magic[16] = {'X', 'X', 'X', 'X', 1, 1};
	static const uint8_t bad_version[16] = {0x46, 0x52, 0x46, 0x42, 9, 1, 0, 0, 8};
	static const uint8_t bad_type[16] = {0x46, 0x52, 0x46, 0x42, 1, 200, 0, 0, 8};
	static const uint8_t huge_hello[16] = {0x46, 0x52, 0x46, 0x42, 1,    1,
	                                       0,    0,    0xff, 0xff, 0xff, 0x7f};
	static const uint8_t write_first[16] = {0x46, 0x52, 0x46, 0x42, 1, 4, 0, 0, 20};
	static const uint8_t reserved_set[16] = {0x46, 0x52, 0x46, 0x42, 1, 1, 1, 0, 8};
	static const uint8_t reserved7_set[16] = {0x46, 0x52, 0x46, 0x42, 1, 1, 0, 1, 8};
	const uint8_t *cases[] = {bad_magic,   bad_version,  bad_type,     huge_hello,
	                          write_first, reserved_set, reserved7_set};
	struct hub h;
	struct rf_fab_conn *c;
	struct rf_fab_ring_info info;
	char url[128];
	int port;
	struct rf_fab_stats st;

	make_url(url, sizeof(url), 0);
	port = atoi(strrchr(url, ':') + 1);
	hub_start(&h, url);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
		char buf[64];
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		struct timeval tv = {.tv_sec = 5};

		inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
		assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		assert_int_equal(write(fd, cases[i], 16), 16);
		/* The hub closes: read sees EOF (not a timeout). */
		assert_int_equal(read(fd, buf, sizeof(buf)), 0);
		close(fd);
	}
	/* Each malformed connection is one error, and none attached. */
	st = hub_stats(&h);
	assert_int_equal(st.errors, sizeof(cases) / sizeof(cases[0]));
	assert_int_equal(st.attaches, 0);
	assert_int_equal(st.refused, 0);
	assert_int_equal(rf_fab_connect(url, GOOD_TOKEN, 2000, &c, &info), 0);
	assert_true(wait_until(&h.attached, 1));
	rf_fab_close(&c);
	assert_true(wait_until(&h.detached, 1));
	st = hub_stats(&h);
	assert_int_equal(st.errors, sizeof(cases) / sizeof(cases[0]));
	assert_int_equal(st.attaches, 1);
	assert_int_equal(st.detaches, 1);
	hub_stop(&h);
}

static void test_url_check(void **state)
{
	assert_int_equal(rf_fab_url_check("tcp://127.0.0.1:7471"), 0);
	assert_int_equal(rf_fab_url_check("rdma://10.0.0.2:7471"), 0);
	assert_int_equal(rf_fab_url_check("tcp://[::1]:7471"), 0);
	assert_int_equal(rf_fab_url_check("shm:///dev/shm/rephub"), 0);
	assert_int_equal(rf_fab_url_check("shm://relative"), -EINVAL);
	assert_int_equal(rf_fab_url_check("tcp://127.0.0.1"), -EINVAL);
	assert_int_equal(rf_fab_url_check("tcp://127.0.0.1:99999"), -EINVAL);
	assert_int_equal(rf_fab_url_check("tcp://127.0.0.1:7x"), -EINVAL);
	assert_int_equal(rf_fab_url_check("tcp://"), -EINVAL);
	assert_int_equal(rf_fab_url_check("udp://1.2.3.4:5"), -EPROTONOSUPPORT);
	assert_int_equal(rf_fab_url_check("127.0.0.1:7471"), -EINVAL);
}

static void test_connect_refused(void **state)
{
	struct rf_fab_conn *c;
	struct rf_fab_ring_info info;

	/* Port 1 on loopback: nothing listens there. */
	assert_int_equal(rf_fab_connect("tcp://127.0.0.1:1", 1, 1000, &c, &info), -ECONNREFUSED);
	assert_int_equal(rf_fab_connect("shm:///nonexistent/sock", 1, 1000, &c, &info), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_url_check),        cmocka_unit_test(test_tcp_roundtrip),
	    cmocka_unit_test(test_shm_roundtrip),    cmocka_unit_test(test_refused_token),
	    cmocka_unit_test(test_malformed_frames), cmocka_unit_test(test_connect_refused),
	};

	rf_log_set_level(RF_LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
