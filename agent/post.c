/* SPDX-License-Identifier: MIT */
/*
 * The data path, one job: move records from the agent's queue into the
 * hub's ring through the transport. Attach to the ring (rf_fab_connect with
 * the control session's token), encode and post queued records (split at
 * the ring's largest payload), read and post sync/resend ranges under their
 * range lock, and reap the transport's events (SENT frees a buffer,
 * POSITION makes room and records durable, CLOSED breaks the link). Loop
 * thread only.
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "agent_internal.h"
#include "repfabric/log.h"

#define POST_RETRIES 200 /* rf_fab_post -EAGAIN: reap and retry this often */

/* ---- encode buffers of the read path ---------------------------------------- */

/*
 * Buffers of the sync/resend read path (rfa_post_range), kept for reuse: a
 * fresh 1 MiB malloc is an mmap, 256 zero-filled page faults and a munmap
 * per chunk. A post owns its buffer as any encode buffer; at SENT it goes
 * back here (any buffer of at least sync_buf_size() is taken, so which
 * path made it does not matter), one freed elsewhere (rfa_fab_close) is simply
 * gone. Shared by the agents of a process; at most SYNC_BUF_KEEP are kept.
 */
#define SYNC_BUF_KEEP 8

static pthread_mutex_t sync_buf_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *sync_buf_kept[SYNC_BUF_KEEP];
static unsigned sync_buf_nkept;

/* Room for the encoding of the largest read (a SYNC_READ, a resend run). */
static size_t sync_buf_size(void)
{
	return rf_ring_encode_buf_size(RF_CTL_MAX_DATA);
}

/* A buffer of at least @len bytes; release it with sync_buf_put or free. */
static uint8_t *sync_buf_get(size_t len)
{
	uint8_t *b = NULL;

	if (len > sync_buf_size())
		return malloc(len);
	pthread_mutex_lock(&sync_buf_lock);
	if (sync_buf_nkept)
		b = sync_buf_kept[--sync_buf_nkept];
	pthread_mutex_unlock(&sync_buf_lock);
	return b ? b : malloc(sync_buf_size());
}

static void sync_buf_put(uint8_t *b)
{
	if (b && malloc_usable_size(b) >= sync_buf_size()) {
		pthread_mutex_lock(&sync_buf_lock);
		if (sync_buf_nkept < SYNC_BUF_KEEP) {
			sync_buf_kept[sync_buf_nkept++] = b;
			b = NULL;
		}
		pthread_mutex_unlock(&sync_buf_lock);
	}
	free(b);
}

/* ---- posting ----------------------------------------------------------------- */

/*
 * Encode one record (@d, into @buf of @blen bytes) and post it. On success
 * the post entry owns @buf and carries the chunk references given by
 * @refs_vol/@cf/@cl (when @refs_vol is set); *@seq is the record's
 * sequence. Returns 0, -ENOSPC (ring full: nothing changed), -EMSGSIZE,
 * -ENOMEM, or -ENOTCONN (the data connection is gone or must go).
 */
static int post_piece(struct rf_agent *a, const struct rf_ring_desc *d, uint8_t *buf, size_t blen,
                      struct rf_agent_vol *refs_vol, uint64_t cf, uint64_t cl, uint64_t *seq)
{
	struct rfa_conn *c = &a->c;
	struct rf_fab_seg segs[RF_RING_MAX_SEGS];
	struct rf_ring_image img;
	struct rfa_post *p;
	int rc;

