/* SPDX-License-Identifier: MIT */
/*
 * A thin table over the librdmacm / libibverbs calls the rdma provider makes.
 *
 * Two reasons: every entry returns 0 (or a count) or -errno, so the mixed
 * conventions of the verbs libraries (a positive errno, -1 + errno, NULL +
 * errno, a negative count) are converted in one place; and the provider's
 * rdma_*.c files call through the pointer rf_verbs, so a unit test can point
 * it at stubs (the data-path calls ibv_post_send/ibv_post_recv/ibv_poll_cq
 * are inline in verbs.h and could not be interposed at link time otherwise).
 *
 * Objects are returned through out-parameters; the destroy entries return
 * -errno too, but the provider only logs those.
 */
#ifndef REPFABRIC_FABRIC_VERBS_WRAP_H
#define REPFABRIC_FABRIC_VERBS_WRAP_H

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

struct rf_verbs_ops {
	/* librdmacm: connection management */
	int (*create_event_channel)(struct rdma_event_channel **out);
	void (*destroy_event_channel)(struct rdma_event_channel *ch);
	int (*create_id)(struct rdma_event_channel *ch, struct rdma_cm_id **out, void *ctx,
	                 enum rdma_port_space ps);
	int (*destroy_id)(struct rdma_cm_id *id);
	int (*bind_addr)(struct rdma_cm_id *id, struct sockaddr *addr);
	int (*listen)(struct rdma_cm_id *id, int backlog);
	int (*resolve_addr)(struct rdma_cm_id *id, struct sockaddr *dst, int timeout_ms);
	int (*resolve_route)(struct rdma_cm_id *id, int timeout_ms);
	int (*connect)(struct rdma_cm_id *id, struct rdma_conn_param *param);
	int (*accept)(struct rdma_cm_id *id, struct rdma_conn_param *param);
	int (*reject)(struct rdma_cm_id *id, const void *data, uint8_t len);
	int (*disconnect)(struct rdma_cm_id *id);
	int (*set_option)(struct rdma_cm_id *id, int level, int optname, void *optval,
	                  size_t optlen);
	/* -EAGAIN when the channel is non-blocking and empty */
	int (*get_cm_event)(struct rdma_event_channel *ch, struct rdma_cm_event **out);
	int (*ack_cm_event)(struct rdma_cm_event *ev);
	int (*create_qp)(struct rdma_cm_id *id, struct ibv_pd *pd, struct ibv_qp_init_attr *attr);
	void (*destroy_qp)(struct rdma_cm_id *id);

	/* libibverbs: resources */
	int (*alloc_pd)(struct ibv_context *ctx, struct ibv_pd **out);
	int (*dealloc_pd)(struct ibv_pd *pd);
	int (*reg_mr)(struct ibv_pd *pd, void *addr, size_t len, int access, struct ibv_mr **out);
	int (*dereg_mr)(struct ibv_mr *mr);
	int (*create_comp_channel)(struct ibv_context *ctx, struct ibv_comp_channel **out);
	int (*destroy_comp_channel)(struct ibv_comp_channel *ch);
	int (*create_cq)(struct ibv_context *ctx, int cqe, void *cq_ctx,
	                 struct ibv_comp_channel *ch, struct ibv_cq **out);
	int (*destroy_cq)(struct ibv_cq *cq);
	int (*modify_qp)(struct ibv_qp *qp, struct ibv_qp_attr *attr, int mask);

	/* libibverbs: data path and completions */
	int (*req_notify_cq)(struct ibv_cq *cq, int solicited_only);
	/* -EAGAIN when the channel is non-blocking and empty */
	int (*get_cq_event)(struct ibv_comp_channel *ch, struct ibv_cq **cq, void **cq_ctx);
	void (*ack_cq_events)(struct ibv_cq *cq, unsigned n);
	/* number of completions (0..n) or -errno */
	int (*poll_cq)(struct ibv_cq *cq, int n, struct ibv_wc *wc);
	int (*post_send)(struct ibv_qp *qp, struct ibv_send_wr *wr, struct ibv_send_wr **bad);
	int (*post_recv)(struct ibv_qp *qp, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad);
};

/* The real libraries. */
extern const struct rf_verbs_ops rf_verbs_real;

/* What the rdma provider calls; &rf_verbs_real unless a test swaps it. */
extern const struct rf_verbs_ops *rf_verbs;

#endif /* REPFABRIC_FABRIC_VERBS_WRAP_H */
