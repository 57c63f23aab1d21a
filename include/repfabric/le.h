/* SPDX-License-Identifier: MIT */
/*
 * Little-endian loads and stores for wire and on-media formats: every
 * multi-byte field repfabric puts on a wire or a medium goes through these,
 * whatever the host's byte order and the buffer's alignment.
 */
#ifndef REPFABRIC_LE_H
#define REPFABRIC_LE_H

#include <endian.h>
#include <stdint.h>
#include <string.h>

static inline void rf_put_le16(void *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, sizeof(v));
}

static inline void rf_put_le32(void *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}

static inline void rf_put_le64(void *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof(v));
}

static inline uint16_t rf_get_le16(const void *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return le16toh(v);
}

static inline uint32_t rf_get_le32(const void *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static inline uint64_t rf_get_le64(const void *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

#endif /* REPFABRIC_LE_H */
