/* SPDX-License-Identifier: MIT */
/*
 * Writing ring-record effects into a raw image file: DATA pwrite, ZERO
 * (FALLOC_FL_ZERO_RANGE, else punch hole, else zeroes), TRIM (punch hole
 * with KEEP_SIZE, else as ZERO). Used by apply.c and the journal.
 *
 * Layers (the map is in base.h): base < storage < state < engines <
 * protocol < loop. This one: storage, the bottom.
 */
#ifndef REPHUB_IMAGE_IO_H
#define REPHUB_IMAGE_IO_H

#include <stddef.h>
#include <stdint.h>

int image_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);
int image_pread_all(int fd, void *buf, size_t len, uint64_t off);

/* Apply one record (type RF_RING_REC_*) to @fd. 0 or -errno (-EINVAL: type). */
int image_apply(int fd, unsigned type, uint64_t off, uint32_t len, const void *payload);

/* fsync a directory, so the entries created or removed in it are durable.
 * 0 or -errno. */
int image_fsync_dir(const char *dir);

#endif /* REPHUB_IMAGE_IO_H */
