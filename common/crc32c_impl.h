/* SPDX-License-Identifier: MIT */
/*
 * Internal entry points of common/crc32c.c, for the unit test and
 * rf-crc-bench only; not part of the public API (repfabric/crc32c.h).
 */
#ifndef REPFABRIC_CRC32C_IMPL_H
#define REPFABRIC_CRC32C_IMPL_H

#include <stddef.h>
#include <stdint.h>

/*
 * The single serial crc32 chain rf_crc32c used before the multi-stream
 * version (the table when the CPU lacks SSE4.2): kept as the baseline the
 * benchmark compares against. Same results as rf_crc32c.
 */
uint32_t rf_crc32c_serial(uint32_t crc, const void *buf, size_t len);

/* Which implementation rf_crc32c picked on this CPU, for logs and reports. */
const char *rf_crc32c_impl_name(void);

#endif /* REPFABRIC_CRC32C_IMPL_H */
