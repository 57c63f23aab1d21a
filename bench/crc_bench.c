/* SPDX-License-Identifier: MIT */
/*
 * rf-crc-bench: CRC32C throughput, single thread, one buffer hashed over
 * and over (so it is cache-resident: this measures the computation, not
 * memory), for the table reference, the old single crc32 chain and
 * rf_crc32c as the library runs it on this CPU.
 *
 *   rf-crc-bench [--sizes LIST] [--seconds S] [--trials N]
 *
 * --sizes: comma-separated buffer sizes (default 4k,64k,1M; k/M/G are
 * powers of 1024). Every (size, implementation) is timed N times (default
 * 5, the implementations alternating) for S seconds each (default 0.2);
 * the median trial is printed, in GB/s (10^9 bytes per second), with the
 * speed-up of rf_crc32c over the single chain. Every call starts from
 * crc = 0, as the ring's per-record CRCs do. A benchmark: it asserts
 * nothing about speed.
 */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "crc32c_impl.h"
#include "repfabric/crc32c.h"
#include "repfabric/sockio.h"

#define MAX_SIZES  16
#define MAX_TRIALS 101

typedef uint32_t (*crc_fn)(uint32_t crc, const void *buf, size_t len);

static const struct {
	const char *name;
	crc_fn fn;
} impls[] = {
    {"table", rf_crc32c_sw},
    {"single-chain", rf_crc32c_serial},
    {"rf_crc32c", rf_crc32c},
};

#define N_IMPLS (sizeof(impls) / sizeof(impls[0]))

/* Keeps the compiler from dropping calls whose result nobody reads. */
static volatile uint32_t sink;

/* One trial: GB/s of @fn over @buf for about @seconds. */
static double trial(crc_fn fn, const unsigned char *buf, size_t len, double seconds)
{
	uint64_t bytes = 0;
	uint32_t acc = 0;
	double t0 = ((double)rf_now_ns() / 1e9), t;

	/* Check the clock every ~1 MB of work, not after every small call. */
	size_t batch = len >= (1u << 20) ? 1 : (1u << 20) / len;

	do {
		for (size_t i = 0; i < batch; i++)
			acc ^= fn(0, buf, len);
		bytes += (uint64_t)batch * len;
		t = ((double)rf_now_ns() / 1e9);
	} while (t - t0 < seconds);
	sink = acc;
	return (double)bytes / (t - t0) / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/*
 * The median trial of every implementation on one size. The trials of the
 * implementations alternate, so that a burst of load from other processes
 * hits them all alike instead of one of them.
 */
static void median_gbs(const unsigned char *buf, size_t len, double seconds, int trials,
                       double *gbs)
{
	static double r[N_IMPLS][MAX_TRIALS];

	for (int i = 0; i < trials; i++)
		for (size_t j = 0; j < N_IMPLS; j++)
			r[j][i] = trial(impls[j].fn, buf, len, seconds);
	for (size_t j = 0; j < N_IMPLS; j++) {
		qsort(r[j], (size_t)trials, sizeof(r[j][0]), cmp_double);
		gbs[j] = r[j][trials / 2];
	}
}

static void usage(FILE *f)
{
	fprintf(f, "usage: rf-crc-bench [--sizes LIST] [--seconds S] [--trials N]\n");
}

static int parse_sizes(const char *s, size_t *sizes, int *n)
{
	*n = 0;
	while (*s) {
		const char *end;
		uint64_t v = bench_parse_bytes(s, &end);

		if (!v || *n == MAX_SIZES || (*end && *end != ','))
			return -1;
		sizes[(*n)++] = (size_t)v;
		s = *end ? end + 1 : end;
	}
	return *n ? 0 : -1;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"sizes", required_argument, NULL, 's'},
	    {"seconds", required_argument, NULL, 't'},
	    {"trials", required_argument, NULL, 'n'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	size_t sizes[MAX_SIZES] = {4096, 65536, 1u << 20}, max = 0;
	int n_sizes = 3, trials = 5, c;
	double seconds = 0.2;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (parse_sizes(optarg, sizes, &n_sizes) < 0) {
				fprintf(stderr, "rf-crc-bench: bad --sizes '%s'\n", optarg);
				return 2;
			}
			break;
		case 't':
			seconds = atof(optarg);
			break;
		case 'n':
			trials = atoi(optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc || seconds <= 0 || trials < 1 || trials > MAX_TRIALS) {
		usage(stderr);
		return 2;
	}
	for (int i = 0; i < n_sizes; i++)
		max = sizes[i] > max ? sizes[i] : max;

	unsigned char *buf = malloc(max);

	if (!buf) {
		fprintf(stderr, "rf-crc-bench: out of memory\n");
		return 1;
	}
	srand(1);
	for (size_t i = 0; i < max; i++)
		buf[i] = (unsigned char)rand();

	printf("rf_crc32c: %s; median of %d x %.2f s, GB/s\n", rf_crc32c_impl_name(), trials,
	       seconds);
	printf("%10s %12s %12s %12s %8s\n", "size", impls[0].name, impls[1].name, impls[2].name,
	       "speedup");
	for (int i = 0; i < n_sizes; i++) {
		double gbs[N_IMPLS];

		median_gbs(buf, sizes[i], seconds, trials, gbs);
		printf("%10zu %12.2f %12.2f %12.2f %7.2fx\n", sizes[i], gbs[0], gbs[1], gbs[2],
		       gbs[2] / gbs[1]);
	}
	free(buf);
	return 0;
}
