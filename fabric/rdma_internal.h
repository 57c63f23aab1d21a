/* SPDX-License-Identifier: MIT */
/*
 * The rdma:// provider's internals, shared by its files and not installed:
 * rdma.c (the ops table), rdma_common.c (helpers both sides use),
 * rdma_producer.c (the agent side), rdma_hub.c (the listener side), and the
 * TEST ONLY hooks of tests/fabric/rdma_test_hooks.c, which need the
 * producer's connection (struct rdma_conn) and its completion handling.
 */
#ifndef REPFABRIC_FABRIC_RDMA_INTERNAL_H
#define REPFABRIC_FABRIC_RDMA_INTERNAL_H

#include <netdb.h>
#include <stdint.h>

#include "provider.h"
#include "repfabric/sockio.h"
#include "verbs_wrap.h"

#define SUBSYS "rdma"

/* Producer queue depths. */
#define CONN_MAX_POSTS 64                                 /* posts in flight */
#define CONN_SQ_DEPTH  (CONN_MAX_POSTS * RF_FAB_MAX_SEGS) /* one WR per segment */
#define CONN_RQ_DEPTH  16                                 /* position receives */
#define CONN_CQ_DEPTH  (CONN_SQ_DEPTH + CONN_RQ_DEPTH + 8)

#define MSG_SLOT     64  /* bytes per send/receive buffer slot */
#define CQ_BATCH     32  /* ibv_poll_cq batch */
#define CQ_DRAIN_MAX 256 /* completions per CQ per poll call */
/* RC transport retries and local ACK timeout: a WRITE or SEND that gets no
 * ACK within (RC_RETRY_COUNT + 1) x 4.096 us x 2^RC_ACK_TIMEOUT (5 x 537 ms,
 * about 2.7 s) completes with IBV_WC_RETRY_EXC_ERR, so a cut link or a dead
 * peer surfaces in seconds. 7 would mean "retry forever" on soft-RoCE (rxe). */
#define RC_RETRY_COUNT   4
#define RC_ACK_TIMEOUT   17
#define RC_RNR_RETRY_INF 7

/* wr_id: kind in the top two bits, a post counter or buffer index below. */
#define WR_SEND    (1ull << 62)
#define WR_RECV    (2ull << 62)
#define WR_KIND(x) ((x) & (3ull << 62))
#define WR_VAL(x)  ((x) & ~(3ull << 62))

/* epoll tags (peers are tagged with their pointer). */
#define TAG_CM  0u
#define TAG_SIG 1u
#define TAG_CQ  2u

/* -1: no deadline. */
static inline int64_t deadline_of(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : rf_now_ms() + timeout_ms;
}

/* Milliseconds left (-1: forever, 0: expired). */
static inline int remaining_ms(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return -1;
	left = deadline - rf_now_ms();
	if (left <= 0)
		return 0;
	return left > INT32_MAX ? INT32_MAX : (int)left;
}

/* A negative event status when it is a plausible errno, else @dflt. */
static inline int status_errno(int status, int dflt)
{
	return (status < 0 && status > -4096) ? status : dflt;
}

/* The eventfd that keeps the caller's epoll fd readable while work is queued. */
struct sigfd {
	int fd;
	int set;
};

/* A growable FIFO of fixed-size events. */
struct evq {
	unsigned char *buf;
	size_t esz, cap, head, n;
};

/* ------------------------------------------------------ rdma_common.c */

int rf_rdma_set_nonblock(int fd);
int rf_rdma_epoll_add(int epfd, int fd, uint64_t tag);
/* Make the eventfd readable (@want) or drain it. */
void rf_rdma_sig_update(struct sigfd *s, int want);
/* 0, or -ENOMEM. */
int rf_rdma_evq_push(struct evq *q, const void *ev);
/* 1 with the oldest event in *@ev, or 0 when the queue is empty. */
int rf_rdma_evq_pop(struct evq *q, void *ev);
/* getaddrinfo of "IP:PORT" (@passive for a listener); logs and returns -EINVAL. */
int rf_rdma_resolve(const char *addr, int passive, struct addrinfo **out);
/* A non-blocking rdma_cm event channel, refused in a fork()ed child. */
int rf_rdma_open_channel(struct rdma_event_channel **ch, const char *what);
/* Log a failed memory registration with its likely cause. */
void rf_rdma_explain_reg_failure(int rc, uint64_t len, const char *what);
/* Register ring, staging or message memory, explaining the usual failures. */
int rf_rdma_reg_mr_explained(struct ibv_pd *pd, void *addr, uint64_t len, int access,
                             struct ibv_mr **mr, const char *what);
