/* SPDX-License-Identifier: MIT */
/*
 * rf-fabric-conformance: the same cases against every transport provider,
 * with a real persistent ring on the hub side.
 *
 *   rf-fabric-conformance run --url URL --dir DIR [--case NAME]...
 *   rf-fabric-conformance hub --url URL --ring FILE --state FILE --max-payload N
 *   rf-fabric-conformance produce --url URL --state FILE --max-payload N
 *
 * "run" forks hub processes (this program in "hub" mode) and acts as the
 * producer, so it can kill and restart either side. Every record's content
 * is derived from (volume, index): the hub checks each applied record's
 * length and bytes and that indices arrive contiguously per volume, so a
 * lost, duplicated, reordered or corrupted record fails the case. The hub
 * keeps its applied indices in a state file (written and fsynced before it
 * persists the ring head), which is also what it reports.
 *
 * Cases: ordering, wrap, backpressure, sizes, hub-crash, producer-crash,
 * reconnect. A hub that exits cleanly also checks the listener's counters
 * (struct rf_fab_stats) against the events and publishes it saw (a mismatch
 * fails the case like a verification error) and writes them to STATE.fab;
 * the driver checks them against what the producer did (posts, positions
 * received, a deliberately refused token in "ordering").
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "repfabric/fabric.h"
#include "repfabric/log.h"
#include "repfabric/ring.h"
#include "repfabric/sockio.h"

#define MAX_VOLUMES 4
#define TOKEN       0x5eed

/* ------------------------------------------------------------ content */

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Payload length of record @index: mostly small, some tiny, some maximal. */
static uint32_t rec_len(uint32_t vol, uint64_t index, uint32_t max_payload)
{
	uint64_t h = mix64(index * 131 + vol);

	switch (h % 8) {
	case 0:
		return 1 + (uint32_t)(h >> 8) % 16; /* tiny */
	case 1:
		return max_payload; /* as large as the ring allows */
	default:
		return 1 + (uint32_t)((h >> 8) % (max_payload < 65536 ? max_payload : 65536));
	}
}

static void rec_fill(uint8_t *p, uint32_t vol, uint64_t index, uint32_t len)
{
	uint64_t seed = mix64(index ^ ((uint64_t)vol << 56));

	for (uint32_t k = 0; k < len; k++)
		p[k] = (uint8_t)(seed >> (8 * (k % 8))) ^ (uint8_t)(k * 31);
}

static bool rec_check(const uint8_t *p, uint32_t vol, uint64_t index, uint32_t len)
{
	uint64_t seed = mix64(index ^ ((uint64_t)vol << 56));

	for (uint32_t k = 0; k < len; k++)
		if (p[k] != ((uint8_t)(seed >> (8 * (k % 8))) ^ (uint8_t)(k * 31)))
			return false;
	return true;
}

/* ------------------------------------------------------------ hub state */

struct hub_state {
	uint64_t next_index[MAX_VOLUMES]; /* next index expected per volume */
	uint64_t applied;                 /* records applied (replays excluded) */
	uint64_t replays;                 /* records seen again after a crash */
	uint64_t errors;                  /* verification failures */
	uint64_t bytes;
};

static int state_load(const char *path, struct hub_state *st)
{
	FILE *f = fopen(path, "r");

	memset(st, 0, sizeof(*st));
	if (!f)
		return errno == ENOENT ? 0 : -errno;
	if (fscanf(f,
	           "next %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " applied %" SCNu64
	           " replays %" SCNu64 " errors %" SCNu64 " bytes %" SCNu64,
	           &st->next_index[0], &st->next_index[1], &st->next_index[2], &st->next_index[3],
	           &st->applied, &st->replays, &st->errors, &st->bytes) != 8) {
		fclose(f);
		return -EBADMSG;
	}
	fclose(f);
	return 0;
}

static int state_save(const char *path, const struct hub_state *st)
{
	char tmp[4200];
	FILE *f;
	int rc = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return -errno;
	fprintf(f,
	        "next %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " applied %" PRIu64
	        " replays %" PRIu64 " errors %" PRIu64 " bytes %" PRIu64 "\n",
	        st->next_index[0], st->next_index[1], st->next_index[2], st->next_index[3],
	        st->applied, st->replays, st->errors, st->bytes);
	if (fflush(f) || fsync(fileno(f)))
		rc = -errno;
	fclose(f);
	if (!rc && rename(tmp, path))
		rc = -errno;
	return rc;
}

/* The listener's counters as the hub left them at a clean exit. */
static void fab_path(char *buf, size_t len, const char *state_path)
{
	snprintf(buf, len, "%s.fab", state_path);
}

static int fab_save(const char *state_path, const struct rf_fab_stats *st)
{
	char path[4200];
	FILE *f;

	fab_path(path, sizeof(path), state_path);
	f = fopen(path, "w");
	if (!f)
		return -errno;
	fprintf(f,
	        "attaches %" PRIu64 " detaches %" PRIu64 " refused %" PRIu64 " completions %" PRIu64
	        " credits %" PRIu64 " credit_bytes %" PRIu64 " errors %" PRIu64 "\n",
	        st->attaches, st->detaches, st->refused, st->completions, st->credits,
	        st->credit_bytes, st->errors);
	return fclose(f) ? -errno : 0;
}

