/* SPDX-License-Identifier: MIT */
/*
 * The rdma:// provider's messages, encoded byte by byte in little-endian
 * (no packed structs). Layouts: docs/PROTOCOL.md ("Data transport: rdma://").
 *
 *   request  producer -> hub, rdma_connect private data     16 bytes
 *   accept   hub -> producer, rdma_accept private data      72 bytes
 *   reject   hub -> producer, rdma_reject private data      16 bytes
 *   position hub -> producer, a two-sided SEND              40 bytes
 *
 * rdma_cm may hand over longer private data than was sent (InfiniBand CM
 * pads it: 56 bytes for a request, 196 for an accept, 148 for a reject), so
 * decoders accept trailing bytes; the position message must be exact.
 */
#ifndef REPFABRIC_FABRIC_RDMA_WIRE_H
#define REPFABRIC_FABRIC_RDMA_WIRE_H

#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "repfabric/le.h"
#include <string.h>

#include "repfabric/fabric.h"

#define RF_RDMA_VERSION 1

/* Each magic reads as four ASCII bytes on the wire. */
#define RF_RDMA_MAGIC_REQ 0x51524652u /* "RFRQ" */
#define RF_RDMA_MAGIC_ACC 0x41524652u /* "RFRA" */
#define RF_RDMA_MAGIC_REJ 0x4a524652u /* "RFRJ" */
#define RF_RDMA_MAGIC_POS 0x50524652u /* "RFRP" */

#define RF_RDMA_REQ_LEN 16
#define RF_RDMA_ACC_LEN 72
#define RF_RDMA_REJ_LEN 16
#define RF_RDMA_POS_LEN 40

/* Reject reasons. */
enum {
	RF_RDMA_REJ_BAD_REQUEST = 1, /* short request, wrong magic, non-zero flags */
	RF_RDMA_REJ_BAD_VERSION = 2, /* the hub's version is in the reject */
	RF_RDMA_REJ_REFUSED = 3,     /* attach refused the token; err says why */
	RF_RDMA_REJ_HUB_ERROR = 4,   /* attach succeeded but the hub failed; err */
};

struct rf_rdma_req {
	uint16_t version;
	uint64_t token;
};

struct rf_rdma_acc {
	uint64_t ring_id;
	uint64_t data_size;
	uint64_t addr;
	uint32_t rkey;
	struct rf_fab_position pos;
};

struct rf_rdma_rej {
	uint16_t version;
	uint16_t reason;
	int err; /* positive errno */
};

/* request: magic u32 @0, version u16 @4, flags u16 @6 (0), token u64 @8 */
static inline void rf_rdma_req_encode(unsigned char *b, uint64_t token)
{
	rf_put_le32(b, RF_RDMA_MAGIC_REQ);
	rf_put_le16(b + 4, RF_RDMA_VERSION);
	rf_put_le16(b + 6, 0);
	rf_put_le64(b + 8, token);
}

/* 0, -EPROTO (not a request), -EPROTONOSUPPORT (other version). */
static inline int rf_rdma_req_decode(const void *data, size_t len, struct rf_rdma_req *r)
{
	const unsigned char *b = data;

	if (!b || len < RF_RDMA_REQ_LEN || rf_get_le32(b) != RF_RDMA_MAGIC_REQ)
		return -EPROTO;
	r->version = rf_get_le16(b + 4);
	if (r->version != RF_RDMA_VERSION)
		return -EPROTONOSUPPORT;
	if (rf_get_le16(b + 6) != 0)
		return -EPROTO;
	r->token = rf_get_le64(b + 8);
	return 0;
}

/*
 * accept: magic u32 @0, version u16 @4, reserved u16 @6, ring_id u64 @8,
 * data_size u64 @16, addr u64 @24, rkey u32 @32, reserved u32 @36,
 * durable_pos u64 @40, durable_seq u64 @48, head_pos u64 @56, head_seq u64 @64
 */
