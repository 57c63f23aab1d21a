/* SPDX-License-Identifier: MIT */
/*
 * The rdma:// provider's producer side (struct rdma_conn): connect, post,
 * poll and close.
 *
 * rf_fab_post copies the segments into a
 * registered staging ring and writes each one with a one-sided RDMA WRITE to
 * the hub's ring (remote addr + seg.off); the last WR of a post is a
 * WRITE_WITH_IMM whose immediate is the low 32 bits of last_seq (the
 * doorbell) and is the only signaled WR, so its completion frees the post's
 * slot and staging bytes and becomes RF_FAB_EV_SENT (the caller's buffers
 * are in fact free once rf_fab_post returned). A post larger than the whole
 * staging ring registers the caller's buffers instead (slow path: they must
 * then stay untouched until SENT, as the API says).
 * Positions arrive as two-sided SENDs into a few posted receive buffers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "rdma_internal.h"
#include "rdma_wire.h"
#include "repfabric/log.h"

/* Staging ring: two largest segments plus PAD pieces, or less for small rings. */
#define STAGE_MAX       ((uint64_t)2 * RF_FAB_MAX_SEG_LEN + (64u << 10))
#define STAGE_MIN       ((uint64_t)256 << 10)
#define STAGE_ALIGN     64u
#define CM_STEP_TIMEOUT 2000 /* ms, address/route resolution without a deadline */

static void mem_free(void *p, size_t len)
{
	if (p)
		munmap(p, len);
}

