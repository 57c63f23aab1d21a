/* SPDX-License-Identifier: MIT */
/*
 * The rdma:// provider's hub side (struct rdma_listener, struct rdma_peer):
 * listen, accept and refuse producers, report their doorbells, publish
 * positions and fence.
 *
 * Every producer gets its own PD, MR over the ring's data area
 * (LOCAL_WRITE|REMOTE_WRITE only), CQ, completion channel and QP. Each
 * doorbell consumes one of PEER_RQ_DEPTH zero-length receives, becomes
 * RF_FAB_HEV_DATA and is reposted.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rdma_internal.h"
#include "rdma_wire.h"
#include "repfabric/admit.h"
#include "repfabric/log.h"

/* Hub per-peer queue depths. */
#define PEER_RQ_DEPTH  256 /* doorbell receives */
#define PEER_PUB_SLOTS 4   /* position SENDs in flight; later ones coalesce */
#define PEER_SQ_DEPTH  (PEER_PUB_SLOTS + 4)
#define PEER_CQ_DEPTH  (PEER_RQ_DEPTH + PEER_SQ_DEPTH + 8)
#define LISTEN_BACKLOG 64

static void addr_str(const struct sockaddr *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (!sa) {
		snprintf(buf, len, "?");
		return;
	}
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(in6->sin6_port));
	} else {
		snprintf(buf, len, "?");
	}
}

/* rdma_cm binds loopback addresses but can never route to them. */
static int is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
	return 0;
}

enum peer_state {
	PEER_CONNECTING, /* accepted, ATTACHED not yet queued */
	PEER_LIVE,       /* ATTACHED queued */
	PEER_DEAD,       /* fenced, DETACHED queued */
};

struct rdma_listener;

struct rdma_peer {
	struct rf_fab_peer base;
	struct rdma_listener *l;
	struct rdma_peer *next;
	struct rf_pending pend; /* in l->base.admit from rdma_accept to ESTABLISHED */
	char name[96];          /* "IP:PORT token 0x..." for log lines */

	struct rdma_cm_id *id;
	struct ibv_pd *pd;
	struct ibv_comp_channel *cc;
	struct ibv_cq *cq;
	int qp_created;
	int accepted;
	int in_epoll;

	struct rf_fab_ring_mem mem;
	struct ibv_mr *ring_mr;
	unsigned char *pub_buf; /* PEER_PUB_SLOTS x MSG_SLOT */
	struct ibv_mr *pub_mr;

	uint64_t token;
	uint64_t last_seq; /* the last doorbell, extended to 64 bits */
	enum peer_state state;
	int delivered; /* its DETACHED was returned: free at the next poll */

	unsigned pub_inflight, pub_next;
	int pub_pending;
	struct rf_fab_position pub_pos;
};

struct rdma_listener {
	struct rf_fab_listener base;
	char name[280];
	const struct rf_fab_hub_ops *ops;
	void *ctx;

	struct rdma_event_channel *ch;
	struct rdma_cm_id *id;
	int epfd;
	struct sigfd sig;
	struct evq q;
	int more; /* a peer CQ was left non-empty by the drain bound */
	struct rdma_peer *peers;
};

static void hub_push(struct rdma_listener *l, enum rf_fab_hub_event_type type, struct rdma_peer *p,
                     uint64_t seq, int err)
{
	struct rf_fab_hub_event ev = {
	    .type = type, .peer = &p->base, .token = p->token, .seq = seq, .err = err};

	/* Only a peer's newest doorbell matters: fold a DATA event into the
	 * peer's DATA event at the tail, so the queue stays short however
	 * many doorbells complete between two polls. */
	if (type == RF_FAB_HEV_DATA && l->q.n) {
		struct rf_fab_hub_event *tail =
		    (void *)(l->q.buf + ((l->q.head + l->q.n - 1) % l->q.cap) * l->q.esz);

		if (tail->type == RF_FAB_HEV_DATA && tail->peer == &p->base) {
			tail->seq = seq;
			rf_rdma_sig_update(&l->sig, 1);
			return;
		}
	}
	if (rf_rdma_evq_push(&l->q, &ev))
		RF_ERR(SUBSYS, "%s: out of memory queueing an event (type %d)", p->name, (int)type);
	rf_rdma_sig_update(&l->sig, 1);
}