static int fab_load(const char *state_path, struct rf_fab_stats *st)
{
	char path[4200];
	FILE *f;
	int n;

	fab_path(path, sizeof(path), state_path);
	f = fopen(path, "r");
	if (!f)
		return -errno;
	n = fscanf(f,
	           "attaches %" SCNu64 " detaches %" SCNu64 " refused %" SCNu64
	           " completions %" SCNu64 " credits %" SCNu64 " credit_bytes %" SCNu64
	           " errors %" SCNu64,
	           &st->attaches, &st->detaches, &st->refused, &st->completions, &st->credits,
	           &st->credit_bytes, &st->errors);
	fclose(f);
	return n == 7 ? 0 : -EBADMSG;
}

/* ------------------------------------------------------------------ hub */

struct hub {
	struct rf_ring *ring;
	const char *state_path;
	struct hub_state st;
	uint32_t max_payload;
	struct rf_fab_peer *peer;
	uint64_t landed_seq; /* the newest DATA event's sequence */
	bool dirty;          /* applied records whose head is not persisted */
	struct rf_fab_ring_mem mem;
	const char *ring_path;
	/* What the hub saw, to check the listener's counters against. */
	uint64_t ev_attached, ev_detached, ev_detached_failed, ev_data, publishes;
};

static volatile sig_atomic_t hub_stop, hub_hold;

static void on_term(int sig)
{
	hub_stop = 1;
}

static void on_usr1(int sig)
{
	hub_hold = !hub_hold;
}

/* Check one record and fold it into the state. */
static void hub_apply(struct hub *h, const struct rf_ring_record *r)
{
	uint64_t index = r->timestamp_ns;
	uint32_t vol = r->volume_id;

	if (vol >= MAX_VOLUMES || r->type != RF_RING_REC_DATA) {
		RF_ERR("hub", "seq %" PRIu64 ": unexpected volume %u / type %u", r->seq, vol,
		       r->type);
		h->st.errors++;
		return;
	}
	if (index < h->st.next_index[vol]) {
		h->st.replays++; /* re-applied after a crash: idempotent */
		return;
	}
	if (index != h->st.next_index[vol]) {
		RF_ERR("hub",
		       "volume %u: record index %" PRIu64 " arrived, expected %" PRIu64
		       " (lost or reordered)",
		       vol, index, h->st.next_index[vol]);
		h->st.errors++;
	} else if (r->length != rec_len(vol, index, h->max_payload) ||
	           !rec_check(r->payload, vol, index, r->length)) {
		RF_ERR("hub", "volume %u: record index %" PRIu64 " has wrong content", vol, index);
		h->st.errors++;
	}
	h->st.next_index[vol] = index + 1;
	h->st.applied++;
	h->st.bytes += r->length;
}

/* Apply every valid record at the head; persist state, then the head. */
static int hub_drain(struct hub *h)
{
	struct rf_ring_record r;
	struct rf_ring_verdict why;
	int n = 0, rc;

	while (!hub_hold && rf_ring_peek(h->ring, &r, &why) == 0) {
		hub_apply(h, &r);
		rc = rf_ring_advance(h->ring, &r);
		if (rc)
			return rc;
		n++;
		h->dirty = true;
	}
	if (!hub_hold && h->peer) {
		uint64_t pos, seq;

		rf_ring_head(h->ring, &pos, &seq);
		if (seq <= h->landed_seq) {
			RF_ERR("hub", "record %" PRIu64 " was announced but is invalid: %s", seq,
			       why.reason);
			h->st.errors++;
			rf_fab_peer_fence(h->peer);
		}
	}
	if (h->dirty) {
		rc = state_save(h->state_path, &h->st);
		if (!rc)
			rc = rf_ring_persist_head(h->ring);
		if (rc)
			return rc;
		h->dirty = false;
	}
	return n;
}

static void hub_publish(struct hub *h)
{
	struct rf_fab_position pos;

	if (!h->peer)
		return;
	rf_ring_head(h->ring, &pos.head_pos, &pos.head_seq);
	pos.durable_pos = pos.head_pos;
	pos.durable_seq = pos.head_seq;
	if (rf_fab_publish(h->peer, &pos) == 0)
		h->publishes++;
}

/* A DETACHED error the fabric counts as a failure (fabric.h): not a clean
 * disconnect, a fence, or a tcp/shm reset or broken pipe. */
static bool detach_failed(int err)
{
	return err && err != -ECANCELED && err != -ECONNRESET && err != -EPIPE;
}

/* The listener's counters must agree with what the hub saw. Returns the
 * number of rules broken (each logged). */
