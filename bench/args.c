/* SPDX-License-Identifier: MIT */
/* Command-line helpers shared by the benchmarks: see args.h. */
#include <stdlib.h>
#include <string.h>

#include "args.h"

/* "4096", "4k", "64KiB", "16M", "1g" -> bytes; 0 on error. */
uint64_t bench_parse_bytes(const char *s, const char **end)
{
	char *e;
	uint64_t v = strtoull(s, &e, 10);

	if (e == s)
		return 0;
	switch (*e) {
	case 'k':
	case 'K':
		v <<= 10;
		e++;
		break;
	case 'm':
	case 'M':
		v <<= 20;
		e++;
		break;
	case 'g':
	case 'G':
		v <<= 30;
		e++;
		break;
	}
	if (strncmp(e, "iB", 2) == 0)
		e += 2;
	else if (*e == 'B' || *e == 'b')
		e++;
	if (end)
		*end = e;
	return v;
}

uint64_t bench_parse_bytes_all(const char *s)
{
	const char *end;
	uint64_t v = bench_parse_bytes(s, &end);

	return *end ? 0 : v;
}