/*
 * The producer is gone or fenced: stop its writes (QP to error), take away
 * the ring (deregister the MR), disconnect and queue DETACHED. Returns the
 * first error of the QP transition or the deregistration.
 */
static int peer_die(struct rdma_peer *p, int err, const char *why)
{
	int rc = 0, r;

	if (p->state == PEER_DEAD)
		return 0;
	rf_admit_pending_del(&p->l->base.admit, &p->pend);
	if (p->state == PEER_CONNECTING)
		hub_push(p->l, RF_FAB_HEV_ATTACHED, p, 0, 0);
	if (p->qp_created) {
		struct ibv_qp_attr a = {.qp_state = IBV_QPS_ERR};

		r = rf_verbs->modify_qp(p->id->qp, &a, IBV_QP_STATE);
		if (r) {
			RF_ERR(SUBSYS, "%s: moving the QP to error failed: %s", p->name,
			       strerror(-r));
			rc = r;
		}
	}
	if (p->ring_mr) {
		r = rf_verbs->dereg_mr(p->ring_mr);
		if (r) {
			RF_ERR(SUBSYS, "%s: deregistering the ring failed: %s", p->name,
			       strerror(-r));
			rc = rc ?: r;
		}
		p->ring_mr = NULL;
	}
	if (p->accepted) {
		r = rf_verbs->disconnect(p->id);
		if (r)
			RF_DEBUG(SUBSYS, "%s: disconnect: %s", p->name, strerror(-r));
		p->accepted = 0;
	}
	if (p->in_epoll) {
		epoll_ctl(p->l->epfd, EPOLL_CTL_DEL, p->cc->fd, NULL);
		p->in_epoll = 0;
	}
	p->state = PEER_DEAD;
	RF_FAB_COUNT(&p->l->base, &p->base, detaches, 1);
	/* A disconnect (0) or a fence (-ECANCELED) is not a failure. */
	if (err && err != -ECANCELED) {
		RF_FAB_COUNT(&p->l->base, &p->base, errors, 1);
		RF_WARN(SUBSYS, "%s: detached: %s (%s)", p->name, why, strerror(-err));
	} else {
		RF_INFO(SUBSYS, "%s: detached: %s", p->name, why);
	}
	hub_push(p->l, RF_FAB_HEV_DETACHED, p, p->last_seq, err);
	return rc;
}

