/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the ring's header parser and its record validation and
 * recovery scan (pmem/). The first input byte picks the mode:
 *   even: the rest overwrites the data area of a freshly formatted 64 KiB
 *         ring (valid header), then the scanner and the consumer walk it;
 *   odd:  the rest is a ring header (and what follows) given to
 *         rf_ring_header_parse and rf_ring_attach_mem.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "repfabric/log.h"
#include "repfabric/ring.h"

#define DATA_SIZE RF_RING_MIN_DATA_SIZE
#define MAP_SIZE  (RF_RING_HEADER_SIZE + DATA_SIZE)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Rejections are the expected outcome here: keep the fuzzer fast and quiet. */
static void quiet_sink(void *ctx, enum rf_log_level level, const char *line)
{
}

static void walk(struct rf_ring *r)
{
	struct rf_ring_scan_result res;
	struct rf_ring_record rec;
	struct rf_ring_verdict why;

	rf_ring_scan(r, &res);
	/* Every record the consumer accepts must be inside the mapping. */
	for (int i = 0; i < 4096 && rf_ring_peek(r, &rec, &why) == 0; i++) {
		const uint8_t *base = rf_ring_base(r);

		if (rec.payload_len &&
		    ((const uint8_t *)rec.payload < base ||
		     (const uint8_t *)rec.payload + rec.payload_len > base + rf_ring_map_len(r)))
			abort();
		if (rf_ring_advance(r, &rec))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t *mem;
	struct rf_ring *r = NULL;
	struct rf_ring_info info;
	char reason[160];

	if (size < 1)
		return 0;
	if (!mem) {
		mem = aligned_alloc(4096, MAP_SIZE);
		if (!mem)
			return 0;
		rf_log_set_sink(quiet_sink, NULL);
	}
	memset(mem, 0, MAP_SIZE);
	if ((data[0] & 1) == 0) {
		if (rf_ring_format_mem(&r, mem, MAP_SIZE, DATA_SIZE))
			return 0;
		memcpy(mem + RF_RING_HEADER_SIZE, data + 1,
		       size - 1 < DATA_SIZE ? size - 1 : DATA_SIZE);
		walk(r);
	} else {
		memcpy(mem, data + 1, size - 1 < MAP_SIZE ? size - 1 : MAP_SIZE);
		rf_ring_header_parse(mem, MAP_SIZE, &info, reason, sizeof(reason));
		if (rf_ring_attach_mem(&r, mem, MAP_SIZE) == 0)
			walk(r);
	}
	rf_ring_close(&r);
	return 0;
}
