/* SPDX-License-Identifier: MIT */
/*
 * rf-fabric-conformance's checked data, shared by its hub and producer modes
 * and the driver: every record's content as a function of (volume, index),
 * and the hub's state files (STATE and STATE.fab) the driver reads back.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "repfabric/fabric.h"
#include "repfabric/log.h"
#include "repfabric/ring.h"
#include "repfabric/sockio.h"

#include "conformance.h"

/* ------------------------------------------------------------ content */

uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Payload length of record @index: mostly small, some tiny, some maximal. */
uint32_t rec_len(uint32_t vol, uint64_t index, uint32_t max_payload)
{
	uint64_t h = mix64(index * 131 + vol);

	switch (h % 8) {
	case 0:
		return 1 + (uint32_t)(h >> 8) % 16; /* tiny */
	case 1:
		return max_payload; /* as large as the ring allows */
	default:
		return 1 + (uint32_t)((h >> 8) % (max_payload < 65536 ? max_payload : 65536));
	}
}

void rec_fill(uint8_t *p, uint32_t vol, uint64_t index, uint32_t len)
{
	uint64_t seed = mix64(index ^ ((uint64_t)vol << 56));

	for (uint32_t k = 0; k < len; k++)
		p[k] = (uint8_t)(seed >> (8 * (k % 8))) ^ (uint8_t)(k * 31);
}

bool rec_check(const uint8_t *p, uint32_t vol, uint64_t index, uint32_t len)
{
	uint64_t seed = mix64(index ^ ((uint64_t)vol << 56));

	for (uint32_t k = 0; k < len; k++)
		if (p[k] != ((uint8_t)(seed >> (8 * (k % 8))) ^ (uint8_t)(k * 31)))
			return false;
	return true;
}

/* ------------------------------------------------------------ hub state */

int state_load(const char *path, struct hub_state *st)
{
	FILE *f = fopen(path, "r");

	memset(st, 0, sizeof(*st));
	if (!f)
		return errno == ENOENT ? 0 : -errno;
	if (fscanf(f,
	           "next %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " applied %" SCNu64
	           " replays %" SCNu64 " errors %" SCNu64 " bytes %" SCNu64,
	           &st->next_index[0], &st->next_index[1], &st->next_index[2], &st->next_index[3],
	           &st->applied, &st->replays, &st->errors, &st->bytes) != 8) {
		fclose(f);
		return -EBADMSG;
	}
	fclose(f);
	return 0;
}

int state_save(const char *path, const struct hub_state *st)
{
	char tmp[4200];
	FILE *f;
	int rc = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return -errno;
	fprintf(f,
	        "next %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " applied %" PRIu64
	        " replays %" PRIu64 " errors %" PRIu64 " bytes %" PRIu64 "\n",
	        st->next_index[0], st->next_index[1], st->next_index[2], st->next_index[3],
	        st->applied, st->replays, st->errors, st->bytes);
	if (fflush(f) || fsync(fileno(f)))
		rc = -errno;
	fclose(f);
	if (!rc && rename(tmp, path))
		rc = -errno;
	return rc;
}

/* The listener's counters as the hub left them at a clean exit. */
static void fab_path(char *buf, size_t len, const char *state_path)
{
	snprintf(buf, len, "%s.fab", state_path);
}

int fab_save(const char *state_path, const struct rf_fab_stats *st)
{
	char path[4200];
	FILE *f;

	fab_path(path, sizeof(path), state_path);
	f = fopen(path, "w");
	if (!f)
		return -errno;
	fprintf(f,
	        "attaches %" PRIu64 " detaches %" PRIu64 " refused %" PRIu64 " completions %" PRIu64
	        " credits %" PRIu64 " credit_bytes %" PRIu64 " errors %" PRIu64 "\n",
	        st->attaches, st->detaches, st->refused, st->completions, st->credits,
	        st->credit_bytes, st->errors);
	return fclose(f) ? -errno : 0;
}

int fab_load(const char *state_path, struct rf_fab_stats *st)
{
	char path[4200];
	FILE *f;
	int n;

	fab_path(path, sizeof(path), state_path);
	f = fopen(path, "r");
	if (!f)
		return -errno;
	n = fscanf(f,
	           "attaches %" SCNu64 " detaches %" SCNu64 " refused %" SCNu64
	           " completions %" SCNu64 " credits %" SCNu64 " credit_bytes %" SCNu64
	           " errors %" SCNu64,
	           &st->attaches, &st->detaches, &st->refused, &st->completions, &st->credits,
	           &st->credit_bytes, &st->errors);
	fclose(f);
	return n == 7 ? 0 : -EBADMSG;
}