static int hub_check_stats(const struct hub *h, const struct rf_fab_listener *l)
{
	struct rf_fab_stats st;
	int bad = 0;

#define RULE(cond)                                                                                 \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			RF_ERR("hub", "fabric counters: %s does not hold", #cond);                 \
			bad++;                                                                     \
		}                                                                                  \
	} while (0)
	rf_fab_listener_stats(l, &st);
	RF_INFO("hub",
	        "fabric counters (%s): attaches %" PRIu64 " detaches %" PRIu64 " refused %" PRIu64
	        " completions %" PRIu64 " credits %" PRIu64 " credit_bytes %" PRIu64
	        " errors %" PRIu64 "; seen: %" PRIu64 " DATA events, %" PRIu64 " publishes",
	        rf_fab_listener_scheme(l), st.attaches, st.detaches, st.refused, st.completions,
	        st.credits, st.credit_bytes, st.errors, h->ev_data, h->publishes);
	RULE(st.attaches >= h->ev_attached);
	RULE(st.detaches >= h->ev_detached);
	RULE(st.attaches >= st.detaches);
	/* Every DATA event stems from at least one doorbell. */
	RULE(st.completions >= h->ev_data);
	/* Every credit is a publish that returned 0 (rdma may coalesce). */
	RULE(st.credits <= h->publishes);
	RULE(h->publishes == 0 || st.credits > 0);
	/* The hub publishes only after applying records: the head moved. */
	RULE(st.credits == 0 || st.credit_bytes > 0);
	RULE(st.errors >= st.refused + h->ev_detached_failed);
#undef RULE
	return bad;
}

static int hub_attach(void *ctx, uint64_t token, struct rf_fab_ring_mem *mem)
{
	struct hub *h = ctx;
	struct rf_ring_info info;
	uint64_t end_pos, end_seq;
	int rc;

	if (token != TOKEN)
		return -ENOENT;
	if (h->peer)
		return -EBUSY;
	hub_hold = 0;
	rc = hub_drain(h);
	if (rc < 0)
		return rc;
	rf_ring_head(h->ring, &end_pos, &end_seq);
	rc = rf_ring_begin_session(h->ring, &info);
	if (rc)
		return rc;
	h->landed_seq = 0;
	memset(mem, 0, sizeof(*mem));
	mem->data = (uint8_t *)rf_ring_base(h->ring) + rf_ring_data_offset(h->ring);
	mem->data_size = info.data_size;
	mem->path = h->ring_path;
	mem->data_off = rf_ring_data_offset(h->ring);
	mem->info.ring_id = info.ring_id;
	mem->info.data_size = info.data_size;
	mem->info.pos.durable_pos = end_pos;
	mem->info.pos.durable_seq = end_seq;
	mem->info.pos.head_pos = info.head_pos;
	mem->info.pos.head_seq = info.head_seq;
	return 0;
}

static const struct rf_fab_hub_ops hub_ops = {.attach = hub_attach};

static int hub_main(const char *url, const char *ring_path, const char *state_path,
                    uint32_t max_payload, uint64_t ring_size)
{
	struct hub h = {
	    .state_path = state_path, .max_payload = max_payload, .ring_path = ring_path};
	struct rf_fab_listener *l = NULL;
	struct rf_ring_scan_result scan;
	int rc;

	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	signal(SIGUSR1, on_usr1);
	rc = state_load(state_path, &h.st);
	if (rc)
		goto out;
	rc = rf_ring_open(&h.ring, ring_path);
	if (rc == -ENOENT)
		rc = rf_ring_create(&h.ring, ring_path, ring_size);
	if (rc)
		goto out;
	rf_ring_scan(h.ring, &scan);
	RF_INFO("hub", "ring %s: %" PRIu64 " records valid at start (stop: %s)", ring_path,
	        scan.records, scan.stop.reason);
	rc = hub_drain(&h);
	if (rc < 0)
		goto out;
	rc = rf_fab_listen(url, &hub_ops, &h, &l);
	if (rc)
		goto out;
	printf("hub ready\n");
	fflush(stdout);
	while (!hub_stop) {
		struct rf_fab_hub_event evs[64];
		int n = rf_fab_listener_poll(l, evs, 64, 50);
		bool data = false;

		if (n < 0 && n != -EINTR) {
			rc = n;
			break;
		}
		for (int i = 0; i < n; i++) {
			switch (evs[i].type) {
			case RF_FAB_HEV_ATTACHED:
				h.peer = evs[i].peer;
				h.ev_attached++;
				break;
			case RF_FAB_HEV_DATA:
				if (evs[i].peer == h.peer && evs[i].seq > h.landed_seq)
					h.landed_seq = evs[i].seq;
				data = true;
				h.ev_data++;
				break;
			case RF_FAB_HEV_DETACHED:
				if (evs[i].peer == h.peer)
					h.peer = NULL;
				h.ev_detached++;
				h.ev_detached_failed += detach_failed(evs[i].err);
				break;
			}
		}
		if (data || !hub_hold) {
			rc = hub_drain(&h);
			if (rc < 0)
				break;
			if (rc > 0)
				hub_publish(&h);
			rc = 0;
		}
	}
	if (l) {
		struct rf_fab_stats fst;

		if (hub_check_stats(&h, l))
			h.st.errors++; /* fails the case through the exit status */
		rf_fab_listener_stats(l, &fst);
		if (fab_save(state_path, &fst))
			h.st.errors++;
	}
out:
	rf_fab_listener_close(&l);
	if (h.ring && h.dirty)
		state_save(state_path, &h.st);
	rf_ring_close(&h.ring);
	if (rc < 0)
		RF_ERR("hub", "exiting: %s", strerror(-rc));
	return rc < 0 || h.st.errors ? 1 : 0;
}

