/* SPDX-License-Identifier: MIT */
/*
 * rf-hub-agent-sim: a minimal, single-threaded agent for rephubd's tests.
 * It speaks the real protocols (control channel + a fabric transport + ring
 * records) against a local file that stands for the protected disk:
 *
 *   rf-hub-agent-sim --hub HOST:PORT --agent ID --volume NAME --vol-id N
 *                    --disk FILE [--bitmap-valid] [--expect-sync none|full]
 *                    [--writes N] [--seed S] [--bad vol|range] [--stay]
 *                    [--pause-ms MS] [--hold-ms MS]
 *
 * HELLO, VOLUME_REPORT, attach the data path, serve SYNC_READs (each served
 * read is followed by one random guest write, so writes race the sync),
 * then the rest of the N random writes (DATA, ZERO, TRIM; each applied to
 * FILE first, then posted), then PROGRESS, and wait until the hub's durable
 * sequence covers everything. --bad posts one invalid record at the end
 * (unknown vol_id, or a range past the end) and expects to be fenced.
 * --stay keeps the session (PROGRESS every 200 ms) until SIGTERM.
 * --pause-ms waits (printing "paused") between the sync and the writes, and
 * --hold-ms after the writes (printed "posted N writes") before PROGRESS,
 * so a test can stop or kill the hub while records sit in the ring.
 *
 * Exit: 0 done, 3 fenced as expected (--bad), 1 anything else.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "repfabric/ctl.h"
#include "repfabric/fabric.h"
#include "repfabric/ring.h"

struct sim {
	const char *hub, *agent, *volume, *disk;
	uint32_t vol_id;
	bool bitmap_valid, stay;
	const char *expect_sync, *bad;
	uint64_t writes, written, seed;
	int hold_ms, pause_ms;

	int ctl, dfd;
	uint64_t size, req;
	struct rf_fab_conn *fab;
	struct rf_ring_producer *rp;
	uint64_t durable_seq;
	int state; /* from VOLUME_STATE */
	bool synced, fenced;
	uint64_t served;
	uint8_t *rx;
};

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	stop = 1;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t rnd(struct sim *s)
{
	uint64_t x = (s->seed += 0x9e3779b97f4a7c15ull);

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static void die(const char *what)
{
	fprintf(stderr, "agent-sim: %s\n", what);
	exit(1);
}

static void fab_events(struct sim *s, int timeout_ms)
{
	struct rf_fab_event evs[64];
	int n;

	if (!s->fab)
		return;
	n = rf_fab_poll(s->fab, evs, 64, timeout_ms);
	if (n < 0) {
		s->fenced = true;
		return;
	}
	for (int i = 0; i < n; i++) {
		switch (evs[i].type) {
		case RF_FAB_EV_SENT:
			free((void *)(uintptr_t)evs[i].cookie);
			break;
		case RF_FAB_EV_POSITION:
			rf_ring_producer_update_head(s->rp, evs[i].pos.head_pos);
			if (evs[i].pos.durable_seq > s->durable_seq)
				s->durable_seq = evs[i].pos.durable_seq;
			break;
		case RF_FAB_EV_CLOSED:
			printf("data connection closed by the hub (%s)\n", strerror(-evs[i].err));
			s->fenced = true;
			rf_fab_close(&s->fab);
			return;
		}
	}
}

/* Encode and post one record; returns its sequence. */
static uint64_t post(struct sim *s, const struct rf_ring_desc *d)
{
	size_t blen = rf_ring_encode_buf_size(d->length);
	struct rf_fab_seg segs[RF_RING_MAX_SEGS];
	struct rf_ring_desc desc = *d;
	struct rf_ring_image img;
	int64_t deadline = now_ms() + 20000;
	uint8_t *buf = malloc(blen);
	int rc;

	if (!buf)
		die("out of memory");
	if (d->type == RF_RING_REC_DATA) {
		memcpy(buf + RF_RING_REC_HDR_SIZE, d->payload, d->length);
		desc.payload = buf + RF_RING_REC_HDR_SIZE;
	}
	for (;;) {
		rc = rf_ring_producer_encode(s->rp, &desc, buf, blen, &img);
		if (rc != -ENOSPC)
			break;
		if (now_ms() > deadline || s->fenced)
			die("the ring stayed full for 20 s");
		fab_events(s, 10);
	}
	if (rc)
		die("cannot encode a record");
	for (unsigned i = 0; i < img.nseg; i++)
		segs[i] = (struct rf_fab_seg){.off = img.seg[i].file_off - RF_RING_HEADER_SIZE,
		                              .buf = img.seg[i].src,
		                              .len = img.seg[i].len};
	for (;;) {
		if (s->fenced || !s->fab)
			return img.seq;
		rc = rf_fab_post(s->fab, segs, img.nseg, img.seq, (uintptr_t)buf);
		if (rc != -EAGAIN)
			break;
		fab_events(s, 10);
	}
	if (rc) {
		s->fenced = true;
		free(buf);
	}
	return img.seq;
}

static void pwrite_all(int fd, const void *p, size_t len, uint64_t off)
{
	if (pwrite(fd, p, len, (off_t)off) != (ssize_t)len)
		die("local write failed");
}

/* One guest write: applied locally first, then mirrored. */
static void guest_write(struct sim *s)
{
	static uint8_t data[65536];
	uint64_t r = rnd(s), blocks = s->size / 512;
	uint32_t len = (uint32_t)(512 * (1 + rnd(s) % 128));
	uint64_t off = 512 * (rnd(s) % blocks);
	struct rf_ring_desc d = {.volume_id = s->vol_id, .offset = off};

	if (off + len > s->size)
		len = (uint32_t)(s->size - off);
	d.length = len;
	if (r % 10 < 8) {
		for (uint32_t i = 0; i < len; i += 8) {
			uint64_t v = rnd(s);

			memcpy(data + i, &v, 8);
		}
		pwrite_all(s->dfd, data, len, off);
		d.type = RF_RING_REC_DATA;
		d.payload = data;
	} else {
		memset(data, 0, len);
		pwrite_all(s->dfd, data, len, off);
		d.type = r % 10 == 8 ? RF_RING_REC_ZERO : RF_RING_REC_TRIM;
	}
	post(s, &d);
	s->written++;
}

static void ctl_send(struct sim *s, uint16_t type, uint64_t req, const void *p, int len)
{
	if (len < 0 || rf_ctl_send(s->ctl, type, req, p, (uint32_t)len, NULL, 0))
		die("cannot send on the control connection");
}

/* Handle one control frame. */
static void on_frame(struct sim *s, const struct rf_ctl_hdr *h)
{
	const char *why = "";
	uint8_t out[64];

	switch (h->type) {
	case RF_CTL_HEARTBEAT:
		if (h->req_id >> 63)
			ctl_send(s, RF_CTL_HEARTBEAT, h->req_id, NULL, 0);
		break;
	case RF_CTL_SYNC_READ: {
		struct rf_ctl_sync_read m;
		struct rf_ctl_sync_posted sp;
		uint8_t *data;

		if (rf_ctl_dec_sync_read(s->rx, h->len, &m, &why) || m.vol_id != s->vol_id ||
		    m.offset + m.length > s->size)
			die("bad SYNC_READ");
		data = malloc(m.length);
		if (!data || pread(s->dfd, data, m.length, (off_t)m.offset) != (ssize_t)m.length)
			die("local read failed");
		sp = (struct rf_ctl_sync_posted){
		    .vol_id = m.vol_id, .offset = m.offset, .length = m.length};
		sp.seq = post(s, &(struct rf_ring_desc){.type = RF_RING_REC_DATA,
		                                        .flags = RF_REC_FLAG_SYNC,
		                                        .volume_id = s->vol_id,
		                                        .offset = m.offset,
		                                        .length = m.length,
		                                        .payload = data});
		free(data);
		ctl_send(s, RF_CTL_SYNC_POSTED, h->req_id, out,
		         rf_ctl_enc_sync_posted(out, sizeof(out), &sp));
		s->served++;
		if (s->written < s->writes)
			guest_write(s); /* a guest write racing the sync */
		break;
	}
	case RF_CTL_VOLUME_STATE: {
		struct rf_ctl_volume_state m;

		if (rf_ctl_dec_volume_state(s->rx, h->len, &m, &why) == 0) {
			printf("VOLUME_STATE %s, %" PRIu64 " bytes synced\n",
			       rf_vol_state_name(m.state), m.synced_bytes);
			s->state = m.state;
			if (m.state == RF_VOL_PROTECTED)
				s->synced = true;
		}
		break;
	}
	case RF_CTL_ERROR: {
		struct rf_ctl_error e;

		if (rf_ctl_dec_error(s->rx, h->len, &e, &why) == 0)
			printf("ERROR from the hub: %s (%d)\n", e.reason, e.code);
		break;
	}
	default:
		break;
	}
}

/* Wait for the reply to @req (handling anything else that arrives). */
static void await_reply(struct sim *s, uint64_t req, struct rf_ctl_hdr *h)
{
	const char *why = "";

	for (;;) {
		int rc = rf_ctl_recv(s->ctl, h, s->rx, RF_CTL_MAX_PAYLOAD, 10000, &why);

		if (rc)
			die("no reply from the hub");
		if (h->req_id == req)
			return;
		on_frame(s, h);
	}
}

/* Serve the control connection and the data events for up to @ms. */
static void pump(struct sim *s, int ms)
{
	struct pollfd p = {.fd = s->ctl, .events = POLLIN};
	struct rf_ctl_hdr h;
	const char *why = "";

	fab_events(s, 0);
	if (poll(&p, 1, ms) > 0) {
		if (rf_ctl_recv(s->ctl, &h, s->rx, RF_CTL_MAX_PAYLOAD, 5000, &why))
			die("the hub closed the control connection");
		on_frame(s, &h);
	}
	fab_events(s, 0);
}

static void send_progress(struct sim *s)
{
	struct rf_ctl_progress *m = calloc(1, sizeof(*m));
	uint8_t buf[64];

	if (!m)
		die("out of memory");
	m->next_seq = rf_ring_producer_next_seq(s->rp);
	m->queued = 0;
	m->nvols = 1;
	m->vols[0].vol_id = s->vol_id;
	m->vols[0].dirty_bytes = 0;
	ctl_send(s, RF_CTL_PROGRESS, 0, buf, rf_ctl_enc_progress(buf, sizeof(buf), m));
	free(m);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"hub", required_argument, NULL, 'H'},
	                                     {"agent", required_argument, NULL, 'a'},
	                                     {"volume", required_argument, NULL, 'v'},
	                                     {"vol-id", required_argument, NULL, 'i'},
	                                     {"disk", required_argument, NULL, 'd'},
	                                     {"bitmap-valid", no_argument, NULL, 'b'},
	                                     {"expect-sync", required_argument, NULL, 'e'},
	                                     {"writes", required_argument, NULL, 'w'},
	                                     {"seed", required_argument, NULL, 's'},
	                                     {"bad", required_argument, NULL, 'B'},
	                                     {"stay", no_argument, NULL, 'S'},
	                                     {"hold-ms", required_argument, NULL, 'h'},
	                                     {"pause-ms", required_argument, NULL, 'p'},
	                                     {NULL, 0, NULL, 0}};
	struct sim s = {.seed = 1};
	struct rf_ctl_hello hello = {.proto = RF_CTL_VERSION};
	struct rf_ctl_hello_ok hok;
	struct rf_ctl_volume_report rep = {0};
	struct rf_ctl_volume_ok vok;
	struct rf_fab_ring_info info;
	struct rf_ctl_hdr h;
	const char *why = "";
	uint8_t buf[256];
	struct stat st;
	uint64_t target;
	int64_t deadline;
	int c, rc;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'H':
			s.hub = optarg;
			break;
		case 'a':
			s.agent = optarg;
			break;
		case 'v':
			s.volume = optarg;
			break;
		case 'i':
			s.vol_id = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'd':
			s.disk = optarg;
			break;
		case 'b':
			s.bitmap_valid = true;
			break;
		case 'e':
			s.expect_sync = optarg;
			break;
		case 'w':
			s.writes = strtoull(optarg, NULL, 0);
			break;
		case 's':
			s.seed = strtoull(optarg, NULL, 0);
			break;
		case 'B':
			s.bad = optarg;
			break;
		case 'S':
			s.stay = true;
			break;
		case 'h':
			s.hold_ms = atoi(optarg);
			break;
		case 'p':
			s.pause_ms = atoi(optarg);
			break;
		default:
			return 1;
		}
	}
	if (!s.hub || !s.agent || !s.volume || !s.disk)
		die("--hub, --agent, --volume and --disk are required");
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	setvbuf(stdout, NULL, _IOLBF, 0);
	s.rx = malloc(RF_CTL_MAX_PAYLOAD);
	s.dfd = open(s.disk, O_RDWR);
	if (!s.rx || s.dfd < 0 || fstat(s.dfd, &st))
		die("cannot open the disk file");
	s.size = (uint64_t)st.st_size;

	s.ctl = rf_ctl_dial(s.hub, 5000);
	if (s.ctl < 0)
		die("cannot reach the hub");
	snprintf(hello.agent_id, sizeof(hello.agent_id), "%s", s.agent);
	ctl_send(&s, RF_CTL_HELLO, ++s.req, buf, rf_ctl_enc_hello(buf, sizeof(buf), &hello));
	await_reply(&s, s.req, &h);
	if (h.type != RF_CTL_HELLO_OK || rf_ctl_dec_hello_ok(s.rx, h.len, &hok, &why))
		die("HELLO was refused");
	snprintf(rep.name, sizeof(rep.name), "%s", s.volume);
	rep.vol_id = s.vol_id;
	rep.size = s.size;
	rep.bitmap_valid = s.bitmap_valid;
	ctl_send(&s, RF_CTL_VOLUME_REPORT, ++s.req, buf,
	         rf_ctl_enc_volume_report(buf, sizeof(buf), &rep));
	await_reply(&s, s.req, &h);
	if (h.type != RF_CTL_VOLUME_OK || rf_ctl_dec_volume_ok(s.rx, h.len, &vok, &why)) {
		on_frame(&s, &h);
		die("VOLUME_REPORT was refused");
	}
	printf("VOLUME_OK state %s sync %s\n", rf_vol_state_name(vok.state),
	       vok.sync == RF_SYNC_FULL   ? "full"
	       : vok.sync == RF_SYNC_NONE ? "none"
	                                  : "dirty");
	if (s.expect_sync && strcmp(s.expect_sync, vok.sync == RF_SYNC_FULL ? "full" : "none"))
		die("unexpected sync mode");
	s.synced = vok.sync == RF_SYNC_NONE;

	rc = rf_fab_connect(hok.data_url, hok.token, 5000, &s.fab, &info);
	if (rc)
		die("cannot attach the data path");
	rc = rf_ring_producer_new(&s.rp, &(struct rf_ring_info){.ring_id = info.ring_id,
	                                                        .data_size = info.data_size,
	                                                        .head_pos = info.pos.head_pos,
	                                                        .head_seq = info.pos.head_seq});
	if (rc)
		die("bad ring geometry from the hub");
	s.durable_seq = info.pos.head_seq;
	printf("attached: ring %" PRIu64 " bytes, producer starts at seq %" PRIu64 "\n",
	       info.data_size, info.pos.head_seq);

	deadline = now_ms() + 120000;
	while (!s.synced && !s.fenced) {
		if (now_ms() > deadline)
			die("no sync within 120 s");
		pump(&s, 50);
	}
	printf("synced after %" PRIu64 " sync reads\n", s.served);
	if (s.pause_ms) {
		printf("paused\n");
		usleep((useconds_t)s.pause_ms * 1000);
	}
	while (s.written < s.writes && !s.fenced)
		guest_write(&s);
	printf("posted %" PRIu64 " writes\n", s.written);
	if (s.bad) {
		struct rf_ring_desc d = {
		    .type = RF_RING_REC_ZERO, .volume_id = s.vol_id, .offset = 0, .length = 512};

		if (strcmp(s.bad, "vol") == 0)
			d.volume_id = s.vol_id + 100;
		else
			d.offset = s.size;
		post(&s, &d);
		deadline = now_ms() + 10000;
		while (!s.fenced && now_ms() < deadline)
			pump(&s, 50);
		if (!s.fenced)
			die("the hub did not fence an invalid record");
		printf("fenced after an invalid record, as expected\n");
		rf_fab_close(&s.fab);
		rf_ring_producer_delete(&s.rp);
		close(s.ctl);
		close(s.dfd);
		free(s.rx);
		return 3;
	}
	if (s.hold_ms) {
		printf("holding %d ms\n", s.hold_ms);
		fflush(stdout);
		usleep((useconds_t)s.hold_ms * 1000);
	}
	target = rf_ring_producer_next_seq(s.rp);
	send_progress(&s);
	deadline = now_ms() + 60000;
	while (s.durable_seq < target && !s.fenced) {
		if (now_ms() > deadline)
			die("the hub did not make the writes durable within 60 s");
		pump(&s, 20);
	}
	if (s.fenced)
		die("fenced");
	printf("%" PRIu64 " writes durable (seq %" PRIu64 ")\n", s.written, s.durable_seq);
	send_progress(&s);
	while (s.stay && !stop) {
		int64_t next = now_ms() + 200;

		while (!stop && now_ms() < next)
			pump(&s, 50);
		send_progress(&s);
	}
	rf_fab_close(&s.fab);
	rf_ring_producer_delete(&s.rp);
	close(s.ctl);
	close(s.dfd);
	free(s.rx);
	return 0;
}
