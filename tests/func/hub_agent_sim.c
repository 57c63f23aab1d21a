/* SPDX-License-Identifier: MIT */
/*
 * rf-hub-agent-sim: a minimal, single-threaded agent for rephubd's tests.
 * It speaks the real protocols (control channel + a fabric transport + ring
 * records) against a local file that stands for the protected disk:
 *
 *   rf-hub-agent-sim --hub HOST:PORT --agent ID --volume NAME --vol-id N
 *                    --disk FILE [--bitmap-valid] [--expect-sync none|full]
 *                    [--writes N] [--seed S] [--bad MODE] [--stay]
 *                    [--pause-ms MS] [--hold-ms MS] [--print-remote]
 *                    [--attack self|ADDR:RKEY|own-rkey:ADDR]
 *
 * HELLO, VOLUME_REPORT, attach the data path, serve SYNC_READs (each served
 * read is followed by one random guest write, so writes race the sync),
 * then the rest of the N random writes (DATA, ZERO, TRIM; each applied to
 * FILE first, then posted), then PROGRESS, and wait until the hub's durable
 * sequence covers everything. --bad posts one invalid record at the end
 * and expects to be fenced; MODE is one of:
 *   vol            a ZERO record for vol_id + 100 (never reported)
 *   range          a ZERO record at offset = the volume size
 *   foreign:N      a 4 KiB DATA record at offset 0 for vol_id N (another
 *                  agent's vol_id, never reported by this one)
 *   offset:N       a 4 KiB DATA record for our vol_id at offset N
 *   zero-huge      a ZERO record of 0xfffffe00 bytes at offset 0
 *   data-big       a DATA record at offset 0 with twice the volume's size
 *                  (at most the ring's max payload)
 * and, crafted: a valid 4 KiB DATA record encoded, then its header patched
 * (the CRC is left as it was: the field checks come first) before posting:
 *   huge-payload   payload_len 0xffffff00
 *   over-quarter   payload_len = length = the ring's max payload + 256,
 *                  total_size to match (a quarter of the ring and more)
 *   data-len       length = 2 x payload_len
 * --stay keeps the session (PROGRESS every 200 ms) until SIGTERM; SIGUSR1
 * then posts --writes more random writes and waits until they are durable
 * ("extra N writes durable").
 * --print-remote prints the rdma:// ring's address and rkey the hub gave
 * ("remote addr 0x... rkey 0x... size N"). --attack, once the writes are
 * durable, posts one raw RDMA WRITE of 256 bytes of 0xe5 through the TEST
 * ONLY hook (tests/fabric/rdma_test.h) and prints its completion ("raw write ...:
 * STATUS"): "self" to our own ring's last 512 bytes with our rkey, ADDR:RKEY
 * to any address with any rkey (another agent's), own-rkey:ADDR to an
 * address outside our ring with our own rkey. Exit 0 when it completed
 * successfully, 4 when it completed with an error.
 * --pause-ms waits (printing "paused") between the sync and the writes, and
 * --hold-ms after the writes (printed "posted N writes") before PROGRESS,
 * so a test can stop or kill the hub while records sit in the ring.
 *
 * Exit: 0 done, 3 fenced as expected (--bad), 4 --attack's write failed,
 * 1 anything else.
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
#include <unistd.h>

#include <infiniband/verbs.h>

#include "rdma_test.h" /* TEST ONLY hooks of the rdma:// provider (tests/fabric/) */
#include "repfabric/ctl.h"
#include "repfabric/fabric.h"
#include "repfabric/ring.h"
#include "repfabric/sockio.h"

struct sim {
	const char *hub, *agent, *volume, *disk;
	uint32_t vol_id;
	bool bitmap_valid, stay;
	const char *expect_sync, *bad, *attack;
	bool print_remote;
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

static volatile sig_atomic_t stop, more;

static void on_term(int sig)
{
	stop = 1;
}

static void on_usr1(int sig)
{
	more = 1;
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
		case RF_FAB_EV_LANDED: /* not asked for; rdma reports it anyway */
			break;
		case RF_FAB_EV_CLOSED:
			printf("data connection closed by the hub (%s)\n", strerror(-evs[i].err));
			s->fenced = true;
			rf_fab_close(&s->fab);
			return;
		}
	}
}