/* The errno a failed completion stands for. */
int rf_rdma_wc_errno(enum ibv_wc_status st);
/* RTS -> RTS: shorten the RNR NAK wait a receiver asks of the sender. */
void rf_rdma_set_min_rnr_timer(struct ibv_qp *qp, const char *who);
/* Before connect/accept: the QP's local ACK timeout (RC_ACK_TIMEOUT). */
void rf_rdma_set_ack_timeout(struct rdma_cm_id *id, const char *who);

/* ---------------------------------------------------- rdma_producer.c */

struct rdma_post_slot {
	uint64_t cookie;
	uint64_t last_seq;                   /* the post's last record */
	uint64_t stage_end;                  /* staging head once this post was placed */
	struct ibv_mr *mrs[RF_FAB_MAX_SEGS]; /* slow path: the caller's buffers */
	unsigned nmr;
};

struct rdma_conn {
	struct rf_fab_conn base;
	char name[280]; /* "rdma://addr" for log lines */

	struct rdma_event_channel *ch;
	struct rdma_cm_id *id;
	struct ibv_pd *pd;
	struct ibv_comp_channel *cc;
	struct ibv_cq *cq;
	int qp_created;
	int connected;

	void *recv_buf; /* CONN_RQ_DEPTH x MSG_SLOT */
	struct ibv_mr *recv_mr;

	unsigned char *stage; /* staging ring */
	uint64_t stage_size, stage_head, stage_tail;
	struct ibv_mr *stage_mr;

	uint64_t remote_addr;
	uint32_t rkey;
	uint64_t data_size;

	struct rdma_post_slot slots[CONN_MAX_POSTS];
	uint64_t post_next; /* counter of the next post */
	uint64_t post_done; /* counter of the oldest unfinished post */

	int epfd;
	struct sigfd sig;
	struct evq q;
	int cq_more; /* the drain bound left completions behind */
	int broken;  /* a CLOSED event was queued */
};

/* Queue RF_FAB_EV_CLOSED once, logging why. */
void rf_rdma_conn_fail(struct rdma_conn *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* One completion of the connection's CQ. */
void rf_rdma_conn_handle_wc(struct rdma_conn *c, const struct ibv_wc *wc);

int rf_rdma_connect(const char *addr, uint64_t token, int timeout_ms, struct rf_fab_conn **out,
                    struct rf_fab_ring_info *info);
int rf_rdma_post(struct rf_fab_conn *base, const struct rf_fab_seg *segs, unsigned nseg,
                 uint64_t last_seq, uint64_t cookie);
int rf_rdma_poll(struct rf_fab_conn *base, struct rf_fab_event *evs, int max, int timeout_ms);
int rf_rdma_conn_fd(const struct rf_fab_conn *base);
void rf_rdma_close(struct rf_fab_conn *base);

/* --------------------------------------------------------- rdma_hub.c */

int rf_rdma_listen(const char *addr, const struct rf_fab_hub_ops *ops, void *ctx,
                   struct rf_fab_listener **out);
int rf_rdma_listener_poll(struct rf_fab_listener *base, struct rf_fab_hub_event *evs, int max,
                          int timeout_ms);
int rf_rdma_listener_fd(const struct rf_fab_listener *base);
int rf_rdma_publish(struct rf_fab_peer *base, const struct rf_fab_position *pos);
int rf_rdma_fence(struct rf_fab_peer *base);
void rf_rdma_listener_close(struct rf_fab_listener *base);

#endif /* REPFABRIC_FABRIC_RDMA_INTERNAL_H */