	if (a->link != RFA_LINK_LINKED)
		return -ENOTCONN;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	rc = rf_ring_producer_encode(c->rp, d, buf, blen, &img);
	if (rc) {
		free(p);
		if (rc == -ENOSPC)
			c->space_wait = true;
		else
			RF_ERR("agent", "cannot encode a record: %s", strerror(-rc));
		return rc;
	}
	for (unsigned i = 0; i < img.nseg; i++)
		segs[i] = (struct rf_fab_seg){.off = img.seg[i].file_off - RF_RING_HEADER_SIZE,
		                              .buf = img.seg[i].src,
		                              .len = img.seg[i].len};
	p->seq = img.seq;
	rf_fab_conn_want_landed(c->fab, atomic_load(&a->landed_vols) > 0);
	for (int tries = 0;; tries++) {
		rc = rf_fab_post(c->fab, segs, img.nseg, img.seq, (uintptr_t)p);
		if (rc != -EAGAIN || tries >= POST_RETRIES)
			break;
		rfa_fab_events(a, 10); /* reap completions */
		if (a->link != RFA_LINK_LINKED) {
			rc = -ENOTCONN;
			break;
		}
	}
	if (rc) {
		/* Encoded but not posted: the sequence has a hole; only a new
		 * session can continue. */
		RF_WARN("agent", "posting record %" PRIu64 " failed: %s", img.seq, strerror(-rc));
		free(p);
		rfa_link_set(a, RFA_LINK_BROKEN);
		return -ENOTCONN;
	}
	p->buf = buf;
	if (refs_vol) {
		p->vol = refs_vol;
		p->c_first = cf;
		p->c_last = cl;
		p->has_refs = true;
	}
	rfa_posts_append(c, p);
	c->reap = true;
	pthread_mutex_lock(&a->lock);
	a->records++;
	a->record_bytes += d->type == RF_RING_REC_DATA ? d->length : 0;
	a->next_seq = rf_ring_producer_next_seq(c->rp);
	pthread_mutex_unlock(&a->lock);
	*seq = img.seq;
	return 0;
}

/*
 * Post the rest of queued record @r (split at the ring's largest payload).
 * The last piece carries the record's chunk references. Returns 0 or the
 * post_piece error; a split record remembers how far it got.
 */
static int post_rec(struct rf_agent *a, struct rfa_rec *r)
{
	struct rfa_conn *c = &a->c;
	struct rf_ring_desc d = {
	    .type = r->type, .volume_id = r->vol->vol_id, .timestamp_ns = r->ts_ns};
	uint64_t cf, cl, seq;
	int rc;

	rfa_chunks(r->off, r->len, &cf, &cl);
	if (r->type != RF_RING_REC_DATA) {
		size_t blen = rf_ring_encode_buf_size(0);
		uint8_t *buf = malloc(blen);

		if (!buf)
			return -ENOMEM;
		d.offset = r->off;
		d.length = r->len;
		rc = post_piece(a, &d, buf, blen, r->vol, cf, cl, &seq);
		if (rc)
			free(buf);
		else
			c->ptail->ticket = r->ticket;
		return rc;
	}
	if (r->done_len == 0 && r->len <= c->max_payload) {
		d.offset = r->off;
		d.length = r->len;
		d.payload = r->buf + RF_RING_REC_HDR_SIZE; /* in place: no copy */
		rc = post_piece(a, &d, r->buf, r->buf_size, r->vol, cf, cl, &seq);
		if (!rc) {
			r->buf = NULL; /* owned by the post now */
			c->ptail->ticket = r->ticket;
		}
		return rc;
	}
	while (r->done_len < r->len) {
		uint32_t n = r->len - r->done_len;
		bool lastp;
		size_t blen;
		uint8_t *buf;

		if (n > c->max_payload)
			n = c->max_payload;
		lastp = r->done_len + n == r->len;
		blen = rf_ring_encode_buf_size(n);
		buf = malloc(blen);
		if (!buf)
			return -ENOMEM;
		d.offset = r->off + r->done_len;
		d.length = n;
		d.payload = r->buf + RF_RING_REC_HDR_SIZE + r->done_len;
		rc = post_piece(a, &d, buf, blen, lastp ? r->vol : NULL, cf, cl, &seq);
		if (rc) {
			free(buf);
			return rc;
		}
		if (lastp)
			c->ptail->ticket = r->ticket;
		r->done_len += n;
	}
	return 0;
}

/*
 * Post queued records in order until @until records have ever been taken
 * off the queue, or it is empty. Returns 0, -EAGAIN (ring full or no
 * memory: try again later) or -ENOTCONN.
 */
