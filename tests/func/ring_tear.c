/* SPDX-License-Identifier: MIT */
/*
 * rf-ring-tear: inject a torn record into an agent's ring file while no hub
 * runs (fault tests):
 *
 *   rf-ring-tear RING_FILE [--mode torn|crc]
 *
 * Walks the valid prefix from the persisted head (nothing is consumed: the
 * head stays where it is on media) and damages the record in its middle:
 * "torn" overwrites the record's trailer, as if the write had stopped
 * before its last bytes landed; "crc" flips a payload byte (or a header
 * byte for records without payload), as if part of the payload never
 * landed. Prints what it did. Exit 0 done, 1 fewer than 2 records in the
 * valid prefix or any error, 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repfabric/ring.h"

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"mode", required_argument, NULL, 'm'},
	                                     {NULL, 0, NULL, 0}};
	struct rf_ring_scan_result scan;
	struct rf_ring_record rec;
	struct rf_ring_verdict vd;
	struct rf_ring *ring = NULL;
	const char *mode = "torn";
	uint64_t skip, hpos, hseq;
	uint8_t *data, *at;
	size_t len;
	int o, rc;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o != 'm')
			goto usage;
		mode = optarg;
	}
	if (optind + 1 != argc ||
	    (strcmp(mode, "torn") && strcmp(mode, "crc") && strcmp(mode, "count")))
		goto usage;
	rc = rf_ring_open(&ring, argv[optind]);
	if (rc) {
		fprintf(stderr, "rf-ring-tear: cannot open %s: %s\n", argv[optind], strerror(-rc));
		return 1;
	}
	rf_ring_head(ring, &hpos, &hseq);
	rf_ring_scan(ring, &scan);
	if (strcmp(mode, "count") == 0) { /* read-only: how many records landed */
		printf("%" PRIu64 "\n", scan.records);
		rf_ring_close(&ring);
		return 0;
	}
	if (scan.records < 2) {
		fprintf(stderr,
		        "rf-ring-tear: only %" PRIu64 " record(s) after the head (seq %" PRIu64
		        "): nothing to tear in the middle\n",
		        scan.records, hseq);
		rf_ring_close(&ring);
		return 1;
	}
	skip = scan.records / 2;
	for (uint64_t i = 0;; i++) {
		rc = rf_ring_peek(ring, &rec, &vd);
		if (rc) {
			fprintf(stderr, "rf-ring-tear: the prefix changed under us: %s\n",
			        vd.reason);
			rf_ring_close(&ring);
			return 1;
		}
		if (i == skip)
			break;
		rf_ring_advance(ring, &rec); /* in memory only: never persisted */
	}
	data = (uint8_t *)rf_ring_base(ring) + rf_ring_data_offset(ring);
	at = data + rec.pos % rf_ring_data_size(ring);
	if (strcmp(mode, "torn") == 0) {
		at += rec.total_size - RF_RING_REC_TRL_SIZE; /* the trailer's seq */
		len = 8;
		for (size_t i = 0; i < len; i++)
			at[i] ^= 0xff;
	} else {
		at += rec.payload_len ? RF_RING_REC_HDR_SIZE + rec.payload_len / 2 : 40;
		len = 1;
		at[0] ^= 0x01;
	}
	rc = rf_ring_persist(ring, at, len);
	printf("tore record seq %" PRIu64 " (%s, vol_id %u, %" PRIu64 "+%u) at position %" PRIu64
	       " (%s): %" PRIu64 " valid record(s) before it, %" PRIu64
	       " after it; head seq %" PRIu64 "\n",
	       rec.seq, rf_ring_type_name(rec.type), rec.volume_id, rec.offset, rec.length, rec.pos,
	       mode, skip, scan.records - skip - 1, hseq);
	rf_ring_close(&ring);
	if (rc) {
		fprintf(stderr, "rf-ring-tear: persist: %s\n", strerror(-rc));
		return 1;
	}
	return 0;
usage:
	fprintf(stderr, "usage: rf-ring-tear RING_FILE [--mode torn|crc|count]\n");
	return 2;
}
