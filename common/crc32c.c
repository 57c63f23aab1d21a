/* SPDX-License-Identifier: MIT */
/*
 * CRC32C: several interleaved SSE4.2 crc32 streams merged with PCLMULQDQ
 * when the CPU has both, a single crc32 chain with SSE4.2 alone,
 * slicing-by-8 otherwise.
 *
 * Why several streams: the crc32 instruction has a latency of 3 cycles and
 * a throughput of 1 or 2 per cycle, so one chain (each step needs the
 * previous CRC) runs at a third (or a sixth) of what the core can do.
 * Independent chains over adjacent blocks of B bytes keep it busy; their
 * CRCs are then merged, which needs "advance this CRC over N zero bytes",
 * i.e. a multiply by x^(8N) modulo the polynomial: one carry-less multiply
 * by a constant computed once per block size, reduced for free by the
 * crc32 instruction that processes the last word of the last block (Intel's
 * white paper "Fast CRC Computation for iSCSI Polynomial Using CRC32
 * Instruction" describes the technique with three streams).
 */
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "crc32c_impl.h"
#include "repfabric/crc32c.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#include <wmmintrin.h>
#endif

#define CRC32C_POLY 0x82F63B78u
#define RF_STR_(x)  #x
#define RF_STR(x)   RF_STR_(x)

static uint32_t crc_table[8][256];
static pthread_once_t crc_table_once = PTHREAD_ONCE_INIT;

static void crc_table_init(void)
{
	for (uint32_t n = 0; n < 256; n++) {
		uint32_t c = n;

		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
		crc_table[0][n] = c;
	}
	for (uint32_t n = 0; n < 256; n++) {
		uint32_t c = crc_table[0][n];

		for (int t = 1; t < 8; t++) {
			c = crc_table[0][c & 0xff] ^ (c >> 8);
			crc_table[t][n] = c;
		}
	}
}