/* ------------------------------------------------------------- producer */

struct pending {
	uint32_t vol;
	uint64_t index;
	uint64_t seq;
};

struct producer {
	const char *url;
	struct rf_fab_conn *c;
	struct rf_ring_producer *rp;
	uint32_t max_payload;
	uint64_t next_index[MAX_VOLUMES];
	struct pending *fifo; /* posted, not yet durable, in order */
	size_t fifo_head, fifo_len, fifo_cap;
	void **bufs; /* encode buffers in flight (freed on SENT or close) */
	size_t nbufs, bufs_cap;
	uint64_t reconnects, enospc_waits, positions;
	uint64_t durable_seq;
	uint64_t posts; /* rf_fab_post calls that returned 0 */
};

static void bufs_release(struct producer *p, void *buf)
{
	for (size_t i = 0; i < p->nbufs; i++) {
		if (p->bufs[i] == buf) {
			p->bufs[i] = p->bufs[--p->nbufs];
			free(buf);
			return;
		}
	}
}

static void fifo_push(struct producer *p, struct pending e)
{
	if (p->fifo_len == p->fifo_cap) {
		size_t ncap = p->fifo_cap ? 2 * p->fifo_cap : 1024;
		struct pending *n = malloc(ncap * sizeof(*n));

		if (!n)
			abort();
		for (size_t i = 0; i < p->fifo_len; i++)
			n[i] = p->fifo[(p->fifo_head + i) % p->fifo_cap];
		free(p->fifo);
		p->fifo = n;
		p->fifo_cap = ncap;
		p->fifo_head = 0;
	}
	p->fifo[(p->fifo_head + p->fifo_len++) % p->fifo_cap] = e;
}

static void fifo_drop_durable(struct producer *p, uint64_t durable_seq)
{
	while (p->fifo_len && p->fifo[p->fifo_head].seq < durable_seq) {
		p->fifo_head = (p->fifo_head + 1) % p->fifo_cap;
		p->fifo_len--;
	}
	if (durable_seq > p->durable_seq)
		p->durable_seq = durable_seq;
}

/* Handle events; returns 0, or -ENOTCONN when the connection died. */
static int producer_events(struct producer *p, int timeout_ms)
{
	struct rf_fab_event evs[64];
	int n = rf_fab_poll(p->c, evs, 64, timeout_ms);

	if (n < 0)
		return n;
	for (int i = 0; i < n; i++) {
		switch (evs[i].type) {
		case RF_FAB_EV_SENT:
			bufs_release(p, (void *)(uintptr_t)evs[i].cookie);
			break;
		case RF_FAB_EV_POSITION:
			p->positions++;
			rf_ring_producer_update_head(p->rp, evs[i].pos.head_pos);
			fifo_drop_durable(p, evs[i].pos.durable_seq);
			break;
		case RF_FAB_EV_CLOSED:
			return -ENOTCONN;
		}
	}
	return 0;
}

/* Encode and post one record; -ENOSPC when the ring is full. */
static int producer_post(struct producer *p, uint32_t vol, uint64_t index)
{
	uint32_t len = rec_len(vol, index, p->max_payload);
	size_t blen = rf_ring_encode_buf_size(len);
	struct rf_fab_seg segs[RF_RING_MAX_SEGS];
	struct rf_ring_image img;
	uint8_t *buf;
	int rc;

	buf = malloc(blen);
	if (!buf)
		return -ENOMEM;
	rec_fill(buf + RF_RING_REC_HDR_SIZE, vol, index, len);
	rc = rf_ring_producer_encode(p->rp,
	                             &(struct rf_ring_desc){.type = RF_RING_REC_DATA,
	                                                    .volume_id = vol,
	                                                    .offset = (index * 4096) % (1ull << 30),
	                                                    .length = len,
	                                                    .payload = buf + RF_RING_REC_HDR_SIZE,
	                                                    .timestamp_ns = index},
	                             buf, blen, &img);
	if (rc) {
		free(buf);
		return rc;
	}
	for (unsigned i = 0; i < img.nseg; i++)
		segs[i] = (struct rf_fab_seg){.off = img.seg[i].file_off - RF_RING_HEADER_SIZE,
		                              .buf = img.seg[i].src,
		                              .len = img.seg[i].len};
	if (p->nbufs == p->bufs_cap) {
		p->bufs_cap = p->bufs_cap ? 2 * p->bufs_cap : 256;
		p->bufs = realloc(p->bufs, p->bufs_cap * sizeof(*p->bufs));
		if (!p->bufs)
			abort();
	}
	p->bufs[p->nbufs++] = buf;
	for (int tries = 0;; tries++) {
		rc = rf_fab_post(p->c, segs, img.nseg, img.seq, (uintptr_t)buf);
		if (rc != -EAGAIN || tries > 10000)
			break;
		rc = producer_events(p, 10);
		if (rc)
			return rc;
	}
	/* Not posted: the buffer stays listed and is freed on reconnect, and
	 * the caller posts this record again after the resend. */
	if (rc)
		return -ENOTCONN;
	p->posts++;
	fifo_push(p, (struct pending){.vol = vol, .index = index, .seq = img.seq});
	return 0;
}

