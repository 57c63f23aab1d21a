/* SPDX-License-Identifier: MIT */
/* Command-line helpers shared by the benchmarks. */
#ifndef REPFABRIC_BENCH_ARGS_H
#define REPFABRIC_BENCH_ARGS_H

#include <stdint.h>

/*
 * "4096", "4k", "64KiB", "16M", "1g" -> bytes (powers of 1024); 0 on error.
 * @end (may be NULL) gets where the size ends, for lists such as "4k,64k".
 */
uint64_t bench_parse_bytes(const char *s, const char **end);

/* The same, but the whole string must be a size. */
uint64_t bench_parse_bytes_all(const char *s);

#endif /* REPFABRIC_BENCH_ARGS_H */