int rfa_post_queue(struct rf_agent *a, uint64_t until)
{
	struct rfa_conn *c = &a->c;

	for (;;) {
		struct rfa_rec *r;
		uint64_t popped;
		int rc;

		if (a->link != RFA_LINK_LINKED)
			return -ENOTCONN;
		pthread_mutex_lock(&a->lock);
		r = a->qhead;
		popped = a->q_popped;
		pthread_mutex_unlock(&a->lock);
		if (!r || popped >= until)
			return 0;
		if (c->space_wait)
			return -EAGAIN;
		rc = post_rec(a, r);
		if (rc == -ENOSPC || rc == -ENOMEM)
			return -EAGAIN;
		if (rc == -ENOTCONN)
			return rc;
		if (rc) {
			/* Cannot happen (records are split to fit); never wedge the
			 * queue: drop the record, its range is read back instead. */
			RF_ERR("agent", "volume %s: record [%" PRIu64 ", +%u) not postable: %s",
			       r->vol->name, r->off, r->len, strerror(-rc));
			rfa_chunks_release(r->vol, r->off / RF_AGENT_CHUNK_SIZE,
			                   (r->off + r->len - 1) / RF_AGENT_CHUNK_SIZE, true);
			/* Its ticket will never be durable: a later one must not
			 * acknowledge it. */
			rfa_ack_epoch_end(a);
		}
		pthread_mutex_lock(&a->lock);
		a->qhead = r->next;
		if (!a->qhead)
			a->qtail = NULL;
		a->q_bytes -= r->charge;
		a->q_count--;
		a->q_popped++;
		r->vol->queued_bytes -= r->charge;
		r->vol->queued--;
		pthread_mutex_unlock(&a->lock);
		free(r->buf);
		free(r);
	}
}

/*
 * Read [off, off + len) of @v under its range lock and post it as DATA with
 * the SYNC flag, after every record queued before the lock was taken (so a
 * guest write to the range that reached the local disk earlier also reaches
 * the ring earlier). With @resend, the chunks' resend marks become
 * references carried by the record. *@seq: the last record's sequence.
 * Returns 0, -EAGAIN (ring full), -EIO (local read failed), -ENOTCONN,
 * -ENOMEM.
 */
int rfa_post_range(struct rf_agent *a, struct rf_agent_vol *v, uint64_t off, uint32_t len,
                   bool resend, uint64_t *seq)
{
	struct rfa_conn *c = &a->c;
	struct rf_ring_desc d = {
	    .type = RF_RING_REC_DATA, .flags = RF_REC_FLAG_SYNC, .volume_id = v->vol_id};
	uint64_t until, cf, cl;
	uint32_t first_len = len < c->max_payload ? len : c->max_payload;
	uint8_t *data = NULL, *buf = NULL;
	size_t blen;
	int rc;

	rfa_chunks(off, len, &cf, &cl);
	rc = rfa_rl_lock(&v->rl, off, len);
	if (rc)
		return rc;
	pthread_mutex_lock(&a->lock);
	until = a->q_pushed;
	pthread_mutex_unlock(&a->lock);
	rc = rfa_post_queue(a, until);
	if (rc)
		goto out_unlock;
	/* Reap first: SENT gives encode buffers back to the pool (a burst of
	 * SYNC_READs is served without a return to the loop), and POSITION
	 * tells the room the hub made, which may be waiting. */
	if (c->reap || c->space_wait ||
	    rf_ring_producer_free(c->rp) < rf_ring_record_size(first_len)) {
		rfa_fab_events(a, 0);
		if (a->link != RFA_LINK_LINKED) {
			rc = -ENOTCONN;
			goto out_unlock;
		}
	}
	if (c->space_wait || rf_ring_producer_free(c->rp) < rf_ring_record_size(first_len)) {
		c->space_wait = true;
		rc = -EAGAIN;
		goto out_unlock;
	}
	d.timestamp_ns = rfa_realtime_ns();
	if (len <= c->max_payload) {
		blen = rf_ring_encode_buf_size(len);
		buf = sync_buf_get(blen);
		if (!buf) {
			rc = -ENOMEM;
			goto out_unlock;
		}
		rc = v->read(v->read_ctx, buf + RF_RING_REC_HDR_SIZE, len, off);
		if (rc)
			goto out_read;
		d.offset = off;
		d.length = len;
		d.payload = buf + RF_RING_REC_HDR_SIZE;
		if (resend)
			rfa_chunks_resent(v, cf, cl);
		rc = post_piece(a, &d, buf, blen, resend ? v : NULL, cf, cl, seq);
		if (rc) {
			if (resend)
				rfa_chunks_release(v, cf, cl, true);
			sync_buf_put(buf);
		}
		goto out_unlock;
	}
	data = sync_buf_get(len);
	if (!data) {
		rc = -ENOMEM;
		goto out_unlock;
	}
	rc = v->read(v->read_ctx, data, len, off);
	if (rc)
		goto out_read;
	for (uint32_t done = 0; done < len;) {
		uint32_t n = len - done < c->max_payload ? len - done : c->max_payload;
		bool lastp = done + n == len;

		blen = rf_ring_encode_buf_size(n);
		buf = sync_buf_get(blen);
		if (!buf) {
			rc = -ENOMEM;
			break;
		}
		d.offset = off + done;
		d.length = n;
		d.payload = data + done;
		if (lastp && resend)
			rfa_chunks_resent(v, cf, cl);
		rc = post_piece(a, &d, buf, blen, lastp && resend ? v : NULL, cf, cl, seq);
		if (rc) {
			if (lastp && resend)
				rfa_chunks_release(v, cf, cl, true);
			sync_buf_put(buf);
			break;
		}
		done += n;
	}
	sync_buf_put(data);
	goto out_unlock;
out_read:
	/* -EAGAIN: the volume cannot be read right now (no plugin context). */
	if (rc != -EAGAIN) {
		RF_ERR("agent", "volume %s: local read of [%" PRIu64 ", +%u) failed: %s", v->name,
		       off, len, strerror(rc < 0 ? -rc : EIO));
		rc = -EIO;
	}
	sync_buf_put(buf);
	sync_buf_put(data);
out_unlock:
	rfa_rl_unlock(&v->rl, off, len);
	if (rc == -ENOSPC || rc == -ENOMEM)
		rc = -EAGAIN;
	return rc;
}