static void *mem_alloc(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static void conn_push(struct rdma_conn *c, const struct rf_fab_event *ev)
{
	if (rf_rdma_evq_push(&c->q, ev))
		RF_ERR(SUBSYS, "%s: out of memory queueing an event (type %d)", c->name,
		       (int)ev->type);
	rf_rdma_sig_update(&c->sig, 1);
}

void rf_rdma_conn_fail(struct rdma_conn *c, int err, const char *fmt, ...)
{
	struct rf_fab_event ev = {.type = RF_FAB_EV_CLOSED, .err = err};
	char why[256];
	va_list ap;

	if (c->broken)
		return;
	c->broken = 1;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	RF_ERR(SUBSYS, "%s: connection lost: %s (%s)", c->name, why, strerror(-err));
	conn_push(c, &ev);
}

static int conn_post_recv(struct rdma_conn *c, unsigned idx)
{
	struct ibv_sge sge = {
	    .addr = (uintptr_t)c->recv_buf + (uint64_t)idx * MSG_SLOT,
	    .length = MSG_SLOT,
	    .lkey = c->recv_mr->lkey,
	};
	struct ibv_recv_wr wr = {.wr_id = WR_RECV | idx, .sg_list = &sge, .num_sge = 1};
	struct ibv_recv_wr *bad;

	return rf_verbs->post_recv(c->id->qp, &wr, &bad);
}

static void conn_release_slot(struct rdma_post_slot *s)
{
	for (unsigned i = 0; i < s->nmr; i++) {
		int rc = rf_verbs->dereg_mr(s->mrs[i]);

		if (rc)
			RF_WARN(SUBSYS, "deregistering a send buffer failed: %s", strerror(-rc));
	}
	s->nmr = 0;
}

static void conn_destroy(struct rdma_conn *c)
{
	int rc;

	if (c->connected) {
		rc = rf_verbs->disconnect(c->id);
		if (rc)
			RF_DEBUG(SUBSYS, "%s: disconnect: %s", c->name, strerror(-rc));
	}
	if (c->qp_created)
		rf_verbs->destroy_qp(c->id);
	for (uint64_t i = c->post_done; i != c->post_next; i++)
		conn_release_slot(&c->slots[i % CONN_MAX_POSTS]);
	if (c->stage_mr && (rc = rf_verbs->dereg_mr(c->stage_mr)))
		RF_WARN(SUBSYS, "%s: deregistering the staging area: %s", c->name, strerror(-rc));
	mem_free(c->stage, c->stage_size);
	if (c->recv_mr && (rc = rf_verbs->dereg_mr(c->recv_mr)))
		RF_WARN(SUBSYS, "%s: deregistering receive buffers: %s", c->name, strerror(-rc));
	free(c->recv_buf);
	if (c->cq && (rc = rf_verbs->destroy_cq(c->cq)))
		RF_WARN(SUBSYS, "%s: destroying the CQ: %s", c->name, strerror(-rc));
	if (c->cc && (rc = rf_verbs->destroy_comp_channel(c->cc)))
		RF_WARN(SUBSYS, "%s: destroying the completion channel: %s", c->name,
		        strerror(-rc));
	if (c->pd && (rc = rf_verbs->dealloc_pd(c->pd)))
		RF_WARN(SUBSYS, "%s: deallocating the PD: %s", c->name, strerror(-rc));
	if (c->id && (rc = rf_verbs->destroy_id(c->id)))
		RF_WARN(SUBSYS, "%s: destroying the CM id: %s", c->name, strerror(-rc));
	if (c->ch)
		rf_verbs->destroy_event_channel(c->ch);
	if (c->epfd >= 0)
		close(c->epfd);
	if (c->sig.fd >= 0)
		close(c->sig.fd);
	free(c->q.buf);
	free(c);
}

/* Next CM event on the (non-blocking) channel, waiting until @deadline. */
static int wait_cm_event(struct rdma_event_channel *ch, int64_t deadline, struct rdma_cm_event **ev)
{
	for (;;) {
		struct pollfd pfd = {.fd = ch->fd, .events = POLLIN};
		int rc = rf_verbs->get_cm_event(ch, ev);

		if (rc != -EAGAIN)
			return rc;
		rc = remaining_ms(deadline);
		if (rc == 0)
			return -ETIMEDOUT;
		rc = poll(&pfd, 1, rc);
		if (rc < 0 && errno != EINTR)
			return -errno;
	}
}

/* Timeout for one resolution step, or -ETIMEDOUT when nothing is left. */
static int step_timeout(int64_t deadline)
{
	int left = remaining_ms(deadline);

	if (left < 0)
		return CM_STEP_TIMEOUT;
	return left == 0 ? -ETIMEDOUT : left;
}

/* Resolve the address and route, waiting for each step. */
static int conn_resolve(struct rdma_conn *c, struct sockaddr *dst, int64_t deadline)
{
	struct rdma_cm_event *ev;
	enum rdma_cm_event_type type;
	int rc, status, t;

	t = step_timeout(deadline);
	if (t < 0)
		return t;
	rc = rf_verbs->resolve_addr(c->id, dst, t);
	if (rc) {
		RF_ERR(SUBSYS, "%s: cannot resolve the address: %s", c->name, strerror(-rc));
		return rc == -ENODEV || rc == -EADDRNOTAVAIL ? -ENODEV : rc;
	}
	rc = wait_cm_event(c->ch, deadline, &ev);
	if (rc) {
		RF_ERR(SUBSYS, "%s: resolving the address: %s", c->name, strerror(-rc));
		return rc;
	}
	type = ev->event;
	status = ev->status;
	rf_verbs->ack_cm_event(ev);
	if (type != RDMA_CM_EVENT_ADDR_RESOLVED) {
		rc = status_errno(status, -EHOSTUNREACH);
		RF_ERR(SUBSYS,
		       "%s: no RDMA route to the hub: %s (%s); the address must be on an RDMA "
		       "device (rdma_cm cannot use 127.0.0.1)",
		       c->name, rdma_event_str(type), strerror(-rc));
		return rc;
	}

	t = step_timeout(deadline);
	if (t < 0)
		return t;
	rc = rf_verbs->resolve_route(c->id, t);
	if (rc) {
		RF_ERR(SUBSYS, "%s: cannot resolve the route: %s", c->name, strerror(-rc));
		return rc;
	}
	rc = wait_cm_event(c->ch, deadline, &ev);
	if (rc) {
		RF_ERR(SUBSYS, "%s: resolving the route: %s", c->name, strerror(-rc));
		return rc;
	}
	type = ev->event;
	status = ev->status;
	rf_verbs->ack_cm_event(ev);
	if (type != RDMA_CM_EVENT_ROUTE_RESOLVED) {
		rc = status_errno(status, -EHOSTUNREACH);
		RF_ERR(SUBSYS, "%s: route resolution failed: %s (%s)", c->name,
		       rdma_event_str(type), strerror(-rc));
		return rc;
	}
	return 0;
}

/* PD, completion channel, CQ, QP and the position receive buffers. */
static int conn_setup_qp(struct rdma_conn *c)
{
	struct ibv_context *ctx = c->id->verbs;
	struct ibv_qp_init_attr qa = {
	    .qp_type = IBV_QPT_RC,
	    .cap =
	        {
	            .max_send_wr = CONN_SQ_DEPTH,
	            .max_recv_wr = CONN_RQ_DEPTH,
	            .max_send_sge = 1,
	            .max_recv_sge = 1,
	        },
	    .sq_sig_all = 0,
	};
	int rc;

	rc = rf_verbs->alloc_pd(ctx, &c->pd);
	if (rc)
		goto fail;
	rc = rf_verbs->create_comp_channel(ctx, &c->cc);
	if (rc)
		goto fail;
	rc = rf_rdma_set_nonblock(c->cc->fd);
	if (rc)
		goto fail;
	rc = rf_verbs->create_cq(ctx, CONN_CQ_DEPTH, c, c->cc, &c->cq);
	if (rc)
		goto fail;
	rc = rf_verbs->req_notify_cq(c->cq, 0);
	if (rc)
		goto fail;
	qa.send_cq = c->cq;
	qa.recv_cq = c->cq;
	rc = rf_verbs->create_qp(c->id, c->pd, &qa);
	if (rc)
		goto fail;
	c->qp_created = 1;

	c->recv_buf = aligned_alloc(MSG_SLOT, CONN_RQ_DEPTH * MSG_SLOT);
	if (!c->recv_buf)
		return -ENOMEM;
	rc = rf_rdma_reg_mr_explained(c->pd, c->recv_buf, CONN_RQ_DEPTH * MSG_SLOT,
	                              IBV_ACCESS_LOCAL_WRITE, &c->recv_mr, "receive buffers");
	if (rc)
		return rc;
	for (unsigned i = 0; i < CONN_RQ_DEPTH; i++) {
		rc = conn_post_recv(c, i);
		if (rc)
			goto fail;
	}
	return 0;
fail:
	RF_ERR(SUBSYS, "%s: cannot set up the queue pair: %s", c->name, strerror(-rc));
	return rc;
}

/* A rejection: ours carries a reason, anything else means nobody listens. */
static int conn_rejected(struct rdma_conn *c, const struct rdma_cm_event *ev, uint64_t token)
{
	struct rf_rdma_rej rej;

	if (rf_rdma_rej_decode(ev->param.conn.private_data, ev->param.conn.private_data_len,
	                       &rej)) {
		RF_ERR(SUBSYS,
		       "%s: connection refused (no repfabric hub listening? reject "
		       "status %d)",
		       c->name, ev->status);
		return -ECONNREFUSED;
	}
	switch (rej.reason) {
	case RF_RDMA_REJ_REFUSED:
		RF_ERR(SUBSYS, "%s: the hub refused token %#llx: %s", c->name,
		       (unsigned long long)token, strerror(rej.err));
		return -rej.err; /* ENOENT: unknown token, EBUSY: attached elsewhere... */
	case RF_RDMA_REJ_BAD_VERSION:
		RF_ERR(SUBSYS, "%s: the hub speaks rdma protocol version %u, not %u", c->name,
		       rej.version, RF_RDMA_VERSION);
		return -EPROTO;
	case RF_RDMA_REJ_BAD_REQUEST:
		RF_ERR(SUBSYS, "%s: the hub rejected our connect request as malformed", c->name);
		return -EPROTO;
	case RF_RDMA_REJ_HUB_ERROR:
	default:
		RF_ERR(SUBSYS, "%s: the hub failed to attach the ring (reason %u): %s", c->name,
		       rej.reason, strerror(rej.err));
		return -ECONNREFUSED;
	}
}

/* Size and register the staging ring; halve it while memlock refuses. */
static int conn_setup_staging(struct rdma_conn *c)
{
	uint64_t want = STAGE_MAX;
	int rc;

	if (c->data_size < (STAGE_MAX - (64u << 10)) / 2)
		want = 2 * c->data_size + (64u << 10);
	want = (want + 4095) & ~(uint64_t)4095;
	for (;;) {
		c->stage = mem_alloc(want);
		if (!c->stage)
			return -ENOMEM;
		c->stage_size = want;
		rc = rf_verbs->reg_mr(c->pd, c->stage, want, 0, &c->stage_mr);
		if (!rc)
			break;
		mem_free(c->stage, want);
		c->stage = NULL;
		c->stage_size = 0;
		if (rc != -ENOMEM || want / 2 < STAGE_MIN) {
			rf_rdma_explain_reg_failure(rc, want, "the staging area");
			return rc;
		}
		RF_WARN(SUBSYS,
		        "%s: cannot lock a %llu KiB staging area (ulimit -l?); trying half; "
		        "larger posts will register their buffers on the fly",
		        c->name, (unsigned long long)(want >> 10));
		want /= 2;
	}
	RF_DEBUG(SUBSYS, "%s: staging area %llu KiB", c->name,
	         (unsigned long long)(c->stage_size >> 10));
	return 0;
}

int rf_rdma_connect(const char *addr, uint64_t token, int timeout_ms, struct rf_fab_conn **out,
                    struct rf_fab_ring_info *info)
{
	int64_t deadline = deadline_of(timeout_ms);
	struct rdma_conn_param param = {
	    .responder_resources = 0,
	    .initiator_depth = 0,
	    .retry_count = RC_RETRY_COUNT,
	    .rnr_retry_count = RC_RNR_RETRY_INF,
	};
	unsigned char req[RF_RDMA_REQ_LEN];
	struct rf_rdma_acc acc = {0};
	struct rdma_cm_event *ev;
	struct addrinfo *ai = NULL;
	struct rdma_conn *c;
	int rc;

	*out = NULL;
	rc = rf_rdma_resolve(addr, 0, &ai);
	if (rc)
		return rc;
	c = calloc(1, sizeof(*c));
	if (!c) {
		freeaddrinfo(ai);
		return -ENOMEM;
	}
	c->epfd = -1;
	c->sig.fd = -1;
	c->q.esz = sizeof(struct rf_fab_event);
	snprintf(c->name, sizeof(c->name), "rdma://%s", addr);

	rc = rf_rdma_open_channel(&c->ch, c->name);
	if (rc)
		goto fail;
	rc = rf_verbs->create_id(c->ch, &c->id, c, RDMA_PS_TCP);
	if (rc) {
		RF_ERR(SUBSYS, "%s: cannot create a CM id: %s", c->name, strerror(-rc));
		goto fail;
	}
	rc = conn_resolve(c, ai->ai_addr, deadline);
	if (rc)
		goto fail;
	rc = conn_setup_qp(c);
	if (rc)
		goto fail;

	rf_rdma_req_encode(req, token);
	param.private_data = req;
	param.private_data_len = sizeof(req);
	rf_rdma_set_ack_timeout(c->id, c->name);
	rc = rf_verbs->connect(c->id, &param);
	if (rc) {
		RF_ERR(SUBSYS, "%s: rdma_connect: %s", c->name, strerror(-rc));
		goto fail;
	}
	rc = wait_cm_event(c->ch, deadline, &ev);
	if (rc) {
		if (rc == -ETIMEDOUT)
			RF_ERR(SUBSYS, "%s: no answer from the hub within %d ms", c->name,
			       timeout_ms);
		else
			RF_ERR(SUBSYS, "%s: waiting for the hub: %s", c->name, strerror(-rc));
		goto fail;
	}
	switch (ev->event) {
	case RDMA_CM_EVENT_ESTABLISHED:
		rc = rf_rdma_acc_decode(ev->param.conn.private_data,
		                        ev->param.conn.private_data_len, &acc);
		if (rc)
			RF_ERR(SUBSYS, "%s: the hub's accept message is malformed", c->name);
		else
			c->connected = 1;
		break;
	case RDMA_CM_EVENT_REJECTED:
		rc = conn_rejected(c, ev, token);
		break;
	case RDMA_CM_EVENT_UNREACHABLE:
		rc = status_errno(ev->status, -EHOSTUNREACH);
		RF_ERR(SUBSYS, "%s: hub unreachable: %s", c->name, strerror(-rc));
		break;
	default:
		rc = status_errno(ev->status, -ECONNREFUSED);
		RF_ERR(SUBSYS, "%s: connect failed: %s (%s)", c->name, rdma_event_str(ev->event),
		       strerror(-rc));
		break;
	}
	rf_verbs->ack_cm_event(ev);
	if (rc)
		goto fail;
	c->remote_addr = acc.addr;
	c->rkey = acc.rkey;
	c->data_size = acc.data_size;
	rf_rdma_set_min_rnr_timer(c->id->qp, c->name);

	rc = conn_setup_staging(c);
	if (rc)
		goto fail;
	c->epfd = epoll_create1(EPOLL_CLOEXEC);
	c->sig.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->epfd < 0 || c->sig.fd < 0) {
		rc = -errno;
		goto fail;
	}
	if ((rc = rf_rdma_epoll_add(c->epfd, c->ch->fd, TAG_CM)) ||
	    (rc = rf_rdma_epoll_add(c->epfd, c->cc->fd, TAG_CQ)) ||
	    (rc = rf_rdma_epoll_add(c->epfd, c->sig.fd, TAG_SIG)))
		goto fail;

	info->ring_id = acc.ring_id;
	info->data_size = acc.data_size;
	info->pos = acc.pos;
	freeaddrinfo(ai);
	RF_INFO(SUBSYS, "%s: attached to ring %#llx (%llu bytes) with token %#llx", c->name,
	        (unsigned long long)acc.ring_id, (unsigned long long)acc.data_size,
	        (unsigned long long)token);
	*out = &c->base;
	return 0;
fail:
	freeaddrinfo(ai);
	conn_destroy(c);
	return rc;
}

