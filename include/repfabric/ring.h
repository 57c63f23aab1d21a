/* SPDX-License-Identifier: MIT */
/*
 * repfabric persistent ring (librfpmem).
 *
 * A single-producer / single-consumer log of write records that lives in
 * the hub's persistent memory. The producer (the agent, on another host)
 * places records with one-sided writes (RDMA WRITE, TCP placement, or a
 * memcpy for shared memory); the consumer (the hub) validates, applies and
 * consumes them. The byte-level format is described in docs/PROTOCOL.md,
 * section "Persistent ring (pmem/)".
 *
 * Positions are monotonically increasing 64-bit byte counts; the offset of
 * position p in the data area is p % data_size. Every record starts at a
 * multiple of RF_RING_ALIGN and carries a sequence number; sequence numbers
 * are contiguous across all records, PAD records included.
 *
 * Sides:
 *  - the mapping (struct rf_ring): create/open a ring file or device, or
 *    wrap caller memory; it also holds the consumer state (the head);
 *  - the producer (struct rf_ring_producer): needs no mapping; it computes
 *    placements from the geometry and its own positions and encodes record
 *    images as (file offset, pointer, length) segments for a transport;
 *  - the consumer: rf_ring_peek()/rf_ring_consume() on a mapping;
 *  - recovery: rf_ring_scan() walks the valid prefix from the head.
 *
 * Ring contents are untrusted: every field of every record is validated and
 * anything invalid is refused with a status and a human-readable reason.
 *
 * Return convention: functions returning int return 0 on success and a
 * negative errno value on failure, as documented per function. None of the
 * handles is thread-safe; use one thread per handle (or lock outside).
 */
#ifndef REPFABRIC_RING_H
#define REPFABRIC_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Geometry and format constants ----------------------------------- */

#define RF_RING_HEADER_SIZE    4096u /* bytes before the data area */
#define RF_RING_HEADER_USED    192u  /* header bytes that carry information */
#define RF_RING_ALIGN          256u  /* record alignment and size granule */
#define RF_RING_REC_HDR_SIZE   64u   /* record header */
#define RF_RING_REC_TRL_SIZE   16u   /* record trailer (last 16 bytes) */
#define RF_RING_MIN_DATA_SIZE  (64u * 1024u)
#define RF_RING_MAX_DATA_SIZE  (1ull << 46) /* 64 TiB: a sanity bound */
#define RF_RING_MAX_PAYLOAD    (16u * 1024u * 1024u)
#define RF_RING_PAD_IMAGE_SIZE (RF_RING_REC_HDR_SIZE + RF_RING_REC_TRL_SIZE)
#define RF_RING_MAX_SEGS       3u

/* Record types (the u16 "type" field of a record header). */
enum rf_ring_rec_type {
	RF_RING_REC_DATA = 1, /* payload = the bytes to write at (volume, offset) */
	RF_RING_REC_PAD = 2,  /* filler up to the end of the data area (internal) */
	RF_RING_REC_ZERO = 3, /* no payload: write zeroes over (offset, length) */
	RF_RING_REC_TRIM = 4, /* no payload: discard (offset, length) */
};

/* Why a record (or the scan) was refused. */
enum rf_ring_status {
	RF_RING_ST_OK = 0,    /* a valid record with the expected sequence */
	RF_RING_ST_END,       /* no record magic here: nothing written (yet) */
	RF_RING_ST_STALE,     /* a record from an earlier lap, session or ring */
	RF_RING_ST_TORN,      /* header fine, trailer missing: write incomplete */
	RF_RING_ST_BAD_CRC,   /* header and trailer fine, CRC mismatch */
	RF_RING_ST_BAD_SEQ,   /* sequence ahead of the expected one: corrupt */
	RF_RING_ST_BAD_FIELD, /* a header field is out of range: corrupt/torn */
	RF_RING_ST_FULL,      /* (scan only) the whole data area is valid records */
};

