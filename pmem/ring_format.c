/* SPDX-License-Identifier: MIT */
/*
 * The ring's on-media format: record encoding and validation, header
 * parsing. Pure functions over bytes; no mapping, no I/O.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "repfabric/crc32c.h"
#include "repfabric/ring.h"
#include "ring_internal.h"

uint64_t rf_ring_record_size(uint64_t payload_len)
{
	uint64_t raw = RF_RING_REC_HDR_SIZE + payload_len + RF_RING_REC_TRL_SIZE;

	return (raw + RF_RING_ALIGN - 1) / RF_RING_ALIGN * RF_RING_ALIGN;
}

uint32_t rf_ring_max_payload(uint64_t data_size)
{
	uint64_t quarter = data_size / 4;

	return quarter < RF_RING_MAX_PAYLOAD ? (uint32_t)quarter : RF_RING_MAX_PAYLOAD;
}

int rf_ring_check_data_size(uint64_t data_size)
{
	if (data_size % RF_RING_ALIGN != 0 || data_size < RF_RING_MIN_DATA_SIZE ||
	    data_size > RF_RING_MAX_DATA_SIZE)
		return -EINVAL;
	return 0;
}

const char *rf_ring_status_name(enum rf_ring_status st)
{
	switch (st) {
	case RF_RING_ST_OK:
		return "ok";
	case RF_RING_ST_END:
		return "end";
	case RF_RING_ST_STALE:
		return "stale";
	case RF_RING_ST_TORN:
		return "torn";
	case RF_RING_ST_BAD_CRC:
		return "bad-crc";
	case RF_RING_ST_BAD_SEQ:
		return "bad-seq";
	case RF_RING_ST_BAD_FIELD:
		return "bad-field";
	case RF_RING_ST_FULL:
		return "full";
	}
	return "?";
}

const char *rf_ring_type_name(uint16_t type)
{
	switch (type) {
	case RF_RING_REC_DATA:
		return "data";
	case RF_RING_REC_PAD:
		return "pad";
	case RF_RING_REC_ZERO:
		return "zero";
	case RF_RING_REC_TRIM:
		return "trim";
	}
	return "?";
}

void ring_geom_init(struct ring_geom *g, uint64_t ring_id, uint64_t data_size)
{
	g->ring_id = ring_id;
	g->data_size = data_size;
	g->max_payload = rf_ring_max_payload(data_size);
	g->max_record = (uint32_t)rf_ring_record_size(g->max_payload);
}

uint32_t ring_record_crc(const unsigned char *hdr, const void *payload, uint32_t payload_len)
{
	unsigned char tmp[RF_RING_REC_HDR_SIZE];
	uint32_t crc;

	memcpy(tmp, hdr, sizeof(tmp));
	rf_put_le32(tmp + RR_CRC, 0);
	crc = rf_crc32c(0, tmp, sizeof(tmp));
	if (payload_len)
		crc = rf_crc32c(crc, payload, payload_len);
	return crc;
}

void ring_encode_header(unsigned char *hdr, const struct ring_geom *g, uint16_t type,
                        uint16_t flags, uint32_t payload_len, uint32_t total_size, uint64_t seq,
                        uint32_t volume, uint32_t length, uint64_t offset, uint64_t ts,
                        const void *payload)
{
	memset(hdr, 0, RF_RING_REC_HDR_SIZE);
	rf_put_le32(hdr + RR_MAGIC, REC_MAGIC);
	rf_put_le16(hdr + RR_TYPE, type);
	rf_put_le16(hdr + RR_FLAGS, flags);
	rf_put_le32(hdr + RR_PAYLOAD_LEN, payload_len);
	rf_put_le32(hdr + RR_TOTAL_SIZE, total_size);
	rf_put_le64(hdr + RR_SEQ, seq);
	rf_put_le64(hdr + RR_RING_ID, g->ring_id);
	rf_put_le32(hdr + RR_VOLUME, volume);
	rf_put_le32(hdr + RR_LENGTH, length);
	rf_put_le64(hdr + RR_OFFSET, offset);
	rf_put_le64(hdr + RR_TIMESTAMP, ts);
	rf_put_le32(hdr + RR_CRC, ring_record_crc(hdr, payload, payload_len));
}

void ring_encode_trailer(unsigned char *trl, uint64_t seq)
{
	rf_put_le64(trl + RT_SEQ, seq);
	rf_put_le32(trl + RT_MAGIC, TRL_MAGIC);
	rf_put_le32(trl + RT_RESERVED, 0);
}

#define REFUSE(st, ...)                                                                            \
	do {                                                                                       \
		if (why) {                                                                         \
			why->status = (st);                                                        \
			snprintf(why->reason, sizeof(why->reason), __VA_ARGS__);                   \
		}                                                                                  \
		return (st);                                                                       \
	} while (0)

/* Field checks that depend on the type; returns NULL or the failing field. */
static const char *check_type_fields(const struct ring_geom *g, uint16_t type, uint16_t flags,
                                     uint32_t payload_len, uint32_t length, uint32_t volume,
                                     uint64_t offset, uint32_t total_size, uint64_t data_off)
{
	switch (type) {
	case RF_RING_REC_DATA:
		if (payload_len > g->max_payload)
			return "payload_len above the ring's maximum";
		if (length != payload_len)
			return "length differs from payload_len";
		if (total_size != rf_ring_record_size(payload_len))
			return "total_size does not match payload_len";
		return NULL;
	case RF_RING_REC_ZERO:
	case RF_RING_REC_TRIM:
		if (payload_len != 0)
			return "payload_len not zero for a payload-less record";
		if (total_size != rf_ring_record_size(0))
			return "total_size does not match payload_len";
		return NULL;
	case RF_RING_REC_PAD:
		if (payload_len != 0 || length != 0 || volume != 0 || offset != 0 || flags != 0)
			return "PAD with payload_len/length/volume/offset/flags not zero";
		if (total_size % RF_RING_ALIGN != 0 || total_size < RF_RING_ALIGN ||
		    total_size > g->max_record)
			return "PAD total_size out of range";
		if (data_off + total_size != g->data_size)
			return "PAD does not end at the end of the data area";
		return NULL;
	default:
		return "type unknown";
	}
}