static void producer_disconnect(struct producer *p)
{
	rf_fab_close(&p->c);
	rf_ring_producer_delete(&p->rp);
	for (size_t i = 0; i < p->nbufs; i++)
		free(p->bufs[i]);
	p->nbufs = 0;
}

static int producer_resend(struct producer *p);

/* Connect (retrying with capped backoff for up to 60 s), then resend what
 * the hub does not have. */
static int producer_connect(struct producer *p)
{
	struct rf_fab_ring_info info;
	int64_t deadline = rf_now_ms() + 60000;
	int delay = 20, rc;

	producer_disconnect(p);
	for (;;) {
		rc = rf_fab_connect(p->url, TOKEN, 5000, &p->c, &info);
		if (rc == 0)
			break;
		if (rf_now_ms() > deadline)
			return rc;
		usleep((useconds_t)delay * 1000);
		delay = delay * 2 > 1000 ? 1000 : delay * 2;
	}
	rc = rf_ring_producer_new(&p->rp, &(struct rf_ring_info){.ring_id = info.ring_id,
	                                                         .data_size = info.data_size,
	                                                         .head_pos = info.pos.head_pos,
	                                                         .head_seq = info.pos.head_seq});
	if (rc)
		return rc;
	fifo_drop_durable(p, info.pos.durable_seq);
	return producer_resend(p);
}

/* Post one record, riding out full rings; reconnect when the hub is gone. */
static int producer_put(struct producer *p, uint32_t vol, uint64_t index, bool resend)
{
	int64_t deadline = rf_now_ms() + 60000;

	for (;;) {
		int rc = p->c ? producer_post(p, vol, index) : -ENOTCONN;

		if (rc == 0)
			return 0;
		if (rf_now_ms() > deadline) {
			RF_ERR("producer", "record %" PRIu64 " not posted within 60 s: %s", index,
			       strerror(-rc));
			return -ETIMEDOUT;
		}
		if (rc == -ENOSPC) {
			p->enospc_waits++;
			rc = producer_events(p, 10);
		}
		if (rc == -ENOTCONN) {
			if (resend)
				return rc; /* the caller restarts the resend */
			p->reconnects++;
			rc = producer_connect(p);
			if (rc == 0)
				continue;
		}
		if (rc && rc != -ENOTCONN)
			return rc;
	}
}

static int producer_resend(struct producer *p)
{
	size_t n = p->fifo_len;
	struct pending *old = malloc((n ? n : 1) * sizeof(*old));
	int rc = 0;

	if (!old)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		old[i] = p->fifo[(p->fifo_head + i) % p->fifo_cap];
	p->fifo_len = 0;
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = producer_put(p, old[i].vol, old[i].index, true);
	if (rc) {
		/* Put back what was not resent, ahead of anything newer. */
		p->fifo_len = 0;
		for (size_t i = 0; i < n; i++)
			fifo_push(p, old[i]);
	}
	free(old);
	return rc;
}

/* Wait until the hub made everything posted durable (bounded). */
static int producer_quiesce(struct producer *p, int timeout_ms)
{
	int64_t deadline = rf_now_ms() + timeout_ms;

	while (p->fifo_len) {
		int rc;

		if (rf_now_ms() > deadline) {
			RF_ERR("producer", "%zu records still not durable after %d ms", p->fifo_len,
			       timeout_ms);
			return -ETIMEDOUT;
		}
		rc = producer_events(p, 20);
		if (rc == -ENOTCONN) {
			p->reconnects++;
			rc = producer_connect(p);
		}
		if (rc)
			return rc;
	}
	return 0;
}

static void producer_free(struct producer *p)
{
	producer_disconnect(p);
	free(p->fifo);
	free(p->bufs);
}

/* Produce volume 0 records from where the hub's state says it is, until
 * killed (the producer-crash case's children). */
static int produce_main(const char *url, const char *state_path, uint32_t max_payload)
{
	struct producer p = {.url = url, .max_payload = max_payload};
	struct hub_state st;
	uint64_t start;

	if (state_load(state_path, &st))
		return 3;
	start = st.next_index[0];
	if (producer_connect(&p))
		return 2;
	for (uint64_t i = start; i < start + 100000; i++)
		if (producer_put(&p, 0, i, false))
			return 1;
	producer_free(&p);
	return 0;
}

/* --------------------------------------------------------------- driver */

