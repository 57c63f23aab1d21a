/* SPDX-License-Identifier: MIT */
/*
 * What the parts of rf-fabric-conformance share (conformance.c has the
 * overview): record content, the hub's state files, the hub mode, and the
 * producer the driver and the "produce" mode use.
 */
#ifndef REPFABRIC_TESTS_FABRIC_CONFORMANCE_H
#define REPFABRIC_TESTS_FABRIC_CONFORMANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "repfabric/fabric.h"
#include "repfabric/ring.h"

#define MAX_VOLUMES 4
#define TOKEN       0x5eed

/* conformance_common.c: record content and state files. */
/* A 64-bit mix (splitmix64's finaliser). */
uint64_t mix64(uint64_t x);
/* Payload length of record @index: mostly small, some tiny, some maximal. */
uint32_t rec_len(uint32_t vol, uint64_t index, uint32_t max_payload);
struct hub_state {
	uint64_t next_index[MAX_VOLUMES]; /* next index expected per volume */
	uint64_t applied;                 /* records applied (replays excluded) */
	uint64_t replays;                 /* records seen again after a crash */
	uint64_t errors;                  /* verification failures */
	uint64_t bytes;
};

void rec_fill(uint8_t *p, uint32_t vol, uint64_t index, uint32_t len);
/* Whether the @len bytes at @p are those of record @index of @vol. */
bool rec_check(const uint8_t *p, uint32_t vol, uint64_t index, uint32_t len);
int state_load(const char *path, struct hub_state *st);
int state_save(const char *path, const struct hub_state *st);
int fab_save(const char *state_path, const struct rf_fab_stats *st);
int fab_load(const char *state_path, struct rf_fab_stats *st);

/* conformance_hub.c: the "hub" mode. */
int hub_main(const char *url, const char *ring_path, const char *state_path, uint32_t max_payload,
             uint64_t ring_size);

/* conformance_producer.c */
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
	/* LANDED (rf_fab_conn_want_landed when want_landed) */
	bool want_landed;
	uint64_t last_posted; /* sequence of the newest post on this connection */
	bool posted_any;      /* on this connection */
	uint64_t landed_seq;  /* newest LANDED on this connection */
	uint64_t landed_events;
	const char *landed_bad; /* the first broken LANDED rule, or NULL */
};

int producer_events(struct producer *p, int timeout_ms);
int producer_post(struct producer *p, uint32_t vol, uint64_t index);
int producer_connect(struct producer *p);
int producer_put(struct producer *p, uint32_t vol, uint64_t index, bool resend);
int producer_quiesce(struct producer *p, int timeout_ms);
void producer_free(struct producer *p);
/* The "produce" mode. */
int produce_main(const char *url, const char *state_path, uint32_t max_payload);

#endif /* REPFABRIC_TESTS_FABRIC_CONFORMANCE_H */
