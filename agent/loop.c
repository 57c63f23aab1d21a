/* SPDX-License-Identifier: MIT */
/*
 * The agent's thread: one epoll loop over the control socket, the data
 * connection's fd, an eventfd (queue, new volumes, stop) and a timerfd
 * (reconnect backoff, heartbeats, PROGRESS, bitmap clears, deadlines).
 *
 * Connection life cycle (docs/PROTOCOL.md, "Protect flow"):
 *   disconnected --timer--> dial + HELLO/HELLO_OK (blocking, bounded)
 *   --> VOLUME_REPORT per volume (answers handled by the loop)
 *   --> all answered, one accepted: rf_fab_connect with the token (blocking, bounded)
 *   --> attached: queued writes are posted, SYNC_READs served, dirty chunks
 *       resent, PROGRESS sent.
 * Any failure (control or data side) tears both down, turns everything not
 * durable into resends, and schedules a reconnect with capped exponential
 * backoff.
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "agent_internal.h"
#include "repfabric/log.h"

enum { TAG_EVENT = 1, TAG_TIMER, TAG_CTL, TAG_FAB };

#define RBUF_CAP          (RF_CTL_HDR_LEN + RF_CTL_MAX_PAYLOAD)
#define WBUF_MAX          (4u << 20) /* unsent control bytes before we give up */
#define PROGRESS_MIN_MS   100
#define PROGRESS_MAX_MS   1000
#define RESEND_RUN_CHUNKS (RF_CTL_MAX_DATA / RF_AGENT_CHUNK_SIZE) /* 1 MiB reads */
#define RESEND_BUDGET     (16u << 20)                             /* bytes resent per loop round */
#define POST_RETRIES      200