/* Place @len bytes in the staging ring; the ring is FIFO-freed by completions. */
static int stage_alloc(struct rdma_conn *c, uint32_t len, uint64_t *off)
{
	uint64_t a = (len + STAGE_ALIGN - 1) & ~(uint64_t)(STAGE_ALIGN - 1);
	uint64_t pos = c->stage_head % c->stage_size;
	uint64_t skip = pos + a > c->stage_size ? c->stage_size - pos : 0;

	if (c->stage_head + skip + a - c->stage_tail > c->stage_size)
		return -EAGAIN;
	*off = (c->stage_head + skip) % c->stage_size;
	c->stage_head += skip + a;
	return 0;
}

int rf_rdma_post(struct rf_fab_conn *base, const struct rf_fab_seg *segs, unsigned nseg,
                 uint64_t last_seq, uint64_t cookie)
{
	struct rdma_conn *c = container_of(base, struct rdma_conn, base);
	struct ibv_send_wr wr[RF_FAB_MAX_SEGS], *bad;
	struct ibv_sge sge[RF_FAB_MAX_SEGS];
	struct rdma_post_slot *slot;
	uint64_t total = 0, save;
	int rc;

	if (c->broken)
		return -ENOTCONN;
	if (c->post_next - c->post_done >= CONN_MAX_POSTS)
		return -EAGAIN;
	if (c->post_next == c->post_done)
		c->stage_head = c->stage_tail = 0; /* idle: start at the beginning */
	slot = &c->slots[c->post_next % CONN_MAX_POSTS];
	slot->nmr = 0;
	slot->cookie = cookie;
	slot->last_seq = last_seq;
	save = c->stage_head;
	for (unsigned i = 0; i < nseg; i++)
		total += (segs[i].len + STAGE_ALIGN - 1) & ~(uint64_t)(STAGE_ALIGN - 1);

	for (unsigned i = 0; i < nseg; i++) {
		if (total <= c->stage_size) {
			uint64_t off;

			if (stage_alloc(c, segs[i].len, &off)) {
				c->stage_head = save;
				return -EAGAIN;
			}
			memcpy(c->stage + off, segs[i].buf, segs[i].len);
			sge[i].addr = (uintptr_t)(c->stage + off);
			sge[i].lkey = c->stage_mr->lkey;
		} else {
			/* Slow path: larger than the whole staging ring. */
			rc = rf_rdma_reg_mr_explained(c->pd, (void *)segs[i].buf, segs[i].len, 0,
			                              &slot->mrs[slot->nmr], "a send buffer");
			if (rc) {
				conn_release_slot(slot);
				return rc;
			}
			sge[i].addr = (uintptr_t)segs[i].buf;
			sge[i].lkey = slot->mrs[slot->nmr]->lkey;
			slot->nmr++;
		}
		sge[i].length = segs[i].len;
		memset(&wr[i], 0, sizeof(wr[i]));
		wr[i].wr_id = WR_SEND | WR_VAL(c->post_next);
		wr[i].sg_list = &sge[i];
		wr[i].num_sge = 1;
		wr[i].opcode = IBV_WR_RDMA_WRITE;
		wr[i].wr.rdma.remote_addr = c->remote_addr + segs[i].off;
		wr[i].wr.rdma.rkey = c->rkey;
		wr[i].next = i + 1 < nseg ? &wr[i + 1] : NULL;
	}
	wr[nseg - 1].opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
	wr[nseg - 1].imm_data = htonl((uint32_t)last_seq);
	wr[nseg - 1].send_flags = IBV_SEND_SIGNALED;
	slot->stage_end = c->stage_head;

	rc = rf_verbs->post_send(c->id->qp, wr, &bad);
	if (rc) {
		c->stage_head = save;
		conn_release_slot(slot);
		if (rc == -ENOMEM)
			return -EAGAIN;
		rf_rdma_conn_fail(c, rc, "posting RDMA writes failed");
		return -ENOTCONN;
	}
	c->post_next++;
	return 0;
}