static inline void rf_rdma_acc_encode(unsigned char *b, uint64_t ring_id, uint64_t data_size,
                                      uint64_t addr, uint32_t rkey,
                                      const struct rf_fab_position *pos)
{
	memset(b, 0, RF_RDMA_ACC_LEN);
	rf_put_le32(b, RF_RDMA_MAGIC_ACC);
	rf_put_le16(b + 4, RF_RDMA_VERSION);
	rf_put_le64(b + 8, ring_id);
	rf_put_le64(b + 16, data_size);
	rf_put_le64(b + 24, addr);
	rf_put_le32(b + 32, rkey);
	rf_put_le64(b + 40, pos->durable_pos);
	rf_put_le64(b + 48, pos->durable_seq);
	rf_put_le64(b + 56, pos->head_pos);
	rf_put_le64(b + 64, pos->head_seq);
}

static inline int rf_rdma_acc_decode(const void *data, size_t len, struct rf_rdma_acc *a)
{
	const unsigned char *b = data;

	if (!b || len < RF_RDMA_ACC_LEN || rf_get_le32(b) != RF_RDMA_MAGIC_ACC ||
	    rf_get_le16(b + 4) != RF_RDMA_VERSION)
		return -EPROTO;
	a->ring_id = rf_get_le64(b + 8);
	a->data_size = rf_get_le64(b + 16);
	a->addr = rf_get_le64(b + 24);
	a->rkey = rf_get_le32(b + 32);
	a->pos.durable_pos = rf_get_le64(b + 40);
	a->pos.durable_seq = rf_get_le64(b + 48);
	a->pos.head_pos = rf_get_le64(b + 56);
	a->pos.head_seq = rf_get_le64(b + 64);
	return 0;
}

/* reject: magic u32 @0, version u16 @4, reason u16 @6, errno u32 @8, reserved u32 @12 */
static inline void rf_rdma_rej_encode(unsigned char *b, unsigned reason, int err)
{
	memset(b, 0, RF_RDMA_REJ_LEN);
	rf_put_le32(b, RF_RDMA_MAGIC_REJ);
	rf_put_le16(b + 4, RF_RDMA_VERSION);
	rf_put_le16(b + 6, (uint16_t)reason);
	rf_put_le32(b + 8, (uint32_t)err);
}

static inline int rf_rdma_rej_decode(const void *data, size_t len, struct rf_rdma_rej *r)
{
	const unsigned char *b = data;
	uint32_t err;

	if (!b || len < RF_RDMA_REJ_LEN || rf_get_le32(b) != RF_RDMA_MAGIC_REJ)
		return -EPROTO;
	r->version = rf_get_le16(b + 4);
	r->reason = rf_get_le16(b + 6);
	err = rf_get_le32(b + 8);
	r->err = err > 0 && err < 4096 ? (int)err : EACCES;
	return 0;
}

/* position: magic u32 @0, reserved u32 @4, durable_pos, durable_seq, head_pos, head_seq u64 @8.. */
static inline void rf_rdma_pos_encode(unsigned char *b, const struct rf_fab_position *pos)
{
	rf_put_le32(b, RF_RDMA_MAGIC_POS);
	rf_put_le32(b + 4, 0);
	rf_put_le64(b + 8, pos->durable_pos);
	rf_put_le64(b + 16, pos->durable_seq);
	rf_put_le64(b + 24, pos->head_pos);
	rf_put_le64(b + 32, pos->head_seq);
}

static inline int rf_rdma_pos_decode(const void *data, size_t len, struct rf_fab_position *pos)
{
	const unsigned char *b = data;

	if (len != RF_RDMA_POS_LEN || rf_get_le32(b) != RF_RDMA_MAGIC_POS)
		return -EPROTO;
	pos->durable_pos = rf_get_le64(b + 8);
	pos->durable_seq = rf_get_le64(b + 16);
	pos->head_pos = rf_get_le64(b + 24);
	pos->head_seq = rf_get_le64(b + 32);
	return 0;
}

#endif /* REPFABRIC_FABRIC_RDMA_WIRE_H */