enum rf_ring_status ring_check_record(const struct ring_geom *g, const unsigned char *data,
                                      uint64_t pos, uint64_t seq, struct rf_ring_record *rec,
                                      struct rf_ring_verdict *why)
{
	uint64_t off = pos % g->data_size;
	unsigned char hdr[RF_RING_REC_HDR_SIZE], trl[RF_RING_REC_TRL_SIZE];
	uint32_t magic, payload_len, total_size, volume, length, crc, want_crc;
	uint64_t rseq, ring_id, voff, tseq;
	uint16_t type, flags;
	const char *bad;

	/* Work on private copies: the producer may be writing concurrently. */
	memcpy(hdr, data + off, sizeof(hdr));
	magic = rf_get_le32(hdr + RR_MAGIC);
	if (magic != REC_MAGIC)
		REFUSE(RF_RING_ST_END, "no record magic at pos %" PRIu64 " (offset %" PRIu64 ")",
		       pos, off);
	ring_id = rf_get_le64(hdr + RR_RING_ID);
	if (ring_id != g->ring_id)
		REFUSE(RF_RING_ST_STALE,
		       "record at pos %" PRIu64 " belongs to ring id %016" PRIx64
		       ", not %016" PRIx64,
		       pos, ring_id, g->ring_id);
	rseq = rf_get_le64(hdr + RR_SEQ);
	if (rseq < seq)
		REFUSE(RF_RING_ST_STALE,
		       "stale sequence at pos %" PRIu64 ": seq %" PRIu64 " < expected %" PRIu64,
		       pos, rseq, seq);
	if (rseq > seq)
		REFUSE(RF_RING_ST_BAD_SEQ,
		       "sequence ahead at pos %" PRIu64 ": seq %" PRIu64 " > expected %" PRIu64,
		       pos, rseq, seq);

	type = rf_get_le16(hdr + RR_TYPE);
	flags = rf_get_le16(hdr + RR_FLAGS);
	payload_len = rf_get_le32(hdr + RR_PAYLOAD_LEN);
	total_size = rf_get_le32(hdr + RR_TOTAL_SIZE);
	volume = rf_get_le32(hdr + RR_VOLUME);
	length = rf_get_le32(hdr + RR_LENGTH);
	voff = rf_get_le64(hdr + RR_OFFSET);
	if (rf_get_le32(hdr + RR_RESERVED) != 0)
		REFUSE(RF_RING_ST_BAD_FIELD, "record seq %" PRIu64 ": reserved field not zero",
		       seq);
	if (total_size > g->data_size - off)
		REFUSE(RF_RING_ST_BAD_FIELD,
		       "record seq %" PRIu64 ": total_size %" PRIu32 " at offset %" PRIu64
		       " passes the end of the data area (%" PRIu64 ")",
		       seq, total_size, off, g->data_size);
	bad = check_type_fields(g, type, flags, payload_len, length, volume, voff, total_size, off);
	if (bad)
		REFUSE(RF_RING_ST_BAD_FIELD,
		       "record seq %" PRIu64 " (type %" PRIu16 ", payload_len %" PRIu32
		       ", total_size %" PRIu32 "): %s",
		       seq, type, payload_len, total_size, bad);