/* A refusal: the status and a one-line reason naming the field. */
struct rf_ring_verdict {
	enum rf_ring_status status;
	char reason[160];
};

/*
 * What a producer needs to start: published by the consumer with
 * rf_ring_begin_session(), or decoded from a remote read of the header with
 * rf_ring_header_parse().
 */
struct rf_ring_info {
	uint64_t ring_id;   /* random at create; changes when the ring is re-created */
	uint64_t data_size; /* bytes in the data area */
	uint64_t head_pos;  /* position of the oldest unconsumed record */
	uint64_t head_seq;  /* sequence number expected at head_pos */
};

/* A validated record, as returned by rf_ring_peek(). */
struct rf_ring_record {
	uint16_t type;  /* DATA, ZERO or TRIM (PADs are skipped) */
	uint16_t flags; /* passed through, not interpreted by the ring */
	uint32_t volume_id;
	uint64_t offset;      /* byte offset in the volume */
	uint32_t length;      /* bytes of the volume affected */
	uint32_t payload_len; /* == length for DATA, 0 otherwise */
	const void *payload;  /* in the mapping; NULL when payload_len == 0 */
	uint64_t timestamp_ns;
	uint64_t seq;        /* this record's sequence number */
	uint64_t pos;        /* this record's position */
	uint32_t total_size; /* this record's size on media */
	uint32_t pad_bytes;  /* size of the PAD skipped before it, or 0 */
	uint64_t start_pos;  /* the head this view was taken at */
	uint64_t next_pos;   /* the head after consuming it */
	uint64_t next_seq;   /* the sequence expected after it */
};

/* The valid prefix found by rf_ring_scan(). */
struct rf_ring_scan_result {
	uint64_t start_pos, start_seq;     /* the head the scan started from */
	uint64_t end_pos, end_seq;         /* first position/sequence past the prefix */
	uint64_t records;                  /* DATA/ZERO/TRIM records in the prefix */
	uint64_t pads;                     /* PAD records in the prefix */
	uint64_t bytes;                    /* end_pos - start_pos */
	struct rf_ring_verdict stop;       /* why the walk stopped (never OK) */
	uint64_t durable_pos, durable_seq; /* the durable mark (rf_ring_durable); a
	                                      prefix ending before it lost records
	                                      that were acknowledged durable */
	uint64_t first_ts_ns;              /* timestamp of the prefix's first record (0: none) */
	uint64_t durable_ts_ns;            /* of its first record at or past the durable mark */
};

/* ---- Pure format helpers ---------------------------------------------- */

/* Size on media of a record with @payload_len payload bytes (a multiple of 256). */
uint64_t rf_ring_record_size(uint64_t payload_len);

/* Largest payload accepted by a ring of @data_size: min(data_size/4, 16 MiB). */
uint32_t rf_ring_max_payload(uint64_t data_size);

/*
 * Validate @data_size for a new ring: a multiple of RF_RING_ALIGN between
 * RF_RING_MIN_DATA_SIZE and RF_RING_MAX_DATA_SIZE. Returns 0 or -EINVAL.
 */
int rf_ring_check_data_size(uint64_t data_size);

/* Short name of a status ("ok", "end", "stale", "torn", "bad-crc", ...). */
const char *rf_ring_status_name(enum rf_ring_status st);

/* Name of a record type ("data", "pad", "zero", "trim", or "?"). */
const char *rf_ring_type_name(uint16_t type);

/*
 * Decode and validate the first @len bytes of a ring header (at least
 * RF_RING_HEADER_USED), e.g. handed to a producer in a transport's accept message, and
 * fill @out with the geometry and the newest valid head. @reason (may be
 * NULL) receives why the header was refused, naming the field.
 * Returns 0, -EBADMSG (corrupt or inconsistent header), -EPROTONOSUPPORT
 * (unknown version) or -EINVAL (@len too small).
 */
int rf_ring_header_parse(const void *buf, size_t len, struct rf_ring_info *out, char *reason,
                         size_t reason_len);