/*
 * A signaled WRITE WITH IMM completed: on an RC QP that means the responder
 * acknowledged it, so its bytes (and every earlier WRITE's on the QP) are
 * in the hub's memory. Each post becomes SENT; one LANDED covers them all.
 */
static void conn_complete_posts(struct rdma_conn *c, uint64_t upto)
{
	struct rf_fab_event landed = {.type = RF_FAB_EV_LANDED};
	bool any = false;

	/* Completions arrive in order; @upto also covers any earlier post. */
	while (c->post_done != c->post_next) {
		struct rdma_post_slot *s = &c->slots[c->post_done % CONN_MAX_POSTS];
		struct rf_fab_event ev = {.type = RF_FAB_EV_SENT, .cookie = s->cookie};
		int last = WR_VAL(c->post_done) == upto;

		c->stage_tail = s->stage_end;
		landed.seq = s->last_seq;
		any = true;
		conn_release_slot(s);
		c->post_done++;
		conn_push(c, &ev);
		if (last)
			break;
	}
	if (any)
		conn_push(c, &landed);
}

void rf_rdma_conn_handle_wc(struct rdma_conn *c, const struct ibv_wc *wc)
{
	int is_send = WR_KIND(wc->wr_id) == WR_SEND;

	if (c->broken)
		return; /* flushes after the first error */
	if (wc->status != IBV_WC_SUCCESS) {
		rf_rdma_conn_fail(c, rf_rdma_wc_errno(wc->status),
		                  "%s completed with %s (vendor error %#x)",
		                  is_send ? "an RDMA write" : "a receive",
		                  ibv_wc_status_str(wc->status), wc->vendor_err);
		return;
	}
	if (is_send) {
		conn_complete_posts(c, WR_VAL(wc->wr_id));
	} else if (WR_KIND(wc->wr_id) == WR_RECV && WR_VAL(wc->wr_id) < CONN_RQ_DEPTH) {
		unsigned idx = (unsigned)WR_VAL(wc->wr_id);
		struct rf_fab_event ev = {.type = RF_FAB_EV_POSITION};
		const unsigned char *m = (const unsigned char *)c->recv_buf + idx * MSG_SLOT;
		int rc;

		if (wc->opcode != IBV_WC_RECV || rf_rdma_pos_decode(m, wc->byte_len, &ev.pos)) {
			rf_rdma_conn_fail(c, -EPROTO, "malformed position message (%u bytes)",
			                  wc->byte_len);
			return;
		}
		conn_push(c, &ev);
		rc = conn_post_recv(c, idx);
		if (rc)
			rf_rdma_conn_fail(c, rc, "reposting a receive failed");
	} else {
		rf_rdma_conn_fail(c, -EPROTO, "completion with unknown wr_id %#llx",
		                  (unsigned long long)wc->wr_id);
	}
}