	memcpy(trl, data + off + total_size - RF_RING_REC_TRL_SIZE, sizeof(trl));
	tseq = rf_get_le64(trl + RT_SEQ);
	if (tseq != seq || rf_get_le32(trl + RT_MAGIC) != TRL_MAGIC ||
	    rf_get_le32(trl + RT_RESERVED) != 0)
		REFUSE(RF_RING_ST_TORN,
		       "torn record seq %" PRIu64 " at pos %" PRIu64 ": trailer (seq %" PRIu64
		       ", magic %08" PRIx32 ") does not match",
		       seq, pos, tseq, rf_get_le32(trl + RT_MAGIC));

	crc = rf_get_le32(hdr + RR_CRC);
	want_crc = ring_record_crc(hdr, data + off + RF_RING_REC_HDR_SIZE, payload_len);
	if (crc != want_crc)
		REFUSE(RF_RING_ST_BAD_CRC,
		       "record seq %" PRIu64 " at pos %" PRIu64 ": crc %08" PRIx32
		       " but the content gives %08" PRIx32,
		       seq, pos, crc, want_crc);

	if (rec) {
		memset(rec, 0, sizeof(*rec));
		rec->type = type;
		rec->flags = flags;
		rec->volume_id = volume;
		rec->offset = voff;
		rec->length = length;
		rec->payload_len = payload_len;
		rec->payload = payload_len ? data + off + RF_RING_REC_HDR_SIZE : NULL;
		rec->timestamp_ns = rf_get_le64(hdr + RR_TIMESTAMP);
		rec->seq = seq;
		rec->pos = pos;
		rec->total_size = total_size;
		rec->start_pos = pos;
		rec->next_pos = pos + total_size;
		rec->next_seq = seq + 1;
	}
	if (why) {
		why->status = RF_RING_ST_OK;
		why->reason[0] = '\0';
	}
	return RF_RING_ST_OK;
}

#undef REFUSE

