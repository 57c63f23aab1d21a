/* SPDX-License-Identifier: MIT */
/*
 * librfpmem internals: the on-media layout of the ring (see
 * docs/PROTOCOL.md) and little-endian field accessors. Not installed.
 */
#ifndef RFPMEM_RING_INTERNAL_H
#define RFPMEM_RING_INTERNAL_H

#include <endian.h>
#include <stdint.h>

#include "repfabric/le.h"
#include <string.h>

#include "repfabric/ring.h"

#define RING_LOG "ring"

/* Ring header, static part: bytes 0..63, CRC at 60 over bytes 0..59. */
#define RING_MAGIC      "RFRING\0\1"
#define RING_MAGIC_LEN  8
#define RING_VERSION    1u
#define RH_MAGIC        0
#define RH_VERSION      8
#define RH_HEADER_SIZE  12
#define RH_DATA_SIZE    16
#define RH_RECORD_ALIGN 24
#define RH_FLAGS        28
#define RH_RING_ID      32
#define RH_CREATE_NS    40
#define RH_RESERVED0    48 /* u64, zero */
#define RH_RESERVED1    56 /* u32, zero */
#define RH_CRC          60
#define RH_STATIC_SIZE  64

/* Head slots: two 32-byte slots in separate cache lines. */
#define RH_SLOT0       64
#define RH_SLOT1       128
#define RH_SLOT_STRIDE 64
#define RS_HEAD_POS    0
#define RS_HEAD_SEQ    8
#define RS_COUNT       16
#define RS_RESERVED    24 /* u32, zero */
#define RS_CRC         28 /* over slot bytes 0..27 */
#define RS_SIZE        32

/* Durable mark slots (hub-only, past RF_RING_HEADER_USED): the same 32-byte
 * format as a head slot, holding (durable_pos, durable_seq). */
#define RH_DSLOT0 192
#define RH_DSLOT1 256

/* Record header (64 bytes). */
#define REC_MAGIC      0x31524652u /* "RFR1" */
#define RR_MAGIC       0
#define RR_TYPE        4
#define RR_FLAGS       6
#define RR_PAYLOAD_LEN 8
#define RR_TOTAL_SIZE  12
#define RR_SEQ         16
#define RR_RING_ID     24
#define RR_VOLUME      32
#define RR_LENGTH      36
#define RR_OFFSET      40
#define RR_TIMESTAMP   48
#define RR_RESERVED    56 /* u32, zero */
#define RR_CRC         60

/* Record trailer (16 bytes at the record's end). */
#define TRL_MAGIC   0x52544652u /* "RFTR" */
#define RT_SEQ      0
#define RT_MAGIC    8
#define RT_RESERVED 12 /* u32, zero */

/* Ring geometry shared by the producer, the consumer and the scanner. */
struct ring_geom {
	uint64_t ring_id;
	uint64_t data_size;
	uint32_t max_payload;
	uint32_t max_record;
};

void ring_geom_init(struct ring_geom *g, uint64_t ring_id, uint64_t data_size);

/* CRC of a record: its header with the CRC field as zero, then the payload. */
uint32_t ring_record_crc(const unsigned char *hdr, const void *payload, uint32_t payload_len);

/* Fill a record header (CRC included) and its trailer. */
void ring_encode_header(unsigned char *hdr, const struct ring_geom *g, uint16_t type,
                        uint16_t flags, uint32_t payload_len, uint32_t total_size, uint64_t seq,
                        uint32_t volume, uint32_t length, uint64_t offset, uint64_t ts,
                        const void *payload);
void ring_encode_trailer(unsigned char *trl, uint64_t seq);

/*
 * Validate the record expected at @pos with sequence @seq in the data area
 * @data. On RF_RING_ST_OK fills @rec (pos, seq, fields, payload, total_size,
 * next_pos/next_seq; not pad_bytes/start_pos). Otherwise writes a reason to
 * @why when it is not NULL.
 */
enum rf_ring_status ring_check_record(const struct ring_geom *g, const unsigned char *data,
                                      uint64_t pos, uint64_t seq, struct rf_ring_record *rec,
                                      struct rf_ring_verdict *why);

/*
 * rf_ring_header_parse() that also returns the chosen slot's update count
 * and which slot was invalid (-1 when both were valid); on success with an
 * invalid slot, @reason says what was wrong with it, else it is empty.
 */
int ring_header_parse(const void *buf, size_t len, struct rf_ring_info *out, uint64_t *count,
                      int *bad_slot, char *reason, size_t reason_len);

/*
 * The newest valid durable mark slot of header @h: fills @pos, @seq and
 * @count and returns 0, or returns -ENOENT when neither slot is valid (a
 * ring that never had one: durable is the head).
 */
int ring_durable_parse(const unsigned char *h, uint64_t *pos, uint64_t *seq, uint64_t *count);

/* Encode a head slot (CRC included) at @s. */
void ring_encode_slot(unsigned char *s, uint64_t head_pos, uint64_t head_seq, uint64_t count);

#endif /* RFPMEM_RING_INTERNAL_H */