/* ---- Mapping (consumer side) ------------------------------------------ */

struct rf_ring;

/*
 * Format a new ring with a @data_size data area at @path and map it.
 * A regular path (ordinary file system, tmpfs such as /dev/shm, or a DAX
 * file system) is created exclusively with size RF_RING_HEADER_SIZE +
 * data_size; a device DAX character device (/dev/daxX.Y) is mapped whole and
 * must be at least that large (its old data area is not cleared: records
 * carry the ring id, so old ones are refused as stale).
 * Returns 0 and sets *@out, or -EINVAL (bad data_size), -EEXIST (the file
 * exists), -ENOSPC (device too small), -ENOMEM, or -errno from the mapping.
 */
int rf_ring_create(struct rf_ring **out, const char *path, uint64_t data_size);

/*
 * Map the existing ring at @path and validate its header; the consumer head
 * is the newest valid head slot. Returns 0 and sets *@out, -EBADMSG (bad
 * magic, CRC, geometry or size, logged with the field), -ENODATA (a device
 * DAX that holds no ring at all: create one with rf_ring_create()),
 * -EPROTONOSUPPORT (unknown version), -ENOMEM, or -errno from the mapping.
 */
int rf_ring_open(struct rf_ring **out, const char *path);

/*
 * Format a ring over caller memory @mem of @len bytes (at least
 * RF_RING_HEADER_SIZE + data_size). The memory is not freed by
 * rf_ring_close(). Persisting is a memory fence unless pmem_is_pmem() says
 * the range is persistent memory. Returns 0, -EINVAL or -ENOMEM.
 */
int rf_ring_format_mem(struct rf_ring **out, void *mem, size_t len, uint64_t data_size);

/*
 * Attach to a ring already formatted in caller memory (for example a
 * shared-memory mapping). Returns 0, -EINVAL (@len too small), -EBADMSG,
 * -EPROTONOSUPPORT or -ENOMEM.
 */
int rf_ring_attach_mem(struct rf_ring **out, void *mem, size_t len);

/* Unmap (file rings) and free the handle; sets *@ring to NULL. NULL-safe. */
void rf_ring_close(struct rf_ring **ring);

/* Start of the mapping (the ring header); register this for RDMA. */
void *rf_ring_base(const struct rf_ring *ring);
/* Length of the mapping (>= data offset + data size; larger on devdax). */
size_t rf_ring_map_len(const struct rf_ring *ring);
/* Offset of the data area in the mapping (RF_RING_HEADER_SIZE). */
uint64_t rf_ring_data_offset(const struct rf_ring *ring);
uint64_t rf_ring_data_size(const struct rf_ring *ring);
uint64_t rf_ring_id(const struct rf_ring *ring);
/* True when persisting uses pmem_persist() (the mapping is real pmem). */
bool rf_ring_is_pmem(const struct rf_ring *ring);

/*
 * Would a ring at @path be persistent memory to libpmem? @path is an
 * existing ring (file or device DAX: mapped and unmapped, nothing written)
 * or a directory (where a new ring file would go: probed with an unnamed
 * temporary file). Returns 0 with *@is_pmem set, or -errno (-ENOENT, ...).
 */
int rf_ring_probe_pmem(const char *path, bool *is_pmem);

/* The consumer's current head (advanced by consume, maybe not yet persisted). */
void rf_ring_head(const struct rf_ring *ring, uint64_t *pos, uint64_t *seq);

/*
 * Persist @len bytes at @addr inside the mapping with the function chosen
 * when it was mapped (pmem_persist on pmem, pmem_msync otherwise, a fence
 * for plain memory). Returns 0, -EINVAL (range outside the mapping) or
 * -errno from msync.
 */
int rf_ring_persist(struct rf_ring *ring, const void *addr, size_t len);