/* ---- completions and the posts' life ------------------------------------------- */

void rfa_posts_append(struct rfa_conn *c, struct rfa_post *p)
{
	if (c->ptail)
		c->ptail->next = p;
	else
		c->phead = p;
	c->ptail = p;
	if (!c->pland)
		c->pland = p;
}

void rfa_posts_free_done(struct rfa_conn *c)
{
	while (c->phead && c->phead->released && c->phead->sent) {
		struct rfa_post *p = c->phead;

		c->phead = p->next;
		if (!c->phead)
			c->ptail = NULL;
		if (c->pland == p) /* durable, so landed too */
			c->pland = p->next;
		free(p->buf);
		free(p);
	}
}

void rfa_fab_events(struct rf_agent *a, int timeout_ms)
{
	struct rfa_conn *c = &a->c;
	struct rf_fab_event evs[64];
	int n;

	c->reap = false;
	do {
		if (a->link != RFA_LINK_LINKED)
			return;
		n = rf_fab_poll(c->fab, evs, 64, timeout_ms);
		if (n < 0) {
			RF_WARN("agent", "data connection: poll: %s", strerror(-n));
			rfa_link_set(a, RFA_LINK_BROKEN);
			return;
		}
		for (int i = 0; i < n; i++) {
			struct rfa_post *p;

			switch (evs[i].type) {
			case RF_FAB_EV_SENT:
				p = (struct rfa_post *)(uintptr_t)evs[i].cookie;
				sync_buf_put(p->buf);
				p->buf = NULL;
				p->sent = true;
				break;
			case RF_FAB_EV_POSITION:
				if (rf_ring_producer_update_head(c->rp, evs[i].pos.head_pos)) {
					RF_ERR("agent",
					       "hub published an impossible head %" PRIu64
					       " (tail %" PRIu64 ")",
					       evs[i].pos.head_pos, rf_ring_producer_tail(c->rp));
					rfa_link_set(a, RFA_LINK_BROKEN);
					return;
				}
				c->space_wait = false;
				rfa_durable_upto(a, evs[i].pos.durable_seq);
				break;
			case RF_FAB_EV_LANDED:
				rfa_landed_upto(a, evs[i].seq);
				break;
			case RF_FAB_EV_CLOSED:
				RF_WARN("agent", "data connection closed: %s",
				        strerror(evs[i].err ? -evs[i].err : ECONNRESET));
				rfa_link_set(a, RFA_LINK_BROKEN);
				break;
			}
		}
		rfa_posts_free_done(c);
		timeout_ms = 0;
	} while (n == 64);
}

