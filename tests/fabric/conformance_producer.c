/* SPDX-License-Identifier: MIT */
/*
 * rf-fabric-conformance's producer: connect, post records derived from
 * (volume, index) through a producer-side ring, keep what is not yet durable
 * and resend it after a reconnect; also the "produce" mode's main.
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

/* ------------------------------------------------------------- producer */

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
int producer_events(struct producer *p, int timeout_ms)
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
		case RF_FAB_EV_LANDED:
			/* Never backwards, never beyond what this connection posted. */
			if (!p->landed_bad && (!p->posted_any || evs[i].seq > p->last_posted))
				p->landed_bad = "LANDED for a record not posted";
			else if (!p->landed_bad && p->landed_events && evs[i].seq < p->landed_seq)
				p->landed_bad = "LANDED went backwards";
			p->landed_seq = evs[i].seq;
			p->landed_events++;
			break;
		case RF_FAB_EV_CLOSED:
			return -ENOTCONN;
		}
	}
	return 0;
}

/* Encode and post one record; -ENOSPC when the ring is full. */
int producer_post(struct producer *p, uint32_t vol, uint64_t index)
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
	p->last_posted = img.seq;
	p->posted_any = true;
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
int producer_connect(struct producer *p)
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
	rf_fab_conn_want_landed(p->c, p->want_landed);
	p->posted_any = false;
	p->landed_events = 0;
	fifo_drop_durable(p, info.pos.durable_seq);
	return producer_resend(p);
}

/* Post one record, riding out full rings; reconnect when the hub is gone. */
int producer_put(struct producer *p, uint32_t vol, uint64_t index, bool resend)
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
int producer_quiesce(struct producer *p, int timeout_ms)
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

void producer_free(struct producer *p)
{
	producer_disconnect(p);
	free(p->fifo);
	free(p->bufs);
}

/* Produce volume 0 records from where the hub's state says it is, until
 * killed (the producer-crash case's children). */
int produce_main(const char *url, const char *state_path, uint32_t max_payload)
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
