/* SPDX-License-Identifier: MIT */
/*
 * rf-fabric-conformance's "hub" mode: a listener over a real persistent
 * ring that checks and applies every record, persists its state before the
 * ring head, publishes positions and checks the listener's counters.
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

#include "conformance.h"

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

int hub_main(const char *url, const char *ring_path, const char *state_path, uint32_t max_payload,
             uint64_t ring_size)
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