int64_t rfa_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void rfa_wake(struct rf_agent *a)
{
	uint64_t one = 1;

	if (write(a->evfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		RF_ERR("agent", "eventfd write: %s", strerror(errno));
}

static int ep_add(struct rf_agent *a, int fd, uint32_t events, uint64_t tag)
{
	struct epoll_event ev = {.events = events, .data.u64 = tag};

	return epoll_ctl(a->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static void ep_mod(struct rf_agent *a, int fd, uint32_t events, uint64_t tag)
{
	struct epoll_event ev = {.events = events, .data.u64 = tag};

	epoll_ctl(a->epfd, EPOLL_CTL_MOD, fd, &ev);
}

static void ep_del(struct rf_agent *a, int fd)
{
	epoll_ctl(a->epfd, EPOLL_CTL_DEL, fd, NULL);
}

int rfa_loop_init(struct rf_agent *a)
{
	struct rfa_conn *c = &a->c;
	int rc;

	a->evfd = a->tfd = a->epfd = -1;
	c->ctl_fd = -1;
	c->backoff_ms = a->opts.backoff_min_ms;
	c->rbuf = malloc(RBUF_CAP);
	if (!c->rbuf)
		return -ENOMEM;
	a->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	a->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	a->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (a->evfd < 0 || a->tfd < 0 || a->epfd < 0) {
		rc = -errno;
		goto out;
	}
	rc = ep_add(a, a->evfd, EPOLLIN, TAG_EVENT);
	if (!rc)
		rc = ep_add(a, a->tfd, EPOLLIN, TAG_TIMER);
	if (!rc)
		return 0;
out:
	rfa_loop_fini(a);
	return rc;
}

void rfa_loop_fini(struct rf_agent *a)
{
	struct rfa_conn *c = &a->c;

	while (c->phead) {
		struct rfa_post *p = c->phead;

		c->phead = p->next;
		free(p->buf);
		free(p);
	}
	c->ptail = NULL;
	free(c->rbuf);
	c->rbuf = NULL;
	free(c->wbuf);
	c->wbuf = NULL;
	if (a->epfd >= 0)
		close(a->epfd);
	if (a->tfd >= 0)
		close(a->tfd);
	if (a->evfd >= 0)
		close(a->evfd);
	a->epfd = a->tfd = a->evfd = -1;
}

static struct rf_agent_vol *vol_by_id(struct rf_agent *a, uint32_t id)
{
	unsigned n = atomic_load(&a->nvols);

	for (unsigned i = 0; i < n; i++)
		if (a->vols[i]->vol_id == id)
			return a->vols[i];
	return NULL;
}

static bool vol_attached(struct rf_agent *a, struct rf_agent_vol *v)
{
	bool r;

	pthread_mutex_lock(&a->lock);
	r = v->attached && !a->stopping;
	pthread_mutex_unlock(&a->lock);
	return r;
}

/* ---- control channel output ---------------------------------------------- */

static void disconnect(struct rf_agent *a, const char *why);
static void teardown(struct rf_agent *a, const char *why, bool retry);

static void ctl_flush(struct rf_agent *a)
{
	struct rfa_conn *c = &a->c;

	while (c->wlen) {
		ssize_t n = send(c->ctl_fd, c->wbuf, c->wlen, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			RF_WARN("agent", "control connection: send: %s", strerror(errno));
			disconnect(a, "control connection lost");
			return;
		}
		memmove(c->wbuf, c->wbuf + n, c->wlen - (size_t)n);
		c->wlen -= (size_t)n;
	}
	if ((c->wlen > 0) != c->want_out) {
		c->want_out = c->wlen > 0;
		ep_mod(a, c->ctl_fd, EPOLLIN | (c->want_out ? EPOLLOUT : 0), TAG_CTL);
	}
}

/* Queue one frame for the hub; @len is the encoded payload length. */
static void ctl_send(struct rf_agent *a, uint16_t type, uint64_t req, const void *payload, int len)
{
	struct rfa_conn *c = &a->c;
	size_t need;

	if (c->ctl_fd < 0)
		return;
	if (len < 0) {
		RF_ERR("agent", "cannot encode control message type %u: %s", type, strerror(-len));
		return;
	}
	need = c->wlen + RF_CTL_HDR_LEN + (size_t)len;
	if (need > WBUF_MAX) {
		disconnect(a, "the hub does not read its control connection");
		return;
	}
	if (need > c->wcap) {
		size_t ncap = c->wcap ? c->wcap : 4096;
		uint8_t *n;

		while (ncap < need)
			ncap *= 2;
		n = realloc(c->wbuf, ncap);
		if (!n) {
			disconnect(a, "out of memory");
			return;
		}
		c->wbuf = n;
		c->wcap = ncap;
	}
	rf_ctl_hdr_encode(c->wbuf + c->wlen, type, req, (uint32_t)len);
	memcpy(c->wbuf + c->wlen + RF_CTL_HDR_LEN, payload, (size_t)len);
	c->wlen = need;
	ctl_flush(a);
}

static void ctl_error(struct rf_agent *a, uint64_t req, int code, const char *reason)
{
	struct rf_ctl_error e = {.code = code};
	uint8_t buf[RF_CTL_MAX_TEXT + 16];

	snprintf(e.reason, sizeof(e.reason), "%s", reason);
	ctl_send(a, RF_CTL_ERROR, req, buf, rf_ctl_enc_error(buf, sizeof(buf), &e));
}

/* ---- posting ------------------------------------------------------------- */

static void fab_events(struct rf_agent *a, int timeout_ms);

/*
 * Buffers of the sync/resend read path (post_range), kept for reuse: a
 * fresh 1 MiB malloc is an mmap, 256 zero-filled page faults and a munmap
 * per chunk. A post owns its buffer as any encode buffer; at SENT it goes
 * back here (any buffer of at least sync_buf_size() is taken, so which
 * path made it does not matter), one freed elsewhere (teardown) is simply
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

	if (!c->fab || c->fab_dead)
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
	for (int tries = 0;; tries++) {
		rc = rf_fab_post(c->fab, segs, img.nseg, img.seq, (uintptr_t)p);
		if (rc != -EAGAIN || tries >= POST_RETRIES)
			break;
		fab_events(a, 10); /* reap completions */
		if (c->fab_dead) {
			rc = -ENOTCONN;
			break;
		}
	}
	if (rc) {
		/* Encoded but not posted: the sequence has a hole; only a new
		 * session can continue. */
		RF_WARN("agent", "posting record %" PRIu64 " failed: %s", img.seq, strerror(-rc));
		free(p);
		c->fab_dead = true;
		return -ENOTCONN;
	}
	p->buf = buf;
	if (refs_vol) {
		p->vol = refs_vol;
		p->c_first = cf;
		p->c_last = cl;
		p->has_refs = true;
	}
	if (c->ptail)
		c->ptail->next = p;
	else
		c->phead = p;
	c->ptail = p;
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
		return rc;
	}
	if (r->done_len == 0 && r->len <= c->max_payload) {
		d.offset = r->off;
		d.length = r->len;
		d.payload = r->buf + RF_RING_REC_HDR_SIZE; /* in place: no copy */
		rc = post_piece(a, &d, r->buf, r->buf_size, r->vol, cf, cl, &seq);
		if (!rc)
			r->buf = NULL; /* owned by the post now */
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
		r->done_len += n;
	}
	return 0;
}

/*
 * Post queued records in order until @until records have ever been taken
 * off the queue, or it is empty. Returns 0, -EAGAIN (ring full or no
 * memory: try again later) or -ENOTCONN.
 */
static int post_queue(struct rf_agent *a, uint64_t until)
{
	struct rfa_conn *c = &a->c;

	for (;;) {
		struct rfa_rec *r;
		uint64_t popped;
		int rc;

		if (!c->fab || c->fab_dead)
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
static int post_range(struct rf_agent *a, struct rf_agent_vol *v, uint64_t off, uint32_t len,
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
	rc = post_queue(a, until);
	if (rc)
		goto out_unlock;
	/* Reap first: SENT gives encode buffers back to the pool (a burst of
	 * SYNC_READs is served without a return to the loop), and POSITION
	 * tells the room the hub made, which may be waiting. */
	if (c->reap || c->space_wait ||
	    rf_ring_producer_free(c->rp) < rf_ring_record_size(first_len)) {
		fab_events(a, 0);
		if (!c->fab || c->fab_dead) {
			rc = -ENOTCONN;
			goto out_unlock;
		}
	}
	if (c->space_wait || rf_ring_producer_free(c->rp) < rf_ring_record_size(first_len)) {
		c->space_wait = true;
		rc = -EAGAIN;
		goto out_unlock;
	}
	d.timestamp_ns = realtime_ns();
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

/*
 * resync_rate: may @v resend now? A token bucket per volume (refilled at
 * the rate, holding at most a fifth of a second's worth or one run, and
 * owing at most one run). When it is empty, c->resend_wake_ms says when
 * to look again.
 */
static bool resend_paced(struct rf_agent *a, struct rf_agent_vol *v, int64_t now)
{
	struct rfa_conn *c = &a->c;
	double rate = (double)v->resync_rate, cap;
	int64_t wake;

	if (!v->resync_rate)
		return true;
	cap = rate / 5 > (double)RF_CTL_MAX_DATA ? rate / 5 : (double)RF_CTL_MAX_DATA;
	v->rs_tokens += rate * (double)(now - v->rs_refill_ms) / 1000.0;
	if (v->rs_tokens > cap)
		v->rs_tokens = cap;
	v->rs_refill_ms = now;
	if (v->rs_tokens > 0)
		return true;
	wake = now + (int64_t)(-v->rs_tokens * 1000.0 / rate) + 1;
	if (!c->resend_wake_ms || wake < c->resend_wake_ms)
		c->resend_wake_ms = wake;
	return false;
}

/*
 * Resend dirty chunks of attached volumes, at most RESEND_BUDGET bytes.
 * Returns true when it stopped on the budget with more to do.
 */
static bool resend_some(struct rf_agent *a)
{
	struct rfa_conn *c = &a->c;
	unsigned n = atomic_load(&a->nvols);
	uint64_t budget = RESEND_BUDGET;

	c->resend_wake_ms = 0;
	if (c->space_wait || rfa_now_ms() < c->resend_retry_ms)
		return false;
	for (unsigned k = 0; k < n; k++) {
		struct rf_agent_vol *v = a->vols[(c->resend_rr + k) % n];

		if (!vol_attached(a, v))
			continue;
		while (budget) {
			uint64_t f, l, off, len, cursor = v->resend_next, seq;
			int rc;

			if (!rfa_resend_find(v, &cursor, RESEND_RUN_CHUNKS, &f, &l))
				break;
			if (!resend_paced(a, v, rfa_now_ms()))
				break;
			off = f * RF_AGENT_CHUNK_SIZE;
			len = (l + 1) * RF_AGENT_CHUNK_SIZE;
			if (len > v->size)
				len = v->size;
			len -= off;
			rc = post_range(a, v, off, (uint32_t)len, true, &seq);
			if (rc) {
				if (rc == -EIO || (rc == -EAGAIN && !c->space_wait))
					c->resend_retry_ms = rfa_now_ms() + 1000;
				return false;
			}
			v->resend_next = cursor;
			budget = budget > len ? budget - len : 0;
			if (v->resync_rate)
				v->rs_tokens -= (double)len;
			pthread_mutex_lock(&a->lock);
			a->resent_bytes += len;
			v->resent_bytes += len;
			pthread_mutex_unlock(&a->lock);
		}
		if (!budget) {
			c->resend_rr = (c->resend_rr + k) % n;
			return true;
		}
	}
	return false;
}

/* ---- data connection events ---------------------------------------------- */

static void free_done_posts(struct rfa_conn *c)
{
	while (c->phead && c->phead->released && c->phead->sent) {
		struct rfa_post *p = c->phead;

		c->phead = p->next;
		if (!c->phead)
			c->ptail = NULL;
		free(p->buf);
		free(p);
	}
}

/* Every record before @seq is durable: drop its chunk references. */
static void durable(struct rf_agent *a, uint64_t seq)
{
	struct rfa_conn *c = &a->c;

	if (seq > c->durable_seq)
		c->durable_seq = seq;
	for (struct rfa_post *p = c->phead; p && p->seq < seq; p = p->next) {
		if (p->released)
			continue;
		p->released = true;
		if (p->has_refs)
			rfa_chunks_release(p->vol, p->c_first, p->c_last, false);
	}
	free_done_posts(c);
	/* publish under agent.lock, then wake rf_agent_wait_durable() */
	rfa_durable_advance(a, c->durable_seq);
}

static void fab_events(struct rf_agent *a, int timeout_ms)
{
	struct rfa_conn *c = &a->c;
	struct rf_fab_event evs[64];
	int n;

	c->reap = false;
	do {
		if (!c->fab || c->fab_dead)
			return;
		n = rf_fab_poll(c->fab, evs, 64, timeout_ms);
		if (n < 0) {
			RF_WARN("agent", "data connection: poll: %s", strerror(-n));
			c->fab_dead = true;
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
					c->fab_dead = true;
					return;
				}
				c->space_wait = false;
				durable(a, evs[i].pos.durable_seq);
				break;
			case RF_FAB_EV_CLOSED:
				RF_WARN("agent", "data connection closed: %s",
				        strerror(evs[i].err ? -evs[i].err : ECONNRESET));
				c->fab_dead = true;
				break;
			}
		}
		free_done_posts(c);
		timeout_ms = 0;
	} while (n == 64);
}

/* ---- connect / disconnect ---------------------------------------------- */

/* Give up the records of a dead session: each carrying chunk references
 * that is not known durable becomes a resend. */
static void posts_to_resend(struct rfa_conn *c)
{
	while (c->phead) {
		struct rfa_post *p = c->phead;

		c->phead = p->next;
		if (p->has_refs && !p->released)
			rfa_chunks_release(p->vol, p->c_first, p->c_last, true);
		free(p->buf);
		free(p);
	}
	c->ptail = NULL;
}

static void disconnect(struct rf_agent *a, const char *why)
{
	teardown(a, why, true);
}

/* Close both connections; everything queued becomes a resend. */
static void teardown(struct rf_agent *a, const char *why, bool retry)
{
	struct rfa_conn *c = &a->c;
	struct rfa_rec *q;
	unsigned n = atomic_load(&a->nvols);
	bool was = c->ctl_fd >= 0 || c->fab;

	if (c->fab) {
		ep_del(a, rf_fab_conn_fd(c->fab));
		rf_fab_close(&c->fab);
	}
	rf_ring_producer_delete(&c->rp);
	c->fab_dead = false;
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
	free_done_posts(c);
	if (c->ctl_fd >= 0) {
		ep_del(a, c->ctl_fd);
		close(c->ctl_fd);
		c->ctl_fd = -1;
	}
	c->rlen = c->wlen = 0;
	c->want_out = false;
	c->reports_due = 0;

	pthread_mutex_lock(&a->lock);
	a->connected = a->attached = false;
	for (unsigned i = 0; i < n; i++) {
		a->vols[i]->ok = a->vols[i]->attached = false;
		if (a->vols[i]->state != RF_VOL_UNKNOWN)
			a->vols[i]->state = RF_VOL_DISCONNECTED;
		a->vols[i]->queued = 0;
		a->vols[i]->queued_bytes = 0;
	}
	q = a->qhead;
	a->qhead = a->qtail = NULL;
	a->q_popped += a->q_count;
	a->q_bytes = 0;
	a->q_count = 0;
	pthread_mutex_unlock(&a->lock);
	while (q) {
		struct rfa_rec *r = q;

		q = r->next;
		rfa_chunks_release(r->vol, r->off / RF_AGENT_CHUNK_SIZE,
		                   (r->off + r->len - 1) / RF_AGENT_CHUNK_SIZE, true);
		free(r->buf);
		free(r);
	}
	for (unsigned i = 0; i < n; i++)
		a->vols[i]->reported = a->vols[i]->refused = false;

	if (!retry) {
		if (was)
			RF_INFO("agent", "disconnected from hub %s: %s", a->hub, why);
		return;
	}
	c->reconnect_at_ms = rfa_now_ms() + c->backoff_ms;
	if (was)
		RF_WARN("agent", "disconnected from hub %s: %s; reconnecting in %u ms", a->hub, why,
		        c->backoff_ms);
	else
		RF_DEBUG("agent", "hub %s: %s; retrying in %u ms", a->hub, why, c->backoff_ms);
	c->backoff_ms =
	    c->backoff_ms * 2 > a->opts.backoff_max_ms ? a->opts.backoff_max_ms : c->backoff_ms * 2;
}

/* Dial, HELLO, HELLO_OK: blocking, each step bounded. */
static void ctl_connect(struct rf_agent *a)
{
	struct rfa_conn *c = &a->c;
	struct rf_ctl_hello hello = {.proto = RF_CTL_VERSION};
	struct rf_ctl_hello_ok ok;
	struct rf_ctl_hdr h;
	uint8_t buf[RF_CTL_MAX_NAME + 16];
	const char *why = "";
	char reason[RF_CTL_MAX_TEXT + 64];
	int fd, rc, len;

	fd = rf_ctl_dial(a->hub, (int)a->opts.connect_timeout_ms);
	if (fd < 0) {
		snprintf(reason, sizeof(reason), "cannot connect: %s", strerror(-fd));
		disconnect(a, reason);
		if (c->warned_down++ == 0)
			RF_WARN("agent",
			        "hub %s unreachable (%s); writes are tracked in the dirty "
			        "bitmap until it is back",
			        a->hub, strerror(-fd));
		return;
	}
	if (a->key) {
		char awhy[RF_CTL_MAX_TEXT];

		rc = rf_auth_client(fd, a->key, (int)a->opts.connect_timeout_ms, NULL, awhy,
		                    sizeof(awhy));
		if (rc) {
			snprintf(reason, sizeof(reason), "authentication failed: %s", awhy);
			/* A refusal is a configuration problem: say it loudly, once. */
			if (c->warned_down == 0 && rc != -ETIMEDOUT && rc != -ECONNRESET)
				RF_ERR("agent", "hub %s: %s", a->hub, reason);
			goto fail;
		}
	}
	snprintf(hello.agent_id, sizeof(hello.agent_id), "%s", a->id);
	len = rf_ctl_enc_hello(buf, sizeof(buf), &hello);
	rc = len < 0 ? len
	             : rf_ctl_send(fd, RF_CTL_HELLO, ++c->next_req, buf, (uint32_t)len, NULL, 0);
	if (!rc)
		rc = rf_ctl_recv(fd, &h, c->rbuf, RBUF_CAP, (int)a->opts.connect_timeout_ms, &why);
	if (rc) {
		snprintf(reason, sizeof(reason), "HELLO failed: %s%s%s", strerror(-rc),
		         rc == -EPROTO ? ": " : "", rc == -EPROTO ? why : "");
		goto fail;
	}
	if (h.type == RF_CTL_ERROR) {
		struct rf_ctl_error e;

		if (rf_ctl_dec_error(c->rbuf, h.len, &e, &why) == 0)
			snprintf(reason, sizeof(reason), "hub refused HELLO: %s (%s)", e.reason,
			         strerror(e.code));
		else
			snprintf(reason, sizeof(reason), "hub refused HELLO (bad ERROR: %s)", why);
		RF_ERR("agent", "%s", reason);
		goto fail;
	}
	if (h.type != RF_CTL_HELLO_OK || h.req_id != c->next_req ||
	    rf_ctl_dec_hello_ok(c->rbuf, h.len, &ok, &why)) {
		snprintf(reason, sizeof(reason), "bad answer to HELLO (type %u): %s", h.type,
		         h.type == RF_CTL_HELLO_OK ? why : "unexpected type or id");
		goto fail;
	}
	rc = rf_fab_url_check(ok.data_url);
	if (rc) {
		snprintf(reason, sizeof(reason), "hub gave an unusable data URL '%s': %s",
		         ok.data_url, strerror(-rc));
		RF_ERR("agent", "%s", reason);
		goto fail;
	}
	c->ctl_fd = fd;
	rc = ep_add(a, fd, EPOLLIN, TAG_CTL);
	if (rc) {
		c->ctl_fd = -1;
		snprintf(reason, sizeof(reason), "epoll: %s", strerror(-rc));
		goto fail;
	}
	c->session = ok.session;
	c->token = ok.token;
	snprintf(c->data_url, sizeof(c->data_url), "%s", ok.data_url);
	c->rlen = c->wlen = 0;
	c->last_rx_ms = rfa_now_ms();
	c->next_hb_ms = c->last_rx_ms + a->opts.heartbeat_ms;
	c->reports_due = 0;
	c->reports_deadline_ms = 0;
	c->hb_req = 0;
	c->warned_down = 0;
	pthread_mutex_lock(&a->lock);
	a->connected = true;
	pthread_mutex_unlock(&a->lock);
	RF_INFO("agent", "connected to hub %s as %s (session %" PRIx64 "), data %s", a->hub, a->id,
	        c->session, c->data_url);
	return;
fail:
	close(fd);
	if (c->warned_down++ == 0)
		RF_WARN("agent", "hub %s: %s", a->hub, reason);
	disconnect(a, reason);
}

/* Send VOLUME_REPORT for each volume not yet reported in this session. */
static void report_volumes(struct rf_agent *a)
{
	struct rfa_conn *c = &a->c;
	unsigned n = atomic_load(&a->nvols);

	for (unsigned i = 0; i < n && c->ctl_fd >= 0; i++) {
		struct rf_agent_vol *v = a->vols[i];
		struct rf_ctl_volume_report m = {.vol_id = v->vol_id, .size = v->size};
		uint8_t buf[RF_CTL_MAX_NAME + 32];
		bool broken;

		if (v->reported)
			continue;
		pthread_mutex_lock(&v->lock);
		broken = v->bm_broken;
		pthread_mutex_unlock(&v->lock);
		m.bitmap_valid = v->trusted && !broken;
		snprintf(m.name, sizeof(m.name), "%s", v->name);
		v->reported = true;
		v->report_req = ++c->next_req;
		c->reports_due++;
		c->reports_deadline_ms = rfa_now_ms() + a->opts.connect_timeout_ms;
		ctl_send(a, RF_CTL_VOLUME_REPORT, v->report_req, buf,
		         rf_ctl_enc_volume_report(buf, sizeof(buf), &m));
		RF_DEBUG("agent", "VOLUME_REPORT %s (id %u, bitmap %s)", v->name, v->vol_id,
		         m.bitmap_valid ? "valid" : "invalid");
	}
}

static void progress(struct rf_agent *a, bool force);

/* Attach to the ring with the token (blocking, bounded). */
static bool any_volume_ok(struct rf_agent *a)
{
	unsigned n = atomic_load(&a->nvols);

	for (unsigned i = 0; i < n; i++)
		if (a->vols[i]->ok)
			return true;
	return false;
}

static void fab_attach(struct rf_agent *a)
{
	struct rfa_conn *c = &a->c;
	struct rf_fab_ring_info info;
	unsigned n = atomic_load(&a->nvols);
	char reason[RF_CTL_MAX_TEXT + 64];
	int rc;

	rc = rf_fab_connect(c->data_url, c->token, (int)a->opts.connect_timeout_ms, &c->fab, &info);
	if (rc) {
		snprintf(reason, sizeof(reason), "data connection to %s failed: %s", c->data_url,
		         strerror(-rc));
		disconnect(a, reason);
		return;
	}
	rc = rf_ring_producer_new(&c->rp, &(struct rf_ring_info){.ring_id = info.ring_id,
	                                                         .data_size = info.data_size,
	                                                         .head_pos = info.pos.head_pos,
	                                                         .head_seq = info.pos.head_seq});
	if (!rc)
		rc = ep_add(a, rf_fab_conn_fd(c->fab), EPOLLIN, TAG_FAB);
	if (rc) {
		snprintf(reason, sizeof(reason), "cannot start producing into the ring: %s",
		         strerror(-rc));
		disconnect(a, reason);
		return;
	}
	/* Records of the previous session: durable up to what the hub says
	 * (same ring only); the rest must be resent. */
	if (c->phead && info.ring_id == c->ring_id)
		durable(a, info.pos.durable_seq);
	posts_to_resend(c);
	c->ring_id = info.ring_id;
	c->max_payload = rf_ring_max_payload(info.data_size);
	c->durable_seq = info.pos.head_seq;
	c->space_wait = false;
	c->fab_dead = false;
	c->backoff_ms = a->opts.backoff_min_ms;
	pthread_mutex_lock(&a->lock);
	a->attached = true;
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
	progress(a, true);
}

/* ---- control channel input --------------------------------------------- */

static void on_sync_read(struct rf_agent *a, uint64_t req, const uint8_t *p, uint32_t len)
{
	struct rfa_conn *c = &a->c;
	struct rf_ctl_sync_read m;
	struct rf_agent_vol *v;
	const char *why = "";
	uint8_t buf[64];
	uint64_t seq = 0;
	int rc;

	if (rf_ctl_dec_sync_read(p, len, &m, &why)) {
		ctl_error(a, req, EBADMSG, why);
		return;
	}
	v = vol_by_id(a, m.vol_id);
	if (!v) {
		ctl_error(a, req, ENOENT, "no such volume id");
		return;
	}
	if (m.length == 0 || m.length > RF_CTL_MAX_DATA || m.offset > v->size ||
	    m.length > v->size - m.offset) {
		ctl_error(a, req, EINVAL, "range outside the volume");
		return;
	}
	if (!c->fab || c->fab_dead || !vol_attached(a, v)) {
		ctl_error(a, req, EAGAIN, "not attached");
		return;
	}
	rc = post_range(a, v, m.offset, m.length, false, &seq);
	switch (rc) {
	case 0: {
		struct rf_ctl_sync_posted r = {
		    .vol_id = m.vol_id, .offset = m.offset, .length = m.length, .seq = seq};

		ctl_send(a, RF_CTL_SYNC_POSTED, req, buf,
		         rf_ctl_enc_sync_posted(buf, sizeof(buf), &r));
		pthread_mutex_lock(&a->lock);
		a->sync_reads++;
		pthread_mutex_unlock(&a->lock);
		break;
	}
	case -EAGAIN:
		ctl_error(a, req, EAGAIN, c->space_wait ? "ring full" : "volume not readable now");
		break;
	case -ENOTCONN:
		ctl_error(a, req, EAGAIN, "data connection lost");
		break;
	case -EIO:
		ctl_error(a, req, EIO, "local read failed");
		break;
	default:
		ctl_error(a, req, -rc, strerror(-rc));
		break;
	}
}

static struct rf_agent_vol *vol_by_report(struct rf_agent *a, uint64_t req)
{
	unsigned n = atomic_load(&a->nvols);

	for (unsigned i = 0; i < n; i++)
		if (a->vols[i]->reported && a->vols[i]->report_req == req)
			return a->vols[i];
	return NULL;
}

static void on_frame(struct rf_agent *a, const struct rf_ctl_hdr *h, const uint8_t *p)
{
	struct rfa_conn *c = &a->c;
	struct rf_agent_vol *v;
	const char *why = "";

	switch (h->type) {
	case RF_CTL_HEARTBEAT:
		if (h->req_id && h->req_id == c->hb_req)
			c->hb_req = 0; /* our heartbeat, answered */
		else
			ctl_send(a, RF_CTL_HEARTBEAT, h->req_id, NULL, 0);
		return;
	case RF_CTL_VOLUME_OK: {
		struct rf_ctl_volume_ok m;
		char pace[64] = "unpaced";

		v = vol_by_report(a, h->req_id);
		if (!v || rf_ctl_dec_volume_ok(p, h->len, &m, &why) || m.vol_id != v->vol_id) {
			RF_WARN("agent", "ignoring a bad VOLUME_OK: %s",
			        v ? why : "unknown request");
			return;
		}
		v->report_req = 0;
		c->reports_due--;
		pthread_mutex_lock(&a->lock);
		v->ok = true;
		v->attached = c->fab != NULL;
		v->state = m.state;
		pthread_mutex_unlock(&a->lock);
		if (m.state == RF_VOL_PROTECTED || m.state == RF_VOL_RESYNCING)
			v->trusted = true; /* the hub has a full copy */
		if (m.resync_rate != v->resync_rate) {
			v->resync_rate = m.resync_rate;
			v->rs_tokens = (double)RF_CTL_MAX_DATA;
			v->rs_refill_ms = rfa_now_ms();
		}
		if (m.resync_rate)
			snprintf(pace, sizeof(pace), "at most %" PRIu64 " bytes/s", m.resync_rate);
		RF_INFO("agent", "volume %s accepted by the hub: %s, sync %s, resends %s", v->name,
		        rf_vol_state_name(m.state),
		        m.sync == RF_SYNC_FULL    ? "full"
		        : m.sync == RF_SYNC_DIRTY ? "dirty regions"
		                                  : "none",
		        pace);
		return;
	}
	case RF_CTL_ERROR: {
		struct rf_ctl_error m;

		if (rf_ctl_dec_error(p, h->len, &m, &why)) {
			RF_WARN("agent", "bad ERROR from the hub: %s", why);
			return;
		}
		v = h->req_id ? vol_by_report(a, h->req_id) : NULL;
		if (v) {
			v->report_req = 0;
			v->refused = true;
			c->reports_due--;
			RF_ERR(
			    "agent",
			    "hub refused volume %s: %s (%s); its writes are tracked in the bitmap "
			    "only (retried on the next connection or when the hub asks again)",
			    v->name, m.reason, strerror(m.code));
		} else if (h->req_id && h->req_id == c->hb_req) {
			c->hb_req = 0;
		} else {
			RF_WARN("agent", "hub error (request %" PRIu64 "): %s (%s)", h->req_id,
			        m.reason, strerror(m.code));
		}
		return;
	}
	case RF_CTL_SYNC_READ:
		on_sync_read(a, h->req_id, p, h->len);
		return;
	case RF_CTL_REPORT_AGAIN: {
		/* The hub's configuration changed: volumes it refused may now be
		 * accepted. Those already accepted are not reported twice. */
		unsigned n = atomic_load(&a->nvols);

		for (unsigned i = 0; i < n; i++)
			if (a->vols[i]->refused) {
				a->vols[i]->refused = false;
				a->vols[i]->reported = false;
			}
		RF_INFO("agent", "the hub asks for the refused volumes again");
		report_volumes(a);
		return;
	}
	case RF_CTL_VOLUME_STATE: {
		struct rf_ctl_volume_state m;
		uint8_t old;

		if (rf_ctl_dec_volume_state(p, h->len, &m, &why)) {
			RF_WARN("agent", "bad VOLUME_STATE from the hub: %s", why);
			return;
		}
		v = vol_by_id(a, m.vol_id);
		if (!v)
			return;
		pthread_mutex_lock(&a->lock);
		old = v->state;
		v->state = m.state;
		v->synced_bytes = m.synced_bytes;
		pthread_mutex_unlock(&a->lock);
		if (m.state == RF_VOL_PROTECTED || m.state == RF_VOL_RESYNCING)
			v->trusted = true; /* the hub has a full copy: the bitmap now counts */
		if (old != m.state)
			RF_INFO("agent", "volume %s: %s", v->name, rf_vol_state_name(m.state));
		return;
	}
	default:
		if (h->req_id) {
			char r[64];

			snprintf(r, sizeof(r), "unexpected message type %u", h->type);
			ctl_error(a, h->req_id, EOPNOTSUPP, r);
		} else {
			RF_DEBUG("agent", "ignoring notification type %u", h->type);
		}
		return;
	}
}

static void ctl_readable(struct rf_agent *a)
{
	struct rfa_conn *c = &a->c;

	for (;;) {
		ssize_t n = read(c->ctl_fd, c->rbuf + c->rlen, RBUF_CAP - c->rlen);
		size_t used = 0;

		if (n == 0) {
			disconnect(a, "the hub closed the control connection");
			return;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return;
			disconnect(a, strerror(errno));
			return;
		}
		c->rlen += (size_t)n;
		c->last_rx_ms = rfa_now_ms();
		while (c->rlen - used >= RF_CTL_HDR_LEN) {
			struct rf_ctl_hdr h;
			const char *why = "";
			int fd = c->ctl_fd;

			if (rf_ctl_hdr_decode(c->rbuf + used, &h, &why)) {
				char r[128];

				RF_ERR("agent", "bad frame from the hub: %s", why);
				ctl_error(a, 0, EPROTO, why);
				snprintf(r, sizeof(r), "protocol error: %s", why);
				disconnect(a, r);
				return;
			}
			if (c->rlen - used < RF_CTL_HDR_LEN + h.len)
				break;
			on_frame(a, &h, c->rbuf + used + RF_CTL_HDR_LEN);
			if (c->ctl_fd != fd)
				return; /* disconnected while handling it */
			used += RF_CTL_HDR_LEN + h.len;
		}
		memmove(c->rbuf, c->rbuf + used, c->rlen - used);
		c->rlen -= used;
	}
}

/* ---- timers ---------------------------------------------------------------- */

static bool posts_pending(const struct rfa_conn *c)
{
	for (const struct rfa_post *p = c->phead; p; p = p->next)
		if (!p->released)
			return true;
	return false;
}

/*
 * Resync bookkeeping for the log, from the resend bytes of @v (attached):
 * a resync begins when chunks wait to be read back and ends when none do.
 */
static void resync_track(struct rf_agent_vol *v, uint64_t resend, uint64_t resent, int64_t now)
{
	if (resend && !v->rs_active) {
		v->rs_active = true;
		v->rs_start_ms = now;
		v->rs_base = resent;
		RF_INFO("agent", "volume %s: resync: %" PRIu64 " bytes of dirty regions to resend",
		        v->name, resend);
	} else if (!resend && v->rs_active) {
		v->rs_active = false;
		RF_INFO("agent",
		        "volume %s: resync done: %" PRIu64 " bytes resent in %" PRId64 " ms",
		        v->name, resent - v->rs_base, now - v->rs_start_ms);
	}
}

/* The congestion is over once nothing that overflowed waits for a resend. */
static void congestion_track(struct rf_agent *a, uint64_t resend_total, int64_t now)
{
	uint64_t resent = 0;
	int64_t since = 0;
	uint32_t nth = 0;
	bool over = false;

	pthread_mutex_lock(&a->lock);
	if (a->congested && resend_total == 0) {
		a->congested = false;
		over = true;
		resent = a->resent_bytes - a->congested_resent;
		since = a->congested_ms;
		nth = a->congestions;
	}
	pthread_mutex_unlock(&a->lock);
	if (over)
		RF_INFO("agent",
		        "caught up after congestion %u: %" PRIu64 " bytes resent, %" PRId64
		        " ms after the queue overflowed",
		        nth, resent, now - since);
}

/* Build and send PROGRESS when due (see the spec: changed, at most every
 * 100 ms; at least every second). */
static void progress(struct rf_agent *a, bool force)
{
	struct rfa_conn *c = &a->c;
	struct rf_ctl_progress m;
	unsigned n = atomic_load(&a->nvols);
	int64_t now = rfa_now_ms(), since = now - c->last_progress_ms;
	uint64_t resend_total = 0;
	uint8_t *buf;
	size_t cap;
	bool changed;

	if (!c->fab || c->ctl_fd < 0)
		return;
	memset(&m, 0, sizeof(m));
	m.next_seq = rf_ring_producer_next_seq(c->rp);
	m.instance = a->instance;
	pthread_mutex_lock(&a->lock);
	m.queued = a->q_count;
	m.congestions = a->congestions;
	for (unsigned i = 0; i < n; i++) {
		if (!a->vols[i]->ok)
			continue;
		m.vols[m.nvols].vol_id = a->vols[i]->vol_id;
		m.vols[m.nvols++].resent_bytes = a->vols[i]->resent_bytes;
	}
	pthread_mutex_unlock(&a->lock);
	for (unsigned i = 0; i < m.nvols; i++) {
		struct rf_agent_vol *v = vol_by_id(a, m.vols[i].vol_id);

		m.vols[i].dirty_bytes = rfa_dirty_bytes(v);
		m.vols[i].resend_bytes = rfa_resend_bytes(v);
		resend_total += m.vols[i].resend_bytes;
		resync_track(v, m.vols[i].resend_bytes, m.vols[i].resent_bytes, now);
	}
	if (m.nvols)
		congestion_track(a, resend_total, now);
	pthread_mutex_lock(&a->lock);
	m.flags = a->congested ? RF_PROGRESS_CONGESTED : 0;
	pthread_mutex_unlock(&a->lock);
	changed = !c->progress_sent || m.next_seq != c->last_progress.next_seq ||
	          m.queued != c->last_progress.queued || m.nvols != c->last_progress.nvols ||
	          m.congestions != c->last_progress.congestions ||
	          m.flags != c->last_progress.flags ||
	          memcmp(m.vols, c->last_progress.vols, m.nvols * sizeof(m.vols[0])) != 0;
	c->progress_changed = changed;
	if (!force && !(changed && since >= PROGRESS_MIN_MS) && since < PROGRESS_MAX_MS)
		return;
	cap = 14 + (size_t)m.nvols * 12 + 13 + (size_t)m.nvols * 16;
	buf = malloc(cap);
	if (!buf)
		return;
	ctl_send(a, RF_CTL_PROGRESS, 0, buf, rf_ctl_enc_progress(buf, cap, &m));
	free(buf);
	c->last_progress = m;
	c->last_progress_ms = now;
	c->progress_sent = true;
	c->progress_changed = false;
}

static int64_t min64(int64_t x, int64_t y)
{
	return x < y ? x : y;
}

/* Periodic work; returns the next deadline (monotonic ms). */
static int64_t timers(struct rf_agent *a, bool stopping)
{
	struct rfa_conn *c = &a->c;
	int64_t now = rfa_now_ms(), next = now + 60000;
	unsigned n = atomic_load(&a->nvols);

	if (now >= c->next_clear_ms) {
		for (unsigned i = 0; i < n; i++)
			rfa_clear_pass(a->vols[i], false);
		c->next_clear_ms = now + a->opts.clear_period_ms;
	}
	next = min64(next, c->next_clear_ms);
	if (c->ctl_fd < 0) {
		if (!stopping)
			next = min64(next, c->reconnect_at_ms);
		return next;
	}
	if (now - c->last_rx_ms > 3 * (int64_t)a->opts.heartbeat_ms) {
		disconnect(a, "the hub stopped answering");
		return now;
	}
	if (c->reports_due && now > c->reports_deadline_ms) {
		disconnect(a, "the hub did not answer VOLUME_REPORT");
		return now;
	}
	if (c->reports_due)
		next = min64(next, c->reports_deadline_ms + 1);
	if (now >= c->next_hb_ms) {
		c->hb_req = ++c->next_req;
		ctl_send(a, RF_CTL_HEARTBEAT, c->hb_req, NULL, 0);
		c->next_hb_ms = now + a->opts.heartbeat_ms;
	}
	if (c->ctl_fd < 0)
		return now;
	next = min64(next, c->next_hb_ms);
	next = min64(next, c->last_rx_ms + 3 * (int64_t)a->opts.heartbeat_ms + 1);
	if (c->fab) {
		progress(a, false);
		next = min64(next, c->last_progress_ms +
		                       (c->progress_changed ? PROGRESS_MIN_MS : PROGRESS_MAX_MS));
		if (c->resend_wake_ms)
			next = min64(next, c->resend_wake_ms);
	}
	return next;
}

static void arm_timer(struct rf_agent *a, int64_t at_ms)
{
	struct itimerspec its = {0};

	if (at_ms <= 0)
		at_ms = 1;
	its.it_value.tv_sec = at_ms / 1000;
	its.it_value.tv_nsec = (at_ms % 1000) * 1000000;
	timerfd_settime(a->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* ---- the loop -------------------------------------------------------------- */

static bool drained(struct rf_agent *a)
{
	bool empty;

	pthread_mutex_lock(&a->lock);
	empty = a->qhead == NULL;
	pthread_mutex_unlock(&a->lock);
	return empty && !posts_pending(&a->c);
}

void *rfa_loop_main(void *arg)
{
	struct rf_agent *a = arg;
	struct rfa_conn *c = &a->c;
	int64_t stop_deadline = 0;
	unsigned n;

	c->reconnect_at_ms = rfa_now_ms();
	c->next_clear_ms = rfa_now_ms() + a->opts.clear_period_ms;
	RF_INFO("agent", "%s: started, hub %s", a->id, a->hub);
	for (;;) {
		struct epoll_event evs[8];
		bool stopping, more = false;
		int64_t next;
		int nev;

		pthread_mutex_lock(&a->lock);
		stopping = a->stopping;
		pthread_mutex_unlock(&a->lock);
		if (stopping) {
			if (!stop_deadline)
				stop_deadline = rfa_now_ms() + a->opts.stop_timeout_ms;
			if (!c->fab || c->fab_dead || drained(a) || rfa_now_ms() >= stop_deadline)
				break;
		}

		if (c->ctl_fd < 0 && !stopping && rfa_now_ms() >= c->reconnect_at_ms)
			ctl_connect(a);
		if (c->ctl_fd >= 0 && !stopping) {
			report_volumes(a);
			/* Attach once the hub accepted a volume: before that it has
			 * no ring for us (and refuses the token). */
			if (!c->fab && c->reports_due == 0 && any_volume_ok(a))
				fab_attach(a);
		}
		if (c->fab) {
			if (c->reap)
				fab_events(a, 0);
			post_queue(a, UINT64_MAX);
			if (!stopping)
				more = resend_some(a);
			if (c->reap)
				fab_events(a, 0);
			if (c->fab_dead)
				disconnect(a, "data connection lost");
		}
		next = timers(a, stopping);
		if (stopping)
			next = min64(next, min64(stop_deadline, rfa_now_ms() + 50));
		arm_timer(a, next);

		nev = epoll_wait(a->epfd, evs, 8, more || c->reap ? 0 : -1);
		if (nev < 0 && errno != EINTR) {
			RF_ERR("agent", "epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < nev; i++) {
			uint64_t junk;

			switch (evs[i].data.u64) {
			case TAG_EVENT:
				if (read(a->evfd, &junk, sizeof(junk)) < 0 && errno != EAGAIN)
					RF_ERR("agent", "eventfd read: %s", strerror(errno));
				break;
			case TAG_TIMER:
				if (read(a->tfd, &junk, sizeof(junk)) < 0 && errno != EAGAIN)
					RF_ERR("agent", "timerfd read: %s", strerror(errno));
				break;
			case TAG_CTL:
				if (c->ctl_fd < 0)
					break;
				if (evs[i].events & EPOLLOUT)
					ctl_flush(a);
				if (c->ctl_fd >= 0 &&
				    (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
					ctl_readable(a);
				break;
			case TAG_FAB:
				fab_events(a, 0);
				if (c->fab_dead)
					disconnect(a, "data connection lost");
				break;
			}
		}
	}

	if (c->fab && !c->fab_dead && !drained(a))
		RF_WARN("agent", "stopping with records not durable at the hub; they stay dirty "
		                 "in the bitmap");
	teardown(a, "agent stopping", false);
	posts_to_resend(c);
	n = atomic_load(&a->nvols);
	for (unsigned i = 0; i < n; i++)
		rfa_clear_pass(a->vols[i], true);
	pthread_mutex_lock(&a->lock);
	RF_INFO("agent",
	        "%s: stopped: %" PRIu64 " records (%" PRIu64 " bytes) posted, %" PRIu64
	        " sync reads, %" PRIu64 " bytes resent, %" PRIu64
	        " writes left to the bitmap (queue full or detached), %u congestions, %" PRIu64
	        " reconnects",
	        a->id, a->records, a->record_bytes, a->sync_reads, a->resent_bytes,
	        a->overflow_writes, a->congestions, a->reconnects);
	a->running = false; /* rf_agent_wait_durable: -ESHUTDOWN from now on */
	pthread_mutex_unlock(&a->lock);
	rfa_durable_wake(a);
	return NULL;
}
