/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: rephubd's configuration parser (hub/config.c, libinih). The
 * input is the file's text, handed over through a memfd so nothing touches
 * the disk; the parser only checks paths, it never creates them.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "repfabric/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Rejections are the expected outcome here: keep the fuzzer fast and quiet. */
static void quiet_sink(void *ctx, enum rf_log_level level, const char *line)
{
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	struct hub_config cfg;
	char path[64];

	if (fd < 0) {
		fd = memfd_create("rf-fuzz-config", MFD_CLOEXEC);
		if (fd < 0)
			return 0;
		rf_log_set_sink(quiet_sink, NULL);
	}
	if (ftruncate(fd, 0) || pwrite(fd, data, size, 0) != (ssize_t)size)
		return 0;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	hub_config_load(&cfg, path);
	hub_config_free(&cfg);
	return 0;
}
