/* SPDX-License-Identifier: MIT */
/*
 * The per-volume journal: every drained record is appended (with the hub's
 * apply time and the record's ring sequence) to segment files in a
 * directory of its own, made durable with journal_sync() before the ring
 * position is published, and applied to the recovery image once it is
 * older than the retention window (time) or the journal is over its size
 * (journal_retire). The image therefore holds the oldest retained point;
 * any point between it and the newest entry can be read (journal_read).
 *
 * A point is a ring sequence P: the volume as it was after every entry
 * with seq <= P. Sequences are the agent's, shared by all its volumes, so
 * the same P is one consistent point for all of them.
 *
 * On-disk layout (docs/HUB.md, "Journal"):
 *   DIR/SSSSSSSSSSSSSSSS.seg   entries, the name is the first entry's seq (hex)
 *   DIR/applied                "applied_seq=N\napplied_time_ms=T\n", atomic
 * Entry: a 64-byte little-endian header then payload_len bytes:
 *   0 magic "RFJE"  4 u16 version (1)  6 u8 type  7 u8 0  8 u32 length
 *   12 u32 payload_len  16 u64 seq  24 i64 time_ms  32 u64 offset
 *   40 u32 crc32c(header with this field 0, then payload)  44..63 zero
 *
 * Single-threaded, like the rest of rephubd. Functions return 0 or -errno.
 *
 * Layers (the map is in base.h): base < storage < state < engines <
 * protocol < loop. This one: storage. Uses image_io.h only; apply.h
 * decides what is journaled.
 */
#ifndef REPHUB_JOURNAL_H
#define REPHUB_JOURNAL_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JOURNAL_HDR_SIZE     64
#define JOURNAL_MAGIC        0x454a4652u /* "RFJE" */
#define JOURNAL_VERSION      1
#define JOURNAL_SEGMENT_SIZE (64ull << 20)

struct journal_params {
	uint64_t retain_ms;     /* apply entries older than this */
	uint64_t retain_bytes;  /* and the oldest while retained bytes exceed this */
	uint64_t segment_bytes; /* start a new segment past this (0: default) */
};

struct journal_entry {
	uint64_t seq;
	int64_t time_ms;
	uint64_t offset;
	uint32_t length;
	uint32_t payload_len;
	uint8_t type;
	uint32_t seg;  /* index into segs[] */
	uint64_t foff; /* payload's offset in its segment */
};

struct journal_seg {
	uint64_t first_seq;
	int fd;
	uint64_t size; /* bytes of valid entries */
	uint64_t live; /* entries not yet applied */
};

struct journal_info {
	uint64_t oldest_seq; /* the image's point (applied); valid when have_oldest */
	int64_t oldest_time_ms;
	bool have_oldest;
	uint64_t newest_seq; /* newest entry (== oldest when no entries) */
	int64_t newest_time_ms;
	uint64_t entries, bytes, segments;
	bool paused;
};

struct journal {
	char dir[PATH_MAX - 64]; /* room for "/NAME.seg" in a PATH_MAX buffer */
	struct journal_params p;
	struct journal_seg *segs; /* oldest first; the last one is appended to */
	size_t nsegs, segcap;
	struct journal_entry *ents; /* ents[head..n): retained, in seq order */
	size_t head, n, cap;
	uint64_t bytes; /* header + payload of retained entries */
	bool have_applied;
	uint64_t applied_seq; /* every entry <= it is in the image */
	int64_t applied_time_ms;
	bool have_last;
	uint64_t last_seq; /* newest entry ever appended (dedup after a crash) */
	int64_t last_time_ms;
	bool need_sync, need_dirsync;
	/* A segment fdatasync failed: the kernel may have dropped what it could
	 * not write and report success later, so nothing appended since the
	 * last good sync can be trusted. Appends and syncs fail until rephubd
	 * restarts and rebuilds the journal from its segments (the ring still
	 * holds every record that was not published durable). */
	bool failed;
	bool paused; /* a failover test runs: retire nothing */
	uint8_t *buf;
	size_t bufcap;
};

/* Open (creating @dir) and rebuild from the segments: torn tails dropped. */
int journal_open(struct journal *j, const char *dir, const struct journal_params *p);
void journal_close(struct journal *j);

/*
 * Append one record. Returns 0, 1 when @seq is not newer than the newest
 * entry (a record drained again after a crash: skipped), or -errno.
 */
int journal_append(struct journal *j, uint64_t seq, int64_t time_ms, uint8_t type, uint64_t offset,
                   uint32_t length, const void *payload, uint32_t payload_len);

/* fdatasync what was appended (and the directory when a segment was made). */
int journal_sync(struct journal *j);

/*
 * Apply to @img_fd the oldest entries that are due: older than retain_ms at
 * @now_ms, or over retain_bytes, or (always) with seq <= @force_upto when
 * @force. At most @max_bytes of payload per call. Then fdatasync the image,
 * record the applied point, delete fully applied segments. Returns the
 * number of entries applied or -errno. Nothing when paused and !@force.
 */
int journal_retire(struct journal *j, int img_fd, int64_t now_ms, bool force, uint64_t force_upto,
                   uint64_t max_bytes);

/* With no entry retained: forget the sequence space (a new owner). */
int journal_reset(struct journal *j);

/* Drop every entry newer than @seq (failover at a point): segments cut. */
int journal_drop_after(struct journal *j, uint64_t seq);

/*
 * Read @len bytes at @offset of the volume as it was at point @seq: the
 * image, then every retained entry with seq <= @seq in order. -ERANGE if
 * @seq is older than the image's point.
 */
int journal_read(struct journal *j, int img_fd, uint64_t seq, uint64_t offset, void *buf,
                 uint32_t len);

/*
 * Lay every retained entry with seq <= @seq, in order, over @buf, which
 * holds [@offset, +@len) of the image (the journal link of a test view's
 * read chain, apply.h). -ERANGE if @seq is older than the image's point.
 */
int journal_overlay(struct journal *j, uint64_t seq, uint64_t offset, void *buf, uint32_t len);

/*
 * The newest point at or before @time_ms. -ERANGE if older than the image's
 * point, or (nothing applied yet, the image's time unknown) than the first entry.
 */
int journal_point_at(const struct journal *j, int64_t time_ms, uint64_t *seq);

void journal_get_info(const struct journal *j, struct journal_info *info);

#endif /* REPHUB_JOURNAL_H */
