/* SPDX-License-Identifier: MIT */
/*
 * The provider interface behind include/repfabric/fabric.h. A provider is a
 * static const ops table; its connection, listener and peer structs embed
 * the generic ones below as their first member and get back to themselves
 * with container_of. fabric.c validates arguments before dispatching, so
 * providers may assume: nseg in 1..RF_FAB_MAX_SEGS, every segment inside
 * the data area, evs/max sane.
 */
#ifndef REPFABRIC_FABRIC_PROVIDER_H
#define REPFABRIC_FABRIC_PROVIDER_H

#include <stddef.h>

#include "repfabric/fabric.h"

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

struct rf_fab_provider;

struct rf_fab_conn {
	const struct rf_fab_provider *prov;
	uint64_t data_size; /* from the attach, for segment checks */
	int dead;           /* set once a CLOSED event was returned */
	bool want_landed;   /* rf_fab_conn_want_landed */
};

struct rf_fab_listener {
	const struct rf_fab_provider *prov;
	struct rf_fab_stats stats; /* totals, see fabric.h */
	struct rf_admit admit;     /* accept path and unproven peers (admit.h) */
};

struct rf_fab_peer {
	const struct rf_fab_provider *prov;
	struct rf_fab_stats stats; /* this peer's share of the totals */
	uint64_t credit_head;      /* head_pos of the newest position sent */
};

/* Count @n in the listener's totals only (nothing is tied to a peer). */
#define RF_FAB_COUNT_L(l, field, n) ((l)->stats.field += (uint64_t)(n))

/* Count @n for peer @p and in its listener's totals. */
#define RF_FAB_COUNT(l, p, field, n)                                                               \
	do {                                                                                       \
		(l)->stats.field += (uint64_t)(n);                                                 \
		(p)->stats.field += (uint64_t)(n);                                                 \
	} while (0)

struct rf_fab_provider {
	const char *scheme; /* "rdma", "tcp", "shm" */
	/* @addr is the URL without "scheme://". */
	int (*connect)(const char *addr, uint64_t token, int timeout_ms, struct rf_fab_conn **out,
	               struct rf_fab_ring_info *info);
	int (*post)(struct rf_fab_conn *c, const struct rf_fab_seg *segs, unsigned nseg,
	            uint64_t last_seq, uint64_t cookie);
	int (*poll)(struct rf_fab_conn *c, struct rf_fab_event *evs, int max, int timeout_ms);
	int (*conn_fd)(const struct rf_fab_conn *c);
	void (*close)(struct rf_fab_conn *c);

	int (*listen)(const char *addr, const struct rf_fab_hub_ops *ops, void *ctx,
	              struct rf_fab_listener **out);
	int (*listener_poll)(struct rf_fab_listener *l, struct rf_fab_hub_event *evs, int max,
	                     int timeout_ms);
	int (*listener_fd)(const struct rf_fab_listener *l);
	int (*publish)(struct rf_fab_peer *p, const struct rf_fab_position *pos);
	int (*fence)(struct rf_fab_peer *p);
	void (*listener_close)(struct rf_fab_listener *l);
};

/* A position left for @p: count a credit and the ring bytes it released. */
void rf_fab_count_credit(struct rf_fab_listener *l, struct rf_fab_peer *p,
                         const struct rf_fab_position *pos);

extern const struct rf_fab_provider rf_fab_tcp_provider;
extern const struct rf_fab_provider rf_fab_shm_provider;
extern const struct rf_fab_provider rf_fab_rdma_provider;

/* Split "host:port" (IPv4, a name, or [IPv6]) into @host/@port. */
int rf_fab_split_hostport(const char *addr, char *host, size_t hostlen, char *port, size_t portlen);

#endif /* REPFABRIC_FABRIC_PROVIDER_H */