static void set_reason(char *reason, size_t reason_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_reason(char *reason, size_t reason_len, const char *fmt, ...)
{
	va_list ap;

	if (!reason || !reason_len)
		return;
	va_start(ap, fmt);
	vsnprintf(reason, reason_len, fmt, ap);
	va_end(ap);
}

/* Validate one head slot; returns NULL or what is wrong with it. */
static const char *check_slot(const unsigned char *s, char *buf, size_t len)
{
	uint32_t crc = rf_get_le32(s + RS_CRC), want = rf_crc32c(0, s, RS_CRC);

	if (crc != want) {
		snprintf(buf, len, "crc %08" PRIx32 " but the slot gives %08" PRIx32, crc, want);
		return buf;
	}
	if (rf_get_le32(s + RS_RESERVED) != 0)
		return "reserved field not zero";
	if (rf_get_le64(s + RS_HEAD_POS) % RF_RING_ALIGN != 0) {
		snprintf(buf, len, "head_pos %" PRIu64 " not a multiple of %u",
		         rf_get_le64(s + RS_HEAD_POS), RF_RING_ALIGN);
		return buf;
	}
	if (rf_get_le64(s + RS_HEAD_SEQ) == 0)
		return "head_seq is zero";
	return NULL;
}

int ring_header_parse(const void *buf, size_t len, struct rf_ring_info *out, uint64_t *count,
                      int *bad_slot, char *reason, size_t reason_len)
{
	const unsigned char *h = buf;
	char why0[96], why1[96];
	const char *bad[2];
	uint32_t version, crc, want;
	uint64_t data_size;
	int best = -1;

	if (len < RF_RING_HEADER_USED) {
		set_reason(reason, reason_len, "header: %zu bytes, need %u", len,
		           RF_RING_HEADER_USED);
		return -EINVAL;
	}
	if (memcmp(h + RH_MAGIC, RING_MAGIC, RING_MAGIC_LEN) != 0) {
		set_reason(reason, reason_len, "magic: not a repfabric ring");
		return -EBADMSG;
	}
	version = rf_get_le32(h + RH_VERSION);
	if (version != RING_VERSION) {
		set_reason(reason, reason_len,
		           "version: %" PRIu32 " is not supported (expected %u)", version,
		           RING_VERSION);
		return -EPROTONOSUPPORT;
	}
	crc = rf_get_le32(h + RH_CRC);
	want = rf_crc32c(0, h, RH_CRC);
	if (crc != want) {
		set_reason(reason, reason_len,
		           "header_crc: stored %08" PRIx32 " but the header gives %08" PRIx32, crc,
		           want);
		return -EBADMSG;
	}
	if (rf_get_le32(h + RH_HEADER_SIZE) != RF_RING_HEADER_SIZE) {
		set_reason(reason, reason_len, "header_size: %" PRIu32 " (expected %u)",
		           rf_get_le32(h + RH_HEADER_SIZE), RF_RING_HEADER_SIZE);
		return -EBADMSG;
	}
	if (rf_get_le32(h + RH_RECORD_ALIGN) != RF_RING_ALIGN) {
		set_reason(reason, reason_len, "record_align: %" PRIu32 " (expected %u)",
		           rf_get_le32(h + RH_RECORD_ALIGN), RF_RING_ALIGN);
		return -EBADMSG;
	}
	if (rf_get_le32(h + RH_FLAGS) != 0) {
		set_reason(reason, reason_len, "flags: unknown bits %08" PRIx32,
		           rf_get_le32(h + RH_FLAGS));
		return -EBADMSG;
	}
	if (rf_get_le64(h + RH_RESERVED0) != 0 || rf_get_le32(h + RH_RESERVED1) != 0) {
		set_reason(reason, reason_len, "reserved: header bytes 48..59 not zero");
		return -EBADMSG;
	}
	data_size = rf_get_le64(h + RH_DATA_SIZE);
	if (rf_ring_check_data_size(data_size) != 0) {
		set_reason(reason, reason_len,
		           "data_size: %" PRIu64 " (must be a multiple of %u in [%u, %llu])",
		           data_size, RF_RING_ALIGN, RF_RING_MIN_DATA_SIZE,
		           (unsigned long long)RF_RING_MAX_DATA_SIZE);
		return -EBADMSG;
	}
	if (rf_get_le64(h + RH_RING_ID) == 0) {
		set_reason(reason, reason_len, "ring_id: zero");
		return -EBADMSG;
	}

	bad[0] = check_slot(h + RH_SLOT0, why0, sizeof(why0));
	bad[1] = check_slot(h + RH_SLOT1, why1, sizeof(why1));
	for (int i = 0; i < 2; i++) {
		if (bad[i])
			continue;
		if (best < 0 || rf_get_le64(h + RH_SLOT0 + i * RH_SLOT_STRIDE + RS_COUNT) >
		                    rf_get_le64(h + RH_SLOT0 + best * RH_SLOT_STRIDE + RS_COUNT))
			best = i;
	}
	if (best < 0) {
		set_reason(reason, reason_len, "head slots: slot 0: %s; slot 1: %s", bad[0],
		           bad[1]);
		return -EBADMSG;
	}
	if (bad[best ^ 1])
		set_reason(reason, reason_len, "head slot %d: %s (using slot %d)", best ^ 1,
		           bad[best ^ 1], best);
	else
		set_reason(reason, reason_len, "%s", "");
	if (bad_slot)
		*bad_slot = bad[best ^ 1] ? best ^ 1 : -1;

	out->ring_id = rf_get_le64(h + RH_RING_ID);
	out->data_size = data_size;
	out->head_pos = rf_get_le64(h + RH_SLOT0 + best * RH_SLOT_STRIDE + RS_HEAD_POS);
	out->head_seq = rf_get_le64(h + RH_SLOT0 + best * RH_SLOT_STRIDE + RS_HEAD_SEQ);
	if (count)
		*count = rf_get_le64(h + RH_SLOT0 + best * RH_SLOT_STRIDE + RS_COUNT);
	return 0;
}

int ring_durable_parse(const unsigned char *h, uint64_t *pos, uint64_t *seq, uint64_t *count)
{
	static const unsigned off[2] = {RH_DSLOT0, RH_DSLOT1};
	char why[96];
	int best = -1;

	for (int i = 0; i < 2; i++) {
		if (check_slot(h + off[i], why, sizeof(why)))
			continue;
		if (best < 0 ||
		    rf_get_le64(h + off[i] + RS_COUNT) > rf_get_le64(h + off[best] + RS_COUNT))
			best = i;
	}
	if (best < 0)
		return -ENOENT;
	*pos = rf_get_le64(h + off[best] + RS_HEAD_POS);
	*seq = rf_get_le64(h + off[best] + RS_HEAD_SEQ);
	*count = rf_get_le64(h + off[best] + RS_COUNT);
	return 0;
}

int rf_ring_header_parse(const void *buf, size_t len, struct rf_ring_info *out, char *reason,
                         size_t reason_len)
{
	return ring_header_parse(buf, len, out, NULL, NULL, reason, reason_len);
}

void ring_encode_slot(unsigned char *s, uint64_t head_pos, uint64_t head_seq, uint64_t count)
{
	memset(s, 0, RS_SIZE);
	rf_put_le64(s + RS_HEAD_POS, head_pos);
	rf_put_le64(s + RS_HEAD_SEQ, head_seq);
	rf_put_le64(s + RS_COUNT, count);
	rf_put_le32(s + RS_CRC, rf_crc32c(0, s, RS_CRC));
}