/* Give up the records of a dead session: each carrying chunk references
 * that is not known durable becomes a resend. */
void rfa_posts_to_resend(struct rf_agent *a)
{
	struct rfa_conn *c = &a->c;

	/* What is not durable now never will be as the ticket it was queued under. */
	rfa_ack_epoch_end(a);
	while (c->phead) {
		struct rfa_post *p = c->phead;

		c->phead = p->next;
		if (p->has_refs && !p->released)
			rfa_chunks_release(p->vol, p->c_first, p->c_last, true);
		free(p->buf);
		free(p);
	}
	c->ptail = c->pland = NULL;
}

bool rfa_posts_pending(const struct rfa_conn *c)
{
	for (const struct rfa_post *p = c->phead; p; p = p->next)
		if (!p->released)
			return true;
	return false;
}

/* ---- attach and close ------------------------------------------------------ */

void rfa_fab_attach(struct rf_agent *a)
{
	struct rfa_conn *c = &a->c;
	struct rf_fab_ring_info info;
	unsigned n = atomic_load(&a->nvols);
	char reason[RF_CTL_MAX_TEXT + 64];
	int rc;

	rfa_link_set(a, RFA_LINK_ATTACHING);
	rc = rf_fab_connect(c->data_url, c->token, (int)a->opts.connect_timeout_ms, &c->fab, &info);
	if (rc) {
		snprintf(reason, sizeof(reason), "data connection to %s failed: %s", c->data_url,
		         strerror(-rc));
		rfa_disconnect(a, reason);
		return;
	}
	rc = rf_ring_producer_new(&c->rp, &(struct rf_ring_info){.ring_id = info.ring_id,
	                                                         .data_size = info.data_size,
	                                                         .head_pos = info.pos.head_pos,
	                                                         .head_seq = info.pos.head_seq});
	if (!rc)
		rc = rfa_ep_add(a, rf_fab_conn_fd(c->fab), EPOLLIN, RFA_TAG_FAB);
	if (rc) {
		snprintf(reason, sizeof(reason), "cannot start producing into the ring: %s",
		         strerror(-rc));
		rfa_disconnect(a, reason);
		return;
	}
	/* Records of the previous session: durable up to what the hub says
	 * (same ring only); the rest must be resent. */
	if (c->phead && info.ring_id == c->ring_id)
		rfa_durable_upto(a, info.pos.durable_seq);
	rfa_posts_to_resend(a);
	c->ring_id = info.ring_id;
	c->max_payload = rf_ring_max_payload(info.data_size);
	c->durable_seq = info.pos.head_seq;
	c->space_wait = false;
	c->backoff_ms = a->opts.backoff_min_ms;
	rfa_link_set(a, RFA_LINK_LINKED);
	pthread_mutex_lock(&a->lock);
	for (unsigned i = 0; i < n; i++)
		a->vols[i]->attached = a->vols[i]->ok;
	a->next_seq = info.pos.head_seq;
	a->durable_seq = info.pos.head_seq;
	if (a->attaches++)
		a->reconnects++;
	pthread_mutex_unlock(&a->lock);
	rfa_durable_wake(a); /* durable_seq was set: waiters re-check */
	RF_INFO("agent",
	        "attached to ring %" PRIx64 " (%" PRIu64 " bytes, records up to %u bytes) at "
	        "sequence %" PRIu64,
	        info.ring_id, info.data_size, c->max_payload, info.pos.head_seq);
	rfa_progress(a, true);
}

void rfa_fab_close(struct rf_agent *a)
{
	struct rfa_conn *c = &a->c;

	if (c->fab) {
		rfa_ep_del(a, rf_fab_conn_fd(c->fab));
		rf_fab_close(&c->fab);
	}
	rf_ring_producer_delete(&c->rp);
	c->space_wait = false;
	/* Keep what may still turn out durable (the next attach says); the
	 * buffers are no longer needed: a resend reads the disk. */
	for (struct rfa_post *p = c->phead; p; p = p->next) {
		free(p->buf);
		p->buf = NULL;
		p->sent = true;
		if (!p->has_refs)
			p->released = true;
	}
	rfa_posts_free_done(c);
}