/* Header fields a crafted record lies about (0: leave as encoded). */
struct lie {
	uint32_t payload_len, length, total_size;
};

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Encode and post one record, its header patched by @lie; returns its sequence. */
static uint64_t post_lie(struct sim *s, const struct rf_ring_desc *d, const struct lie *lie)
{
	size_t blen = rf_ring_encode_buf_size(d->length);
	struct rf_fab_seg segs[RF_RING_MAX_SEGS];
	struct rf_ring_desc desc = *d;
	struct rf_ring_image img;
	int64_t deadline = rf_now_ms() + 20000;
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
		if (rf_now_ms() > deadline || s->fenced)
			die("the ring stayed full for 20 s");
		fab_events(s, 10);
	}
	if (rc)
		die("cannot encode a record");
	if (lie) {
		/* The record is the last segment; its header comes first. */
		uint8_t *hdr = (uint8_t *)(uintptr_t)img.seg[img.nseg - 1].src;

		if (lie->payload_len)
			put_le32(hdr + 8, lie->payload_len);
		if (lie->total_size)
			put_le32(hdr + 12, lie->total_size);
		if (lie->length)
			put_le32(hdr + 36, lie->length);
	}
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

static uint64_t post(struct sim *s, const struct rf_ring_desc *d)
{
	return post_lie(s, d, NULL);
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

static void send_progress(struct sim *s);

/* PROGRESS, then wait until the hub's durable sequence covers everything. */
static void wait_durable(struct sim *s)
{
	uint64_t target = rf_ring_producer_next_seq(s->rp);
	int64_t deadline = rf_now_ms() + 60000;

	send_progress(s);
	while (s->durable_seq < target && !s->fenced) {
		if (rf_now_ms() > deadline)
			die("the hub did not make the writes durable within 60 s");
		pump(s, 20);
	}
	if (s->fenced)
		die("fenced");
}

/* The invalid record of --bad MODE (see the top of the file). */
static void post_bad(struct sim *s, uint64_t data_size)
{
	static uint8_t junk[4096];
	struct rf_ring_desc d = {
	    .type = RF_RING_REC_ZERO, .volume_id = s->vol_id, .offset = 0, .length = 512};
	struct rf_ring_desc data4k = {.type = RF_RING_REC_DATA,
	                              .volume_id = s->vol_id,
	                              .offset = 0,
	                              .length = sizeof(junk),
	                              .payload = junk};
	uint32_t maxp = rf_ring_max_payload(data_size);
	struct lie lie = {0}, *lp = NULL;
	uint8_t *big = NULL;

	memset(junk, 0xee, sizeof(junk));
	if (strcmp(s->bad, "vol") == 0) {
		d.volume_id = s->vol_id + 100;
	} else if (strcmp(s->bad, "range") == 0) {
		d.offset = s->size;
	} else if (strncmp(s->bad, "foreign:", 8) == 0) {
		d = data4k;
		d.volume_id = (uint32_t)strtoul(s->bad + 8, NULL, 0);
	} else if (strncmp(s->bad, "offset:", 7) == 0) {
		d = data4k;
		d.offset = strtoull(s->bad + 7, NULL, 0);
	} else if (strcmp(s->bad, "zero-huge") == 0) {
		d.length = 0xfffffe00u;
	} else if (strcmp(s->bad, "data-big") == 0) {
		if (2 * s->size > maxp)
			die("data-big: twice the volume is above the ring's max payload");
		big = malloc(2 * s->size);
		if (!big)
			die("out of memory");
		memset(big, 0xee, 2 * s->size);
		d = (struct rf_ring_desc){.type = RF_RING_REC_DATA,
		                          .volume_id = s->vol_id,
		                          .length = (uint32_t)(2 * s->size),
		                          .payload = big};
	} else if (strcmp(s->bad, "huge-payload") == 0) {
		d = data4k;
		lie.payload_len = 0xffffff00u;
		lp = &lie;
	} else if (strcmp(s->bad, "over-quarter") == 0) {
		d = data4k;
		lie.payload_len = lie.length = maxp + 256;
		lie.total_size = (uint32_t)rf_ring_record_size(maxp + 256);
		lp = &lie;
	} else if (strcmp(s->bad, "data-len") == 0) {
		d = data4k;
		lie.length = 2 * sizeof(junk);
		lp = &lie;
	} else {
		die("unknown --bad mode");
	}
	printf("posting an invalid record (%s): %s vol_id %u offset %" PRIu64 " length %u%s\n",
	       s->bad, rf_ring_type_name(d.type), d.volume_id, d.offset, d.length,
	       lp ? " (header patched)" : "");
	post_lie(s, &d, lp);
	free(big);
}

/* --attack: one raw RDMA WRITE through the TEST ONLY hook; exits. */
static void attack(struct sim *s)
{
	uint64_t raddr, rsize, addr;
	uint32_t rkey, key;
	int64_t deadline = rf_now_ms() + 20000;
	uint8_t pat[256];
	int st = -1, rc;

	if (rf_rdma_test_remote(s->fab, &raddr, &rkey, &rsize))
		die("--attack needs an rdma:// data path");
	if (strcmp(s->attack, "self") == 0) {
		addr = raddr + rsize - 512;
		key = rkey;
	} else if (strncmp(s->attack, "own-rkey:", 9) == 0) {
		addr = strtoull(s->attack + 9, NULL, 0);
		key = rkey;
	} else {
		char *end;

		addr = strtoull(s->attack, &end, 0);
		if (*end != ':')
			die("--attack: self, ADDR:RKEY or own-rkey:ADDR");
		key = (uint32_t)strtoul(end + 1, NULL, 0);
	}
	memset(pat, 0xe5, sizeof(pat));
	for (;;) {
		rc = rf_rdma_test_write(s->fab, addr, key, pat, sizeof(pat), 20000, &st);
		if (rc != -EBUSY || rf_now_ms() > deadline)
			break;
		fab_events(s, 10); /* our own posts still in flight */
	}
	if (rc) {
		fprintf(stderr, "agent-sim: raw write: %s\n", strerror(-rc));
		die("the raw write could not be posted or did not complete");
	}
	printf("raw write to 0x%" PRIx64 " rkey 0x%x (our ring: 0x%" PRIx64
	       " rkey 0x%x): %s (%d)\n",
	       addr, key, raddr, rkey, ibv_wc_status_str((enum ibv_wc_status)st), st);
	exit(st == IBV_WC_SUCCESS ? 0 : 4);
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
	                                     {"print-remote", no_argument, NULL, 'r'},
	                                     {"attack", required_argument, NULL, 'A'},
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
		case 'r':
			s.print_remote = true;
			break;
		case 'A':
			s.attack = optarg;
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
	signal(SIGUSR1, on_usr1);
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
	if (s.print_remote) {
		uint64_t raddr, rsize;
		uint32_t rkey;

		if (rf_rdma_test_remote(s.fab, &raddr, &rkey, &rsize))
			die("--print-remote needs an rdma:// data path");
		printf("remote addr 0x%" PRIx64 " rkey 0x%x size %" PRIu64 "\n", raddr, rkey,
		       rsize);
	}

	deadline = rf_now_ms() + 120000;
	while (!s.synced && !s.fenced) {
		if (rf_now_ms() > deadline)
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
		post_bad(&s, info.data_size);
		deadline = rf_now_ms() + 10000;
		while (!s.fenced && rf_now_ms() < deadline)
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
	wait_durable(&s);
	printf("%" PRIu64 " writes durable (seq %" PRIu64 ")\n", s.written, s.durable_seq);
	if (s.attack)
		attack(&s);
	send_progress(&s);
	while (s.stay && !stop) {
		int64_t next = rf_now_ms() + 200;

		while (!stop && !more && rf_now_ms() < next)
			pump(&s, 50);
		if (more) {
			uint64_t goal = s.written + s.writes;

			more = 0;
			while (s.written < goal && !s.fenced)
				guest_write(&s);
			wait_durable(&s);
			printf("extra %" PRIu64 " writes durable (seq %" PRIu64 ")\n", s.writes,
			       s.durable_seq);
		}
		send_progress(&s);
	}
	rf_fab_close(&s.fab);
	rf_ring_producer_delete(&s.rp);
	close(s.ctl);
	close(s.dfd);
	free(s.rx);
	return 0;
}
