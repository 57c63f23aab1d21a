/* SPDX-License-Identifier: MIT */
/* The benchmarks' latency histogram: see hist.h. */
#include "hist.h"

static unsigned hist_index(uint64_t v)
{
	unsigned e;

	if (v < HIST_SUB)
		return (unsigned)v;
	e = 63u - (unsigned)__builtin_clzll(v); /* >= 6 */
	return (e - 5) * HIST_SUB + (unsigned)((v >> (e - 6)) & (HIST_SUB - 1));
}

/* The middle of bucket @i. */
static uint64_t hist_value(unsigned i)
{
	unsigned e;

	if (i < HIST_SUB)
		return i;
	e = i / HIST_SUB + 5;
	return ((uint64_t)(HIST_SUB + i % HIST_SUB) << (e - 6)) + (((uint64_t)1 << (e - 6)) >> 1);
}

void hist_add(struct hist *h, uint64_t v)
{
	if (h->n == 0 || v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
	h->n++;
	h->sum += v;
	h->b[hist_index(v)]++;
}

double hist_quantile_us(const struct hist *h, double q)
{
	uint64_t rank, seen = 0, v = h->max;

	if (h->n == 0)
		return 0;
	rank = (uint64_t)(q * (double)h->n + 0.999999);
	if (rank < 1)
		rank = 1;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= rank) {
			v = hist_value(i);
			break;
		}
	}
	if (v > h->max)
		v = h->max;
	if (v < h->min)
		v = h->min;
	return (double)v / 1e3;
}

void hist_merge(struct hist *d, const struct hist *s)
{
	if (s->n == 0)
		return;
	if (d->n == 0 || s->min < d->min)
		d->min = s->min;
	if (s->max > d->max)
		d->max = s->max;
	d->n += s->n;
	d->sum += s->sum;
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		d->b[i] += s->b[i];
}