static void conn_drain_cq(struct rdma_conn *c)
{
	struct ibv_wc wc[CQ_BATCH];
	int total = 0, n;

	c->cq_more = 0;
	while (!c->broken) {
		n = rf_verbs->poll_cq(c->cq, CQ_BATCH, wc);
		if (n < 0) {
			rf_rdma_conn_fail(c, n, "polling the completion queue failed");
			return;
		}
		for (int i = 0; i < n; i++)
			rf_rdma_conn_handle_wc(c, &wc[i]);
		if (n < CQ_BATCH)
			return;
		total += n;
		if (total >= CQ_DRAIN_MAX) {
			c->cq_more = 1;
			return;
		}
	}
}

static void conn_cm_events(struct rdma_conn *c)
{
	struct rdma_cm_event *ev;

	while (rf_verbs->get_cm_event(c->ch, &ev) == 0) {
		switch (ev->event) {
		case RDMA_CM_EVENT_DISCONNECTED:
			c->connected = 0;
			rf_rdma_conn_fail(c, -ECONNRESET, "the hub disconnected");
			break;
		case RDMA_CM_EVENT_DEVICE_REMOVAL:
			rf_rdma_conn_fail(c, -ENODEV, "the RDMA device was removed");
			break;
		case RDMA_CM_EVENT_TIMEWAIT_EXIT:
			break;
		default:
			RF_DEBUG(SUBSYS, "%s: CM event %s ignored", c->name,
			         rdma_event_str(ev->event));
			break;
		}
		rf_verbs->ack_cm_event(ev);
	}
}

