/* SPDX-License-Identifier: MIT */
/*
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78), as used by iSCSI,
 * ext4 and NVMe. Uses six interleaved SSE4.2 crc32 streams (CRC_STREAMS in
 * common/crc32c.c) merged with PCLMULQDQ when the CPU has both, one crc32
 * chain with SSE4.2 alone and a slicing-by-8 table otherwise; all give
 * identical results.
 */
#ifndef REPFABRIC_CRC32C_H
#define REPFABRIC_CRC32C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Continue a CRC32C over @len bytes. Start with crc = 0; the pre- and
 * post-inversion are done inside, so rf_crc32c(rf_crc32c(0, a), b) equals
 * the CRC of a followed by b. rf_crc32c(0, "123456789", 9) == 0xE3069283.
 */
uint32_t rf_crc32c(uint32_t crc, const void *buf, size_t len);

/*
 * The portable table implementation: the reference the tests compare
 * rf_crc32c against, and what rf_crc32c runs on CPUs without SSE4.2. Same
 * contract and results as rf_crc32c, several times slower.
 */
uint32_t rf_crc32c_sw(uint32_t crc, const void *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* REPFABRIC_CRC32C_H */
