/* SPDX-License-Identifier: MIT */
/*
 * Log-linear latency histogram for the benchmarks, in nanoseconds: exact
 * below 64 ns, then 64 buckets per power of two (about 1.6 % resolution),
 * 30 KB in all, so a long run costs no memory per sample.
 */
#ifndef REPFABRIC_BENCH_HIST_H
#define REPFABRIC_BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB     64
#define HIST_BUCKETS (59 * HIST_SUB)

struct hist {
	uint64_t n, sum, min, max;
	uint64_t b[HIST_BUCKETS];
};

void hist_add(struct hist *h, uint64_t v);
void hist_merge(struct hist *d, const struct hist *s);
/* The @q quantile in microseconds (0 when empty). */
double hist_quantile_us(const struct hist *h, double q);

#endif /* REPFABRIC_BENCH_HIST_H */