/*
 * Persist with pmem_persist() (CPU cache flush + fence) even though libpmem
 * does not report the mapping as persistent memory: for hardware it cannot
 * recognise. Only mappings that would use msync are switched. The caller
 * warns: on memory that is not persistent, what this persists survives a
 * crash of the process, not of the power.
 */
void rf_ring_force_pmem(struct rf_ring *ring);
bool rf_ring_is_forced_pmem(const struct rf_ring *ring);

/* ---- Durable mark (docs/DURABILITY.md) ---------------------------------- */

/*
 * The durable position: every record before (@pos, @seq) is validated and
 * persisted in the ring (rf_ring_make_durable), or was applied and its head
 * persisted. Never behind the persisted head.
 */
void rf_ring_durable(const struct rf_ring *ring, uint64_t *pos, uint64_t *seq);

/*
 * Make the records after the durable position durable in the ring, up to
 * and including sequence @landed_seq (every record up to it has landed):
 * validate each (untrusted content), stop at the first that is not valid
 * (@why, may be NULL, says why; status OK when none stopped it), persist the
 * bytes of the valid ones with one persist of the range (two when it wraps),
 * then write and persist the durable mark. Returns the number of records
 * (PADs included) made durable, 0 when none, or -errno from persisting
 * (then nothing new is durable).
 */
int rf_ring_make_durable(struct rf_ring *ring, uint64_t landed_seq, struct rf_ring_verdict *why);

/* ---- Consumer --------------------------------------------------------- */

/*
 * Look at the record at the head. A valid PAD at the head is skipped
 * transparently: the view is of the record after it, with pad_bytes set,
 * and consuming the view consumes both. Validates every field (magic, ring
 * id, sequence, type, sizes, no wrap, trailer, CRC) on a private copy of
 * the header. Returns 0 and fills @rec, or -EAGAIN when the next bytes are
 * not (yet) a valid record with the expected sequence; @why (may be NULL)
 * then says why. Does not change the ring.
 */
int rf_ring_peek(struct rf_ring *ring, struct rf_ring_record *rec, struct rf_ring_verdict *why);

/*
 * Advance the in-memory head past @rec (a view from rf_ring_peek() at the
 * current head) without persisting. Returns 0 or -EINVAL (not at the head).
 */
int rf_ring_advance(struct rf_ring *ring, const struct rf_ring_record *rec);

/*
 * Write the in-memory head to the older of the two head slots and persist
 * it. Call after the records it passes have been applied durably.
 * Returns 0 or -errno from persisting.
 */
int rf_ring_persist_head(struct rf_ring *ring);

/*
 * Move the in-memory head back to the head last persisted (by
 * rf_ring_persist_head, or as found at open). A consumer calls it when
 * making the records it advanced over durable failed: the next peek
 * returns them again, so they are applied again rather than skipped.
 */
void rf_ring_rewind(struct rf_ring *ring);

/* rf_ring_advance() then rf_ring_persist_head(). Returns 0 or -errno. */
int rf_ring_consume(struct rf_ring *ring, const struct rf_ring_record *rec);

/*
 * Start a producer session and fill @info for the producer. The ring must be
 * drained: any PADs at the head are consumed, but if the valid prefix holds
 * a DATA/ZERO/TRIM record this returns -EBUSY. The head sequence then jumps
 * by data_size/256 + 1 (and is persisted) so that no record left in the data
 * area by an earlier session can carry a sequence the new producer will
 * expect at its position. Call it before every producer (re)attach.
 * Returns 0, -EBUSY, or -errno from persisting.
 */
int rf_ring_begin_session(struct rf_ring *ring, struct rf_ring_info *info);

/*
 * Recovery: walk the valid prefix from the current head without changing
 * anything, and report its end and why it stopped. Nothing past the first
 * invalid record is examined. Returns 0 (always fills @res).
 */
int rf_ring_scan(const struct rf_ring *ring, struct rf_ring_scan_result *res);

/* ---- Producer (no mapping needed) -------------------------------------- */

