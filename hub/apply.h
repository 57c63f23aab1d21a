/* SPDX-License-Identifier: MIT */
/*
 * Storage layer: where a record goes, and how a failover test reads.
 *
 * A drained record is applied to its volume's journal when the volume has
 * one (journal.h: the journal applies it to the image when it retires),
 * else straight to the recovery image (image_io.h); apply_commit() makes
 * what was applied durable. Nothing is published until it returns 0.
 *
 * A failover test's view is a chain of links, modelled on nbdkit's
 * backends (a filter over a plugin): each link serves what it holds and
 * asks the link below for the rest.
 *
 *   scratch  the blocks the test wrote: a sparse file, a bitmap of 4 KiB blocks
 *   journal  the journal's entries up to the test's point
 *   image    the recovery image
 *
 * Writes go to the scratch only; a write that covers part of a block not
 * yet in the scratch first copies that block from the link below. The
 * image and the journal are never written through a view.
 *
 * Layers (the map is in base.h): base < storage < state < engines <
 * protocol < loop. This one: storage. Uses image_io.h and journal.h only.
 *
 * Functions return 0 or -errno.
 */
#ifndef REPHUB_APPLY_H
#define REPHUB_APPLY_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "repfabric/ring.h"

struct journal;

/*
 * Apply @r (DATA, ZERO or TRIM) to @jr (appended with time @wall_ms) or,
 * when @jr is NULL, to the image @img_fd. The record's range was checked
 * by the caller (drain.c). A record the journal already holds (drained
 * again after a crash) is skipped: 0.
 */
int apply_record(int img_fd, struct journal *jr, const struct rf_ring_record *r, int64_t wall_ms);

/* Make what apply_record() wrote durable: the journal's sync, else fdatasync of the image. */
int apply_commit(int img_fd, struct journal *jr);

/* ---- the read chain ------------------------------------------------------ */

struct apply_link;

struct apply_link_ops {
	const char *name;
	/* Read [@off, +@len) as this link shows it. */
	int (*pread)(struct apply_link *l, void *buf, uint32_t len, uint64_t off);
};

struct apply_link {
	const struct apply_link_ops *ops;
	struct apply_link *next; /* the link below; NULL under the image */
};

struct apply_image {
	struct apply_link link;
	int fd;
};

struct apply_journal {
	struct apply_link link; /* over an apply_image */
	struct journal *jr;
	uint64_t seq; /* the point: entries with seq <= it */
};

struct apply_scratch {
	struct apply_link link; /* over an apply_journal */
	int fd;                 /* the scratch file */
	char path[PATH_MAX];
	uint64_t size, nblocks;
	uint8_t *map; /* bit per block: in the scratch */
};

/* A failover test's view of a volume (volstate.c starts and stops it). */
struct test_view {
	uint64_t seq; /* the point it shows */
	int64_t time_ms;
	struct apply_image image;
	struct apply_journal journal;
	struct apply_scratch scratch; /* the top of the chain */
	uint8_t *buf;                 /* RF_CTL_MAX_DATA + 2 blocks, for replies */
	uint64_t reads, writes, read_bytes, write_bytes;
};

/*
 * Build the chain scratch (a new file @path, @size bytes) -> @jr at @seq ->
 * @img_fd. 0, or -errno with @why.
 */
int apply_view_open(struct test_view **out, const char *path, int img_fd, struct journal *jr,
                    uint64_t size, uint64_t seq, int64_t time_ms, char *why, size_t whylen);
/* Close and delete the scratch, free the view, NULL the caller's pointer. */
void apply_view_close(struct test_view **t);
int apply_view_read(struct test_view *t, uint64_t off, uint32_t len, void *out);
int apply_view_write(struct test_view *t, uint64_t off, uint32_t len, const void *data);

#endif /* REPHUB_APPLY_H */
