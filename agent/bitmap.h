/* SPDX-License-Identifier: MIT */
/*
 * The agent's persistent dirty bitmap: one bit per chunk of a volume, in a
 * file mapped MAP_SHARED and persisted with msync. Format in
 * docs/PROTOCOL.md ("Dirty bitmap file").
 *
 * Not thread-safe: the agent serialises access with the volume lock (bits)
 * and the persist lock (msync). Functions return 0 or -errno.
 */
#ifndef REPFABRIC_AGENT_BITMAP_H
#define REPFABRIC_AGENT_BITMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RFA_BM_MAGIC       "RFAGBMAP" /* 8 bytes at offset 0 */
#define RFA_BM_VERSION     1
#define RFA_BM_HEADER_SIZE 4096u /* the bits start on the next page */
#define RFA_BM_HEADER_USED 128u
#define RFA_BM_CRC_OFF     124u /* CRC32C over bytes [0, 124) */
/* Header flag: a persist failed, the bits cannot be trusted. */
#define RFA_BM_FLAG_INVALID 0x0001u

struct rfa_bitmap;

/*
 * Open the bitmap at @path for volume @name of @size bytes with @chunk_size
 * bytes per bit. A missing file is created; a truncated, corrupt, invalid or
 * other-volume file is logged with the reason and recreated (all clear).
 * *@valid says whether the bits on disk were kept (false: created or
 * recreated; the caller then cannot say which regions are dirty).
 * Returns 0, -EINVAL (bad arguments) or -errno from the file system.
 */
int rfa_bitmap_open(struct rfa_bitmap **out, const char *path, const char *name, uint64_t size,
                    uint32_t chunk_size, bool *valid);

/* Persist everything, unmap, close; NULLs *@bm. NULL-safe. */
void rfa_bitmap_close(struct rfa_bitmap **bm);

uint64_t rfa_bitmap_nbits(const struct rfa_bitmap *bm);
bool rfa_bitmap_test(const struct rfa_bitmap *bm, uint64_t bit);
/* Set @bit; true when it flipped 0->1 (not yet persisted). */
bool rfa_bitmap_set(struct rfa_bitmap *bm, uint64_t bit);
/* Clear @bit; true when it flipped 1->0 (not yet persisted). */
bool rfa_bitmap_clear(struct rfa_bitmap *bm, uint64_t bit);
/* Number of set bits. */
uint64_t rfa_bitmap_count(const struct rfa_bitmap *bm);
/* First set bit >= @from into *@bit; -ENOENT when there is none. */
int rfa_bitmap_next_set(const struct rfa_bitmap *bm, uint64_t from, uint64_t *bit);

/* Byte offset in the bits area (page index = off / 4096) of @bit. */
static inline uint64_t rfa_bitmap_page_of(uint64_t bit)
{
	return bit / 8 / 4096;
}

/*
 * Persist (msync MS_SYNC, or MS_ASYNC when !@sync) the bit pages
 * [first_page, last_page]. Returns 0, -EINVAL, or -errno from msync.
 */
int rfa_bitmap_persist_pages(struct rfa_bitmap *bm, uint64_t first_page, uint64_t last_page,
                             bool sync);
/* Persist every bit page. */
int rfa_bitmap_persist(struct rfa_bitmap *bm, bool sync);

/*
 * Flag the file invalid (after a failed persist) so that the next open
 * recreates it and reports it invalid. Best effort; returns 0 or -errno.
 */
int rfa_bitmap_mark_invalid(struct rfa_bitmap *bm);

#endif /* REPFABRIC_AGENT_BITMAP_H */