static void peer_free(struct rdma_peer *p)
{
	struct rdma_peer **pp;
	int rc;

	for (pp = &p->l->peers; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	if (p->in_epoll)
		epoll_ctl(p->l->epfd, EPOLL_CTL_DEL, p->cc->fd, NULL);
	if (p->qp_created)
		rf_verbs->destroy_qp(p->id);
	if (p->ring_mr && (rc = rf_verbs->dereg_mr(p->ring_mr)))
		RF_WARN(SUBSYS, "%s: deregistering the ring: %s", p->name, strerror(-rc));
	if (p->pub_mr && (rc = rf_verbs->dereg_mr(p->pub_mr)))
		RF_WARN(SUBSYS, "%s: deregistering send buffers: %s", p->name, strerror(-rc));
	free(p->pub_buf);
	if (p->cq && (rc = rf_verbs->destroy_cq(p->cq)))
		RF_WARN(SUBSYS, "%s: destroying the CQ: %s", p->name, strerror(-rc));
	if (p->cc && (rc = rf_verbs->destroy_comp_channel(p->cc)))
		RF_WARN(SUBSYS, "%s: destroying the completion channel: %s", p->name,
		        strerror(-rc));
	if (p->pd && (rc = rf_verbs->dealloc_pd(p->pd)))
		RF_WARN(SUBSYS, "%s: deallocating the PD: %s", p->name, strerror(-rc));
	if (p->id && (rc = rf_verbs->destroy_id(p->id)))
		RF_WARN(SUBSYS, "%s: destroying the CM id: %s", p->name, strerror(-rc));
	free(p);
}

static int peer_post_recv(struct rdma_peer *p, unsigned idx)
{
	/* A WRITE_WITH_IMM consumes a receive but places no bytes in it. */
	struct ibv_recv_wr wr = {.wr_id = WR_RECV | idx, .sg_list = NULL, .num_sge = 0};
	struct ibv_recv_wr *bad;

	return rf_verbs->post_recv(p->id->qp, &wr, &bad);
}

static int peer_send_pos(struct rdma_peer *p, const struct rf_fab_position *pos)
{
	unsigned slot = p->pub_next % PEER_PUB_SLOTS;
	struct ibv_sge sge = {
	    .addr = (uintptr_t)(p->pub_buf + slot * MSG_SLOT),
	    .length = RF_RDMA_POS_LEN,
	    .lkey = p->pub_mr->lkey,
	};
	struct ibv_send_wr wr = {
	    .wr_id = WR_SEND | slot,
	    .sg_list = &sge,
	    .num_sge = 1,
	    .opcode = IBV_WR_SEND,
	    .send_flags = IBV_SEND_SIGNALED,
	};
	struct ibv_send_wr *bad;
	int rc;

	rf_rdma_pos_encode(p->pub_buf + slot * MSG_SLOT, pos);
	rc = rf_verbs->post_send(p->id->qp, &wr, &bad);
	if (rc) {
		peer_die(p, rc, "posting a position message failed");
		return -ENOTCONN;
	}
	p->pub_next++;
	p->pub_inflight++;
	rf_fab_count_credit(&p->l->base, &p->base, pos);
	return 0;
}

/* Seq from a doorbell: the 64-bit value >= last whose low 32 bits are @imm. */
static uint64_t seq_extend(uint64_t last, uint32_t imm)
{
	uint64_t s = (last & ~(uint64_t)0xffffffff) | imm;

	if (s < last)
		s += (uint64_t)1 << 32;
	return s;
}

static void peer_handle_wc(struct rdma_peer *p, const struct ibv_wc *wc)
{
	int rc;

	if (p->state == PEER_DEAD)
		return;
	if (wc->status != IBV_WC_SUCCESS) {
		char why[160];

		snprintf(why, sizeof(why), "%s completed with %s (vendor error %#x)",
		         WR_KIND(wc->wr_id) == WR_SEND ? "a position send" : "a receive",
		         ibv_wc_status_str(wc->status), wc->vendor_err);
		peer_die(p, rf_rdma_wc_errno(wc->status), why);
		return;
	}
	if (WR_KIND(wc->wr_id) == WR_RECV) {
		if (wc->opcode != IBV_WC_RECV_RDMA_WITH_IMM || !(wc->wc_flags & IBV_WC_WITH_IMM)) {
			peer_die(p, -EPROTO, "the producer sent a message instead of a doorbell");
			return;
		}
		if (p->state == PEER_CONNECTING) {
			/* Data before the ESTABLISHED event (a lost RTU). */
			p->state = PEER_LIVE;
			hub_push(p->l, RF_FAB_HEV_ATTACHED, p, 0, 0);
		}
		p->last_seq = seq_extend(p->last_seq, ntohl(wc->imm_data));
		RF_FAB_COUNT(&p->l->base, &p->base, completions, 1);
		hub_push(p->l, RF_FAB_HEV_DATA, p, p->last_seq, 0);
		rc = peer_post_recv(p, (unsigned)WR_VAL(wc->wr_id));
		if (rc)
			peer_die(p, rc, "reposting a receive failed");
	} else if (WR_KIND(wc->wr_id) == WR_SEND) {
		if (p->pub_inflight)
			p->pub_inflight--;
		if (p->pub_pending) {
			p->pub_pending = 0;
			peer_send_pos(p, &p->pub_pos);
		}
	}
}

static void peer_drain_cq(struct rdma_peer *p)
{
	struct ibv_wc wc[CQ_BATCH];
	int total = 0, n;

	while (p->state != PEER_DEAD) {
		n = rf_verbs->poll_cq(p->cq, CQ_BATCH, wc);
		if (n < 0) {
			peer_die(p, n, "polling the completion queue failed");
			return;
		}
		for (int i = 0; i < n; i++)
			peer_handle_wc(p, &wc[i]);
		if (n < CQ_BATCH)
			return;
		total += n;
		if (total >= CQ_DRAIN_MAX) {
			p->l->more = 1;
			return;
		}
	}
}

static void hub_reject(struct rdma_listener *l, struct rdma_cm_id *id, unsigned reason, int err)
{
	unsigned char rej[RF_RDMA_REJ_LEN];
	int rc;

	rf_rdma_rej_encode(rej, reason, err < 0 ? -err : err);
	rc = rf_verbs->reject(id, rej, sizeof(rej));
	if (rc)
		RF_WARN(SUBSYS, "%s: rdma_reject: %s", l->name, strerror(-rc));
}

/* PD, ring MR, CQ, QP, receives; the peer is on the list and in the epoll set. */
static int peer_setup(struct rdma_peer *p)
{
	struct ibv_context *ctx = p->id->verbs;
	struct ibv_qp_init_attr qa = {
	    .qp_type = IBV_QPT_RC,
	    .cap =
	        {
	            .max_send_wr = PEER_SQ_DEPTH,
	            .max_recv_wr = PEER_RQ_DEPTH,
	            .max_send_sge = 1,
	            .max_recv_sge = 1,
	        },
	    .sq_sig_all = 0,
	};
	char what[64];
	int rc;

	rc = rf_verbs->alloc_pd(ctx, &p->pd);
	if (rc)
		goto fail;
	snprintf(what, sizeof(what), "the ring of token %#llx", (unsigned long long)p->token);
	rc = rf_rdma_reg_mr_explained(p->pd, p->mem.data, p->mem.data_size,
	                              IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE, &p->ring_mr,
	                              what);
	if (rc)
		return rc;
	p->pub_buf = aligned_alloc(MSG_SLOT, PEER_PUB_SLOTS * MSG_SLOT);
	if (!p->pub_buf)
		return -ENOMEM;
	memset(p->pub_buf, 0, PEER_PUB_SLOTS * MSG_SLOT);
	rc = rf_rdma_reg_mr_explained(p->pd, p->pub_buf, PEER_PUB_SLOTS * MSG_SLOT, 0, &p->pub_mr,
	                              "send buffers");
	if (rc)
		return rc;
	rc = rf_verbs->create_comp_channel(ctx, &p->cc);
	if (rc)
		goto fail;
	rc = rf_rdma_set_nonblock(p->cc->fd);
	if (rc)
		goto fail;
	rc = rf_verbs->create_cq(ctx, PEER_CQ_DEPTH, p, p->cc, &p->cq);
	if (rc)
		goto fail;
	rc = rf_verbs->req_notify_cq(p->cq, 0);
	if (rc)
		goto fail;
	qa.send_cq = p->cq;
	qa.recv_cq = p->cq;
	rc = rf_verbs->create_qp(p->id, p->pd, &qa);
	if (rc)
		goto fail;
	p->qp_created = 1;
	for (unsigned i = 0; i < PEER_RQ_DEPTH; i++) {
		rc = peer_post_recv(p, i);
		if (rc)
			goto fail;
	}
	rc = rf_rdma_epoll_add(p->l->epfd, p->cc->fd, (uint64_t)(uintptr_t)p);
	if (rc)
		goto fail;
	p->in_epoll = 1;
	return 0;
fail:
	RF_ERR(SUBSYS, "%s: cannot set up the queue pair: %s", p->name, strerror(-rc));
	return rc;
}

static void hub_connect_request(struct rdma_listener *l, struct rdma_cm_id *id,
                                const unsigned char *pdata, size_t plen)
{
	struct rdma_conn_param param = {
	    .responder_resources = 0,
	    .initiator_depth = 0,
	    .rnr_retry_count = RC_RNR_RETRY_INF,
	};
	unsigned char acc[RF_RDMA_ACC_LEN];
	struct rf_rdma_req req;
	struct rf_pending *victim;
	struct rdma_peer *p;
	char from[64];
	int rc;

	addr_str(rdma_get_peer_addr(id), from, sizeof(from));
	rc = rf_rdma_req_decode(pdata, plen, &req);
	if (rc) {
		unsigned reason =
		    rc == -EPROTONOSUPPORT ? RF_RDMA_REJ_BAD_VERSION : RF_RDMA_REJ_BAD_REQUEST;

		RF_WARN(SUBSYS, "%s: rejected a connection from %s: %s", l->name, from,
		        reason == RF_RDMA_REJ_BAD_VERSION
		            ? "unsupported protocol version"
		            : "not a repfabric connect request (bad length or magic)");
		RF_FAB_COUNT_L(&l->base, errors, 1);
		hub_reject(l, id, reason, rc);
		rf_verbs->destroy_id(id);
		return;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		RF_ERR(SUBSYS, "%s: out of memory for a connection from %s", l->name, from);
		RF_FAB_COUNT_L(&l->base, errors, 1);
		hub_reject(l, id, RF_RDMA_REJ_HUB_ERROR, ENOMEM);
		rf_verbs->destroy_id(id);
		return;
	}
	p->base.prov = &rf_fab_rdma_provider;
	p->l = l;
	p->id = id;
	p->token = req.token;
	p->state = PEER_CONNECTING;
	snprintf(p->name, sizeof(p->name), "%s token %#llx", from, (unsigned long long)req.token);

	rc = l->ops->attach(l->ctx, req.token, &p->mem);
	if (rc) {
		RF_WARN(SUBSYS, "%s: refused token %#llx from %s: %s", l->name,
		        (unsigned long long)req.token, from, strerror(-rc));
		RF_FAB_COUNT_L(&l->base, refused, 1);
		RF_FAB_COUNT_L(&l->base, errors, 1);
		hub_reject(l, id, RF_RDMA_REJ_REFUSED, rc);
		rf_verbs->destroy_id(id);
		free(p);
		return;
	}
	/* From here on the attach is paired with ATTACHED ... DETACHED. */
	RF_FAB_COUNT(&l->base, &p->base, attaches, 1);
	p->base.credit_head = p->mem.info.pos.head_pos;
	id->context = p;
	p->next = l->peers;
	l->peers = p;
	p->last_seq = p->mem.info.pos.durable_seq ? p->mem.info.pos.durable_seq - 1 : 0;
	if (!p->mem.data || p->mem.data_size == 0 || p->mem.data_size % 256) {
		RF_ERR(SUBSYS, "%s: attach gave an unusable ring (data %p, %llu bytes)", p->name,
		       p->mem.data, (unsigned long long)p->mem.data_size);
		hub_reject(l, id, RF_RDMA_REJ_HUB_ERROR, EINVAL);
		peer_die(p, -EINVAL, "unusable ring memory");
		return;
	}
	if (p->mem.info.data_size && p->mem.info.data_size != p->mem.data_size)
		RF_WARN(SUBSYS, "%s: ring info says %llu bytes, memory is %llu; using the latter",
		        p->name, (unsigned long long)p->mem.info.data_size,
		        (unsigned long long)p->mem.data_size);
	rc = peer_setup(p);
	if (rc) {
		hub_reject(l, id, RF_RDMA_REJ_HUB_ERROR, rc);
		peer_die(p, rc, "cannot set up RDMA resources");
		return;
	}
	rf_rdma_acc_encode(acc, p->mem.info.ring_id, p->mem.data_size,
	                   (uint64_t)(uintptr_t)p->mem.data, p->ring_mr->rkey, &p->mem.info.pos);
	param.private_data = acc;
	param.private_data_len = sizeof(acc);
	rf_rdma_set_ack_timeout(id, p->name);
	rc = rf_verbs->accept(id, &param);
	if (rc) {
		RF_ERR(SUBSYS, "%s: rdma_accept: %s", p->name, strerror(-rc));
		peer_die(p, rc, "accept failed");
		return;
	}
	p->accepted = 1;
	rf_rdma_set_min_rnr_timer(id->qp, p->name);
	/* Until ESTABLISHED it holds a QP and pinned memory: bounded in time and number. */
	victim = rf_admit_pending_add(&l->base.admit, &p->pend, rf_now_ms());
	if (victim)
		peer_die(container_of(victim, struct rdma_peer, pend), -ETIMEDOUT,
		         "dropped for a newer connection (too many not yet established)");
	RF_INFO(SUBSYS, "%s: accepted, ring %#llx (%llu bytes)", p->name,
	        (unsigned long long)p->mem.info.ring_id, (unsigned long long)p->mem.data_size);
}

static void hub_cm_events(struct rdma_listener *l)
{
	struct rdma_cm_event *ev;

	while (rf_verbs->get_cm_event(l->ch, &ev) == 0) {
		struct rdma_peer *p = ev->id != l->id ? ev->id->context : NULL;
		enum rdma_cm_event_type type = ev->event;
		int status = ev->status;

		if (type == RDMA_CM_EVENT_CONNECT_REQUEST) {
			unsigned char pdata[256];
			struct rdma_cm_id *id = ev->id;
			size_t plen = ev->param.conn.private_data_len;

			if (plen > sizeof(pdata))
				plen = sizeof(pdata);
			if (plen)
				memcpy(pdata, ev->param.conn.private_data, plen);
			rf_verbs->ack_cm_event(ev);
			hub_connect_request(l, id, pdata, plen);
			continue;
		}
		rf_verbs->ack_cm_event(ev);
		switch (type) {
		case RDMA_CM_EVENT_ESTABLISHED:
			if (p && p->state == PEER_CONNECTING) {
				rf_admit_pending_del(&l->base.admit, &p->pend);
				p->state = PEER_LIVE;
				hub_push(l, RF_FAB_HEV_ATTACHED, p, 0, 0);
			}
			break;
		case RDMA_CM_EVENT_DISCONNECTED:
			if (p) {
				p->accepted = 0;
				peer_die(p, 0, "the producer disconnected");
			}
			break;
		case RDMA_CM_EVENT_DEVICE_REMOVAL:
			if (p)
				peer_die(p, -ENODEV, "the RDMA device was removed");
			else
				RF_ERR(SUBSYS, "%s: the RDMA device under the listener was removed",
				       l->name);
			break;
		case RDMA_CM_EVENT_REJECTED:
		case RDMA_CM_EVENT_CONNECT_ERROR:
		case RDMA_CM_EVENT_UNREACHABLE:
			if (p) {
				p->accepted = 0;
				peer_die(p, status_errno(status, -ECONNABORTED),
				         rdma_event_str(type));
			}
			break;
		default:
			RF_DEBUG(SUBSYS, "%s: CM event %s ignored", l->name, rdma_event_str(type));
			break;
		}
	}
}

static void hub_progress(struct rdma_listener *l)
{
	struct epoll_event evs[16];
	int n = epoll_wait(l->epfd, evs, 16, 0);

	for (int i = 0; i < n; i++) {
		uint64_t tag = evs[i].data.u64;

		if (tag == TAG_CM) {
			hub_cm_events(l);
		} else if (tag != TAG_SIG) {
			struct rdma_peer *p = (struct rdma_peer *)(uintptr_t)tag;
			struct ibv_cq *cq;
			void *ctx;

			if (p->state == PEER_DEAD)
				continue;
			if (rf_verbs->get_cq_event(p->cc, &cq, &ctx) == 0) {
				int rc;

				rf_verbs->ack_cq_events(cq, 1);
				rc = rf_verbs->req_notify_cq(p->cq, 0);
				if (rc)
					peer_die(p, rc, "arming the CQ failed");
			}
		}
	}
	l->more = 0;
	for (struct rdma_peer *p = l->peers; p; p = p->next)
		if (p->state != PEER_DEAD && p->qp_created)
			peer_drain_cq(p);
}

/* Drop the connections accepted but not established in time. */
static void expire_peers(struct rdma_listener *l)
{
	int64_t now = rf_now_ms();
	struct rf_pending *pend;

	rf_admit_tick(&l->base.admit, now);
	while ((pend = rf_admit_expired(&l->base.admit, now)))
		peer_die(container_of(pend, struct rdma_peer, pend), -ETIMEDOUT,
		         "the connection was not established in time");
}

int rf_rdma_listener_poll(struct rf_fab_listener *base, struct rf_fab_hub_event *evs, int max,
                          int timeout_ms)
{
	struct rdma_listener *l = container_of(base, struct rdma_listener, base);
	int64_t deadline = deadline_of(timeout_ms);
	struct rdma_peer *p, *next;
	int n = 0;

	for (p = l->peers; p; p = next) {
		next = p->next;
		if (p->delivered)
			peer_free(p);
	}
	expire_peers(l);
	for (;;) {
		struct epoll_event e;
		int left;

		hub_progress(l);
		if (l->q.n)
			break;
		left = remaining_ms(deadline);
		if (left == 0)
			break;
		rf_rdma_sig_update(&l->sig, l->more);
		if (epoll_wait(l->epfd, &e, 1, left) < 0 && errno != EINTR)
			return -errno;
	}
	while (n < max && rf_rdma_evq_pop(&l->q, &evs[n])) {
		if (evs[n].type == RF_FAB_HEV_DETACHED)
			container_of(evs[n].peer, struct rdma_peer, base)->delivered = 1;
		n++;
	}
	rf_rdma_sig_update(&l->sig, l->q.n > 0 || l->more);
	return n;
}

int rf_rdma_listener_fd(const struct rf_fab_listener *base)
{
	const struct rdma_listener *l = container_of(base, const struct rdma_listener, base);

	return l->epfd;
}

int rf_rdma_publish(struct rf_fab_peer *base, const struct rf_fab_position *pos)
{
	struct rdma_peer *p = container_of(base, struct rdma_peer, base);

	if (p->state != PEER_LIVE)
		return -ENOTCONN;
	if (p->pub_inflight >= PEER_PUB_SLOTS) {
		/* Positions only grow: keep the newest until a slot frees. */
		p->pub_pending = 1;
		p->pub_pos = *pos;
		return 0;
	}
	return peer_send_pos(p, pos);
}

int rf_rdma_fence(struct rf_fab_peer *base)
{
	struct rdma_peer *p = container_of(base, struct rdma_peer, base);

	return peer_die(p, -ECANCELED, "fenced by the hub");
}

static void listener_destroy(struct rdma_listener *l)
{
	int rc;

	while (l->peers) {
		struct rdma_peer *p = l->peers;

		if (p->state != PEER_DEAD && p->qp_created) {
			struct ibv_qp_attr a = {.qp_state = IBV_QPS_ERR};

			rf_verbs->modify_qp(p->id->qp, &a, IBV_QP_STATE);
		}
		if (p->accepted)
			rf_verbs->disconnect(p->id);
		peer_free(p);
	}
	if (l->id && (rc = rf_verbs->destroy_id(l->id)))
		RF_WARN(SUBSYS, "%s: destroying the CM id: %s", l->name, strerror(-rc));
	if (l->ch)
		rf_verbs->destroy_event_channel(l->ch);
	if (l->epfd >= 0)
		close(l->epfd);
	if (l->sig.fd >= 0)
		close(l->sig.fd);
	free(l->q.buf);
	free(l);
}

int rf_rdma_listen(const char *addr, const struct rf_fab_hub_ops *ops, void *ctx,
                   struct rf_fab_listener **out)
{
	struct addrinfo *ai = NULL;
	struct rdma_listener *l;
	int rc;

	*out = NULL;
	rc = rf_rdma_resolve(addr, 1, &ai);
	if (rc)
		return rc;
	if (is_loopback(ai->ai_addr)) {
		RF_ERR(SUBSYS,
		       "rdma://%s: rdma_cm cannot connect over a loopback address; listen on "
		       "the IP of the RDMA device (rdma link show)",
		       addr);
		freeaddrinfo(ai);
		return -ENODEV;
	}
	l = calloc(1, sizeof(*l));
	if (!l) {
		freeaddrinfo(ai);
		return -ENOMEM;
	}
	l->ops = ops;
	l->ctx = ctx;
	l->epfd = -1;
	l->sig.fd = -1;
	l->q.esz = sizeof(struct rf_fab_hub_event);
	snprintf(l->name, sizeof(l->name), "rdma://%s", addr);
	rf_admit_init(&l->base.admit, "rdma data listener", -1, NULL, NULL);

	rc = rf_rdma_open_channel(&l->ch, l->name);
	if (rc)
		goto fail;
	rc = rf_verbs->create_id(l->ch, &l->id, NULL, RDMA_PS_TCP);
	if (rc) {
		RF_ERR(SUBSYS, "%s: cannot create a CM id: %s", l->name, strerror(-rc));
		goto fail;
	}
	rc = rf_verbs->bind_addr(l->id, ai->ai_addr);
	if (rc) {
		if (rc == -EADDRINUSE) {
			RF_ERR(SUBSYS, "%s: address already in use", l->name);
		} else if (rc == -ENODEV || rc == -EADDRNOTAVAIL) {
			RF_ERR(SUBSYS,
			       "%s: no RDMA device has this address (%s); bind rdma_rxe/siw or "
			       "use the IP of an RDMA NIC (rdma link show)",
			       l->name, strerror(-rc));
			rc = -ENODEV;
		} else {
			RF_ERR(SUBSYS, "%s: rdma_bind_addr: %s", l->name, strerror(-rc));
		}
		goto fail;
	}
	rc = rf_verbs->listen(l->id, LISTEN_BACKLOG);
	if (rc) {
		RF_ERR(SUBSYS, "%s: rdma_listen: %s", l->name, strerror(-rc));
		goto fail;
	}
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->sig.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (l->epfd < 0 || l->sig.fd < 0) {
		rc = -errno;
		goto fail;
	}
	if ((rc = rf_rdma_epoll_add(l->epfd, l->ch->fd, TAG_CM)) ||
	    (rc = rf_rdma_epoll_add(l->epfd, l->sig.fd, TAG_SIG)))
		goto fail;
	freeaddrinfo(ai);
	RF_INFO(SUBSYS, "%s: listening", l->name);
	*out = &l->base;
	return 0;
fail:
	freeaddrinfo(ai);
	listener_destroy(l);
	return rc;
}

void rf_rdma_listener_close(struct rf_fab_listener *base)
{
	struct rdma_listener *l = container_of(base, struct rdma_listener, base);

	RF_DEBUG(SUBSYS, "%s: closing", l->name);
	listener_destroy(l);
}