uint32_t rf_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	pthread_once(&crc_table_once, crc_table_init);
	crc = ~crc;
	while (len >= 8) {
		uint64_t w;

		memcpy(&w, p, 8);
		w ^= crc; /* little-endian: the low 4 bytes take the CRC */
		crc = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^
		      crc_table[5][(w >> 16) & 0xff] ^ crc_table[4][(w >> 24) & 0xff] ^
		      crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
		      crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

#if defined(__x86_64__)

/*
 * How many independent crc32 chains a round runs. Three fill a core whose
 * crc32 has a latency of 3 cycles and a throughput of 1 per cycle (the
 * case in Intel's paper). The AMD EPYC this project is benchmarked on
 * issues 2 per cycle (measured: 6 chains retire twice as many crc32q per
 * second as 3, and 8 or 12 no more than 6), so it needs 6. On a
 * 1-per-cycle core six should only cost three more multiplies per round
 * (not measured: no such host here).
 */
#ifndef CRC_STREAMS /* -DCRC_STREAMS=n: for testing other counts by hand */
#define CRC_STREAMS 6
#endif

/*
 * Block sizes, in 8-byte words per stream. Each round ends with a merge
 * (CRC_STREAMS - 1 multiplies, a few cycles of latency that no stream
 * hides), so rounds are as long as the buffer allows, up to CRC_MAX_WORDS
 * (2 KiB per stream: the merge is then about 1 % of a round). Below
 * CRC_MIN_WORDS the merge costs more than the parallelism saves and the
 * single chain finishes the buffer.
 */
#define CRC_MAX_WORDS 256
#define CRC_MIN_WORDS 4
#define CRC_ROUND_MIN (CRC_STREAMS * 8 * CRC_MIN_WORDS)

/*
 * crc_shift[k][s] merges stream s of a round of k words per stream: it
 * advances that stream's CRC over the CRC_STREAMS - 1 - s blocks after it
 * (see crc_round; the last stream needs none).
 */
static uint32_t crc_shift[CRC_MAX_WORDS + 1][CRC_STREAMS - 1];

enum crc_impl { CRC_IMPL_TABLE, CRC_IMPL_SERIAL, CRC_IMPL_MULTI };

static enum crc_impl crc_impl_sel = CRC_IMPL_TABLE;
static pthread_once_t crc_impl_once = PTHREAD_ONCE_INIT;

/*
 * @c (x^a mod P, bit-reflected: bit 31 is x^0) times x^n mod P. Bit by
 * bit: it only runs at start-up, and it is the definition, not a trick.
 */
static uint32_t xpow_mul(uint32_t c, unsigned n)
{
	while (n--)
		c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
	return c;
}

/*
 * A 32-bit CRC state S carried by a carry-less multiply by K = x^e mod P
 * into a 64-bit word, then fed to crc32q, becomes S * x^(e + 33): the
 * reflected product is one bit short of 64 (x^1) and crc32q appends 32
 * zero bits (x^32). So to advance S over N bytes, e = 8N - 33. Stream s of
 * a round of k words moves b = CRC_STREAMS - 1 - s blocks, N = 8kb bytes:
 * e = 64kb - 33, and going from k to k + 1 multiplies by x^(64b).
 */
static void crc_shift_init(void)
{
	for (unsigned s = 0; s < CRC_STREAMS - 1; s++) {
		unsigned b = CRC_STREAMS - 1 - s;
		uint32_t c = xpow_mul(0x80000000u, 64 * b - 33);

		for (unsigned k = 1; k <= CRC_MAX_WORDS; k++) {
			crc_shift[k][s] = c;
			c = xpow_mul(c, 64 * b);
		}
	}
}

static inline uint64_t load64(const unsigned char *p)
{
	uint64_t w;

	memcpy(&w, p, 8); /* unaligned loads are cheap on x86-64 */
	return w;
}

/* The last 0..7 bytes in at most three dependent steps, not seven. */
__attribute__((target("sse4.2"))) static inline uint32_t
crc32c_tail(uint64_t c64, const unsigned char *p, size_t len)
{
	uint32_t c = (uint32_t)c64;

	if (len & 4) {
		uint32_t w;

		memcpy(&w, p, 4);
		c = _mm_crc32_u32(c, w);
		p += 4;
	}
	if (len & 2) {
		uint16_t w;

		memcpy(&w, p, 2);
		c = _mm_crc32_u16(c, w);
		p += 2;
	}
	if (len & 1)
		c = _mm_crc32_u8(c, *p);
	return c;
}

/* The single chain: one 8-byte step per crc32 latency. */
__attribute__((target("sse4.2"))) static uint32_t
crc32c_serial_raw(uint32_t crc, const unsigned char *p, size_t len)
{
	uint64_t c = crc;

	while (len >= 8) {
		c = _mm_crc32_u64(c, load64(p));
		p += 8;
		len -= 8;
	}
	return crc32c_tail(c, p, len);
}

__attribute__((target("sse4.2,pclmul"))) static inline uint64_t clmul32(uint32_t a, uint32_t b)
{
	__m128i p = _mm_clmulepi64_si128(_mm_cvtsi32_si128((int)a), _mm_cvtsi32_si128((int)b), 0);

	return (uint64_t)_mm_cvtsi128_si64(p);
}

/*
 * One round over CRC_STREAMS adjacent blocks of @k words from @p,
 * continuing the raw (uninverted) CRC @crc in the first block; the other
 * streams start from 0. A CRC is linear, so the CRC of the whole is the sum
 * of every stream's CRC advanced over the blocks after its own. The
 * advances are folded into the last word of the last block instead of
 * being reduced one by one: the crc32q that consumes that word reduces
 * them all at once.
 */
__attribute__((target("sse4.2,pclmul"))) static uint32_t crc_round(uint32_t crc,
                                                                   const unsigned char *p, size_t k)
{
	const size_t blk = 8 * k, last = blk - 8;
	uint64_t c[CRC_STREAMS] = {crc};

	/* Unrolled so that every chain lives in its own register. */
	for (size_t i = 0; i < last; i += 8) {
#pragma GCC unroll 8
		for (int s = 0; s < CRC_STREAMS; s++)
			c[s] = _mm_crc32_u64(c[s], load64(p + s * blk + i));
	}

	uint64_t w = load64(p + (CRC_STREAMS - 1) * blk + last);

#pragma GCC unroll 8
	for (int s = 0; s < CRC_STREAMS - 1; s++) {
		c[s] = _mm_crc32_u64(c[s], load64(p + s * blk + last));
		w ^= clmul32((uint32_t)c[s], crc_shift[k][s]);
	}
	return (uint32_t)_mm_crc32_u64(c[CRC_STREAMS - 1], w);
}

__attribute__((target("sse4.2,pclmul"))) static uint32_t crc32c_multi(uint32_t crc, const void *buf,
                                                                      size_t len)
{
	const unsigned char *p = buf;
	uint32_t c = ~crc;

	while (len >= CRC_ROUND_MIN) {
		size_t k = len / (CRC_STREAMS * 8);

		if (k > CRC_MAX_WORDS)
			k = CRC_MAX_WORDS;
		c = crc_round(c, p, k);
		p += CRC_STREAMS * 8 * k;
		len -= CRC_STREAMS * 8 * k;
	}
	return ~crc32c_serial_raw(c, p, len);
}

static void crc_impl_init(void)
{
	__builtin_cpu_init();
	if (!__builtin_cpu_supports("sse4.2"))
		return;
	crc_impl_sel = CRC_IMPL_SERIAL;
	if (!__builtin_cpu_supports("pclmul"))
		return;
	crc_shift_init();
	crc_impl_sel = CRC_IMPL_MULTI;
}

static enum crc_impl crc_impl_get(void)
{
	pthread_once(&crc_impl_once, crc_impl_init);
	return crc_impl_sel;
}

uint32_t rf_crc32c_serial(uint32_t crc, const void *buf, size_t len)
{
	if (crc_impl_get() == CRC_IMPL_TABLE)
		return rf_crc32c_sw(crc, buf, len);
	return ~crc32c_serial_raw(~crc, buf, len);
}

uint32_t rf_crc32c(uint32_t crc, const void *buf, size_t len)
{
	switch (crc_impl_get()) {
	case CRC_IMPL_MULTI:
		return crc32c_multi(crc, buf, len);
	case CRC_IMPL_SERIAL:
		return ~crc32c_serial_raw(~crc, buf, len);
	default:
		return rf_crc32c_sw(crc, buf, len);
	}
}

const char *rf_crc32c_impl_name(void)
{
	static const char *const names[] = {
	    [CRC_IMPL_TABLE] = "table (slicing-by-8)",
	    [CRC_IMPL_SERIAL] = "sse4.2 single chain",
	    [CRC_IMPL_MULTI] = "sse4.2+pclmul " RF_STR(CRC_STREAMS) " streams",
	};

	return names[crc_impl_get()];
}
#else
uint32_t rf_crc32c(uint32_t crc, const void *buf, size_t len)
{
	return rf_crc32c_sw(crc, buf, len);
}

uint32_t rf_crc32c_serial(uint32_t crc, const void *buf, size_t len)
{
	return rf_crc32c_sw(crc, buf, len);
}

const char *rf_crc32c_impl_name(void)
{
	return "table (slicing-by-8)";
}
#endif