struct rf_ring_producer;

/* What to append. */
struct rf_ring_desc {
	uint16_t type;  /* RF_RING_REC_DATA, _ZERO or _TRIM */
	uint16_t flags; /* passed through */
	uint32_t volume_id;
	uint64_t offset;     /* byte offset in the volume */
	uint32_t length;     /* DATA: payload bytes; ZERO/TRIM: range length */
	const void *payload; /* DATA only; may already be at buf + 64 */
	uint64_t timestamp_ns;
};

/* One contiguous write into the ring: mapping offset, source, length. */
struct rf_ring_seg {
	uint64_t file_off; /* offset from the start of the ring file/mapping */
	const void *src;   /* points into the encode buffer */
	uint32_t len;
};

/*
 * An encoded record: write the segments (in any order; they do not
 * overlap) to the ring. With a PAD, seg[0] is the PAD header, seg[1] the PAD
 * trailer (the bytes between need not be written) and seg[2] the record;
 * otherwise seg[0] is the record.
 */
struct rf_ring_image {
	unsigned nseg;
	struct rf_ring_seg seg[RF_RING_MAX_SEGS];
	uint64_t pos; /* the record's position */
	uint64_t seq; /* the record's sequence (the PAD, if any, has seq - 1) */
	uint32_t total_size;
	uint32_t pad_bytes; /* size of the PAD emitted before it, or 0 */
	uint64_t end_pos;   /* the producer's new tail */
};

/*
 * Create a producer that writes from @info->head_pos with sequence
 * @info->head_seq (the ring is empty from its point of view).
 * Returns 0 and sets *@out, -EINVAL (bad geometry or head) or -ENOMEM.
 */
int rf_ring_producer_new(struct rf_ring_producer **out, const struct rf_ring_info *info);

/* Free a producer and set *@p to NULL. NULL-safe. */
void rf_ring_producer_delete(struct rf_ring_producer **p);

/* Bytes an encode buffer needs for @payload_len: record size + PAD image. */
size_t rf_ring_encode_buf_size(uint32_t payload_len);

/*
 * Reserve the next record and encode it (and a PAD when the record does not
 * fit before the end of the data area) into @buf, then describe the writes
 * in @img and advance the tail and sequence. If @desc->payload equals
 * buf + RF_RING_REC_HDR_SIZE the payload is used in place (no copy).
 * Returns 0; -EINVAL (bad type, NULL payload with length); -EMSGSIZE
 * (payload above rf_ring_max_payload()); -ENOBUFS (@buf_len below
 * rf_ring_encode_buf_size()); -ENOSPC (the bytes would pass the known head
 * + data_size). On error the producer state is unchanged.
 */
int rf_ring_producer_encode(struct rf_ring_producer *p, const struct rf_ring_desc *desc, void *buf,
                            size_t buf_len, struct rf_ring_image *img);

/*
 * Tell the producer the consumer's head moved to @head_pos. A head older than
 * the one already known is ignored (notifications may be reordered).
 * Returns 0, or -EINVAL when @head_pos is misaligned or past the tail.
 */
int rf_ring_producer_update_head(struct rf_ring_producer *p, uint64_t head_pos);

uint64_t rf_ring_producer_tail(const struct rf_ring_producer *p);
uint64_t rf_ring_producer_next_seq(const struct rf_ring_producer *p);
uint64_t rf_ring_producer_head(const struct rf_ring_producer *p);
/* Bytes between the tail and the known head + data_size. */
uint64_t rf_ring_producer_free(const struct rf_ring_producer *p);

/*
 * Local transport: copy the segments of @img into the mapping of @ring and
 * persist them (shared memory producers and tests). Returns 0, -EINVAL
 * (a segment outside the data area) or -errno from persisting.
 */
int rf_ring_write_local(struct rf_ring *ring, const struct rf_ring_image *img);

#ifdef __cplusplus
}
#endif

#endif /* REPFABRIC_RING_H */