struct run_ctx {
	const char *self;
	const char *url;
	const char *dir;
	char ring[4096], state[4096], log[4096];
	uint64_t ring_size;
	uint32_t max_payload;
	pid_t hub;
};

static pid_t hub_spawn(struct run_ctx *r)
{
	char maxp[32], rsize[32], line[64] = "";
	int pfd[2];
	pid_t pid;
	FILE *f;

	snprintf(maxp, sizeof(maxp), "%u", r->max_payload);
	snprintf(rsize, sizeof(rsize), "%" PRIu64, r->ring_size);
	if (pipe(pfd))
		return -1;
	pid = fork();
	if (pid == 0) {
		int logfd = open(r->log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		dup2(pfd[1], 1);
		if (logfd >= 0)
			dup2(logfd, 2);
		close(pfd[0]);
		execl(r->self, r->self, "hub", "--url", r->url, "--ring", r->ring, "--state",
		      r->state, "--max-payload", maxp, "--ring-size", rsize, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	f = fdopen(pfd[0], "r");
	if (!f || !fgets(line, sizeof(line), f) || strncmp(line, "hub ready", 9) != 0) {
		RF_ERR("run", "hub did not start (see %s)", r->log);
		if (f)
			fclose(f);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return -1;
	}
	fclose(f);
	r->hub = pid;
	return pid;
}

/* Stop the hub with SIGTERM and read its final state. */
static int hub_finish(struct run_ctx *r, struct hub_state *st)
{
	int status = 0;

	if (r->hub > 0) {
		kill(r->hub, SIGTERM);
		waitpid(r->hub, &status, 0);
		r->hub = 0;
	}
	if (state_load(r->state, st))
		return -EBADMSG;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

static void hub_crash(struct run_ctx *r)
{
	kill(r->hub, SIGKILL);
	waitpid(r->hub, NULL, 0);
	r->hub = 0;
}

struct case_opts {
	uint64_t ring_size;
	uint32_t max_payload;
	uint64_t records;
	int hub_crashes;
	int producer_crashes;
	int reconnects;
	bool backpressure;
	bool bad_token; /* first try a token the hub refuses */
};

static int check_final(struct run_ctx *r, const char *name, const struct producer *p,
                       const uint64_t *expect, int64_t t0, bool failed_before)
{
	struct hub_state st;
	int rc = hub_finish(r, &st), bad = rc != 0 || failed_before;

	for (int v = 0; v < MAX_VOLUMES; v++)
		if (st.next_index[v] != expect[v])
			bad = 1;
	bad |= st.errors != 0;
	printf("%-15s %s: applied %" PRIu64 " records (%" PRIu64 " bytes), replays %" PRIu64
	       ", errors %" PRIu64 ", per-volume next index %" PRIu64 "/%" PRIu64
	       " (expected %" PRIu64 "/%" PRIu64 "), reconnects %" PRIu64
	       ", ring-full waits %" PRIu64 ", %" PRId64 " ms\n",
	       name, bad ? "FAIL" : "ok", st.applied, st.bytes, st.replays, st.errors,
	       st.next_index[0], st.next_index[1], expect[0], expect[1], p ? p->reconnects : 0,
	       p ? p->enospc_waits : 0, rf_now_ms() - t0);
	fflush(stdout);
	return bad ? -1 : 0;
}

/*
 * The last hub's counters against what the producer did. Every post brings
 * at most one doorbell; every position the producer got was sent; with one
 * hub and one clean connection the attach, refusal and error counts are
 * exact. Returns 0 or -1 (the reason printed).
 */
static int check_fab(const struct run_ctx *r, const char *name, const struct case_opts *o,
                     const struct producer *p)
{
	bool one_hub = o->hub_crashes == 0,
	     clean = one_hub && !o->producer_crashes && !o->reconnects;
	uint64_t refused = o->bad_token ? 1 : 0;
	struct rf_fab_stats st;
	const char *why = NULL;

	if (fab_load(r->state, &st))
		why = "the hub left no counters";
	else if (st.completions == 0 || st.credits == 0 || st.credit_bytes == 0)
		why = "no completion, credit or credit byte counted";
	else if (!o->producer_crashes && st.completions > p->posts)
		why = "more completions than posts";
	else if (one_hub && st.credits < p->positions)
		why = "fewer credits than positions the producer received";
	else if (clean && (st.attaches != 1 || st.detaches > 1))
		why = "not exactly one attach";
	else if (clean && (st.refused != refused || st.errors != refused))
		why = "refusals or errors other than the refused token";
	printf("%-15s %s: fabric counters: attaches %" PRIu64 " detaches %" PRIu64
	       " refused %" PRIu64 " completions %" PRIu64 " (posts %" PRIu64 ") credits %" PRIu64
	       " (positions %" PRIu64 ") credit_bytes %" PRIu64 " errors %" PRIu64 "%s%s\n",
	       name, why ? "FAIL" : "ok", st.attaches, st.detaches, st.refused, st.completions,
	       p->posts, st.credits, p->positions, st.credit_bytes, st.errors, why ? ": " : "",
	       why ? why : "");
	fflush(stdout);
	return why ? -1 : 0;
}

/* Wait until the hub's state shows volume @vol past where it was. */
static int wait_for_progress(const char *state_path, uint32_t vol, int timeout_ms)
{
	int64_t deadline = rf_now_ms() + timeout_ms;
	struct hub_state st;
	uint64_t start;

	if (state_load(state_path, &st))
		return -EBADMSG;
	start = st.next_index[vol];
	while (rf_now_ms() < deadline) {
		usleep(10000);
		if (state_load(state_path, &st) == 0 && st.next_index[vol] > start)
			return 0;
	}
	return -ETIMEDOUT;
}

static int run_case(struct run_ctx *r, const char *name, const struct case_opts *o)
{
	struct producer p = {.url = r->url};
	uint64_t expect[MAX_VOLUMES] = {0};
	int64_t t0 = rf_now_ms();
	int rc = 0, crash_every, rec_every;

	snprintf(r->ring, sizeof(r->ring), "%s/%s.ring", r->dir, name);
	snprintf(r->state, sizeof(r->state), "%s/%s.state", r->dir, name);
	snprintf(r->log, sizeof(r->log), "%s/%s.hub.log", r->dir, name);
	unlink(r->ring);
	unlink(r->state);
	r->ring_size = o->ring_size;
	r->max_payload = o->max_payload;
	p.max_payload = o->max_payload;
	if (hub_spawn(r) < 0)
		return -1;

	crash_every = o->hub_crashes ? (int)(o->records / (uint64_t)(o->hub_crashes + 1)) : 0;
	rec_every = o->reconnects ? (int)(o->records / (uint64_t)(o->reconnects + 1)) : 0;

	if (o->producer_crashes) {
		/* Volume 0 is written by children that are SIGKILLed mid-stream;
		 * the hub must hold a valid, contiguous prefix of each. Volume 1
		 * is then written by a producer that lives to the end. */
		for (int k = 0; k < o->producer_crashes; k++) {
			char maxp[32];
			pid_t child;

			/* fork + exec: a child may not reuse its parent's RDMA
			 * device handles, so it starts as a fresh process. */
			snprintf(maxp, sizeof(maxp), "%u", o->max_payload);
			child = fork();
			if (child == 0) {
				execl(r->self, r->self, "produce", "--url", r->url, "--state",
				      r->state, "--max-payload", maxp, (char *)NULL);
				_exit(127);
			}
			/* Kill it mid-stream: once the hub has applied some of its
			 * records (bounded wait: exec and connect are slow in the
			 * VM), after a further random moment. */
			if (wait_for_progress(r->state, 0, 20000) < 0)
				RF_WARN("run", "%s: producer %d made no progress in 20 s", name, k);
			usleep((useconds_t)(mix64((uint64_t)k) % 150000));
			kill(child, SIGKILL);
			waitpid(child, NULL, 0);
			usleep(200000); /* let the hub see the disconnect and drain */
		}
	}

	if (o->bad_token) {
		struct rf_fab_ring_info info;
		struct rf_fab_conn *bad = NULL;

		rc = rf_fab_connect(r->url, TOKEN ^ 0xbad, 5000, &bad, &info);
		rf_fab_close(&bad);
		if (rc != -ENOENT) {
			RF_ERR("run", "%s: a bad token got %d, not -ENOENT", name, rc);
			rc = -1;
		} else {
			rc = 0;
		}
	}
	if (rc == 0)
		rc = producer_connect(&p);
	if (o->producer_crashes && rc == 0) {
		/* The attach drained the ring: the state holds how far volume 0
		 * got, and nothing past it may appear later. */
		struct hub_state st;

		if (state_load(r->state, &st))
			rc = -EBADMSG;
		expect[0] = st.next_index[0];
		if (expect[0] == 0) {
			RF_ERR("run", "%s: the killed producers got no record through", name);
			rc = -1;
		}
	}
	if (o->backpressure && rc == 0) {
		/* Hold the hub: the producer must be refused (-ENOSPC) once the
		 * ring is full, and never overwrite an unconsumed record. */
		uint64_t posted = 0;

		kill(r->hub, SIGUSR1);
		usleep(200000);
		for (;; posted++) {
			rc = producer_post(&p, 1, expect[1]);
			if (rc)
				break;
			expect[1]++;
			producer_events(&p, 0);
		}
		if (rc != -ENOSPC || posted == 0) {
			RF_ERR("run",
			       "%s: expected -ENOSPC after filling the ring, got %d after %" PRIu64,
			       name, rc, posted);
			rc = -1;
		} else {
			printf("%-15s ring full after %" PRIu64 " records (%" PRIu64
			       " bytes free): producer refused, as it must be\n",
			       name, posted, rf_ring_producer_free(p.rp));
			rc = 0;
		}
		kill(r->hub, SIGUSR1); /* release */
	}
	for (uint64_t i = 0; i < o->records && rc == 0; i++) {
		rc = producer_put(&p, 1, expect[1], false);
		if (rc)
			break;
		expect[1]++;
		if (crash_every && i % (uint64_t)crash_every == (uint64_t)crash_every - 1 &&
		    i + 1 < o->records) {
			hub_crash(r);
			if (hub_spawn(r) < 0)
				rc = -1;
		}
		if (rec_every && i % (uint64_t)rec_every == (uint64_t)rec_every - 1 &&
		    i + 1 < o->records) {
			p.reconnects++;
			rc = producer_connect(&p);
		}
		if (rc == 0)
			producer_events(&p, 0); /* a death shows on the next post */
	}
	if (rc == 0)
		rc = producer_quiesce(&p, 60000);
	if (rc) {
		if (rc != -1)
			RF_ERR("run", "%s: producer failed: %s", name, strerror(-rc));
		rc = -1;
	}
	if (check_final(r, name, &p, expect, t0, rc != 0))
		rc = -1;
	else if (check_fab(r, name, o, &p))
		rc = -1;
	producer_free(&p);
	return rc;
}

static const struct {
	const char *name;
	struct case_opts o;
} cases[] = {
    {"ordering",
     {.ring_size = 8 << 20, .max_payload = 256 << 10, .records = 3000, .bad_token = true}},
    {"wrap", {.ring_size = 256 << 10, .max_payload = 16 << 10, .records = 4000}},
    {"backpressure",
     {.ring_size = 256 << 10, .max_payload = 8 << 10, .records = 500, .backpressure = true}},
    {"sizes", {.ring_size = 64 << 20, .max_payload = 16 << 20, .records = 40}},
    {"reconnect",
     {.ring_size = 1 << 20, .max_payload = 32 << 10, .records = 2000, .reconnects = 5}},
    {"hub-crash",
     {.ring_size = 1 << 20, .max_payload = 32 << 10, .records = 2000, .hub_crashes = 5}},
    {"producer-crash",
     {.ring_size = 1 << 20, .max_payload = 32 << 10, .records = 300, .producer_crashes = 3}},
};

static int run_main(const char *self, const char *url, const char *dir, char **only, int nonly)
{
	struct run_ctx r = {.self = self, .url = url, .dir = dir};
	int failed = 0, ran = 0;

	signal(SIGPIPE, SIG_IGN);
	printf("conformance: %s, ring files in %s\n", url, dir);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool want = nonly == 0;

		for (int k = 0; k < nonly; k++)
			want |= strcmp(only[k], cases[i].name) == 0;
		if (!want)
			continue;
		ran++;
		if (run_case(&r, cases[i].name, &cases[i].o)) {
			failed++;
			if (r.hub > 0)
				hub_crash(&r);
		}
	}
	printf("conformance: %d of %d cases passed on %s\n", ran - failed, ran, url);
	return failed || ran == 0 ? 1 : 0;
}

static void usage(void)
{
	fprintf(stderr,
	        "usage: rf-fabric-conformance run --url URL --dir DIR [--case NAME]...\n"
	        "       rf-fabric-conformance hub --url URL --ring FILE --state FILE "
	        "--max-payload N --ring-size N\n"
	        "       rf-fabric-conformance produce --url URL --state FILE --max-payload N\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"url", required_argument, NULL, 'u'},
	                                     {"dir", required_argument, NULL, 'd'},
	                                     {"case", required_argument, NULL, 'c'},
	                                     {"ring", required_argument, NULL, 'r'},
	                                     {"state", required_argument, NULL, 's'},
	                                     {"max-payload", required_argument, NULL, 'm'},
	                                     {"ring-size", required_argument, NULL, 'z'},
	                                     {"debug", no_argument, NULL, 'D'},
	                                     {NULL, 0, NULL, 0}};
	const char *url = NULL, *dir = NULL, *ring = NULL, *state = NULL;
	char *only[16];
	int nonly = 0, c;
	uint32_t maxp = 0;
	uint64_t rsize = 0;
	char self[4096];
	ssize_t n;

	if (argc < 2) {
		usage();
		return 2;
	}
	optind = 2;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'u':
			url = optarg;
			break;
		case 'd':
			dir = optarg;
			break;
		case 'c':
			if (nonly < 16)
				only[nonly++] = optarg;
			break;
		case 'r':
			ring = optarg;
			break;
		case 's':
			state = optarg;
			break;
		case 'm':
			maxp = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'z':
			rsize = strtoull(optarg, NULL, 0);
			break;
		case 'D':
			rf_log_set_level(RF_LOG_DEBUG);
			break;
		default:
			usage();
			return 2;
		}
	}
	rf_log_set_program(argv[1]);
	if (strcmp(argv[1], "hub") == 0 && url && ring && state && maxp && rsize)
		return hub_main(url, ring, state, maxp, rsize);
	if (strcmp(argv[1], "produce") == 0 && url && state && maxp)
		return produce_main(url, state, maxp);
	if (strcmp(argv[1], "run") == 0 && url && dir) {
		n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n <= 0)
			return 2;
		self[n] = '\0';
		return run_main(self, url, dir, only, nonly);
	}
	usage();
	return 2;
}