static void conn_progress(struct rdma_conn *c)
{
	struct epoll_event evs[4];
	int n = epoll_wait(c->epfd, evs, 4, 0);

	for (int i = 0; i < n; i++) {
		if (evs[i].data.u64 == TAG_CM) {
			conn_cm_events(c);
		} else if (evs[i].data.u64 == TAG_CQ) {
			struct ibv_cq *cq;
			void *ctx;

			if (rf_verbs->get_cq_event(c->cc, &cq, &ctx) == 0) {
				rf_verbs->ack_cq_events(cq, 1);
				if (!c->broken) {
					int rc = rf_verbs->req_notify_cq(c->cq, 0);

					if (rc)
						rf_rdma_conn_fail(c, rc, "arming the CQ failed");
				}
			}
		}
	}
	conn_drain_cq(c);
}

int rf_rdma_poll(struct rf_fab_conn *base, struct rf_fab_event *evs, int max, int timeout_ms)
{
	struct rdma_conn *c = container_of(base, struct rdma_conn, base);
	int64_t deadline = deadline_of(timeout_ms);
	int n = 0;

	for (;;) {
		struct epoll_event e;
		int left;

		conn_progress(c);
		if (c->q.n)
			break;
		left = remaining_ms(deadline);
		if (left == 0)
			break;
		rf_rdma_sig_update(&c->sig, c->cq_more);
		if (epoll_wait(c->epfd, &e, 1, left) < 0 && errno != EINTR)
			return -errno;
	}
	while (n < max && rf_rdma_evq_pop(&c->q, &evs[n]))
		n++;
	rf_rdma_sig_update(&c->sig, c->q.n > 0 || c->cq_more);
	return n;
}

int rf_rdma_conn_fd(const struct rf_fab_conn *base)
{
	const struct rdma_conn *c = container_of(base, const struct rdma_conn, base);

	return c->epfd;
}

void rf_rdma_close(struct rf_fab_conn *base)
{
	struct rdma_conn *c = container_of(base, struct rdma_conn, base);

	RF_DEBUG(SUBSYS, "%s: closing", c->name);
	conn_destroy(c);
}
