/* SPDX-License-Identifier: MIT */
/* The agent's persistent dirty bitmap: see bitmap.h and docs/PROTOCOL.md. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bitmap.h"
#include "repfabric/crc32c.h"
#include "repfabric/le.h"
#include "repfabric/ctl.h"
#include "repfabric/log.h"

#define PAGE 4096u

struct rfa_bitmap {
	char *path;
	int fd;
	uint8_t *map; /* the whole file */
	size_t map_len;
	uint8_t *bits; /* map + RFA_BM_HEADER_SIZE */
	uint64_t nbits;
	uint64_t bits_len; /* bytes, a multiple of PAGE */
};

/* ---- header ------------------------------------------------------------ */

struct bm_header {
	uint16_t version;
	uint16_t flags;
	uint32_t chunk_size;
	uint64_t size;
	uint64_t nbits;
	uint64_t bits_off;
	uint64_t bits_len;
	char name[RF_CTL_MAX_NAME + 1];
};

static uint64_t bits_len_for(uint64_t nbits)
{
	uint64_t bytes = (nbits + 7) / 8;

	bytes = (bytes + PAGE - 1) / PAGE * PAGE;
	return bytes ? bytes : PAGE;
}

/* Encode @h into the first RFA_BM_HEADER_USED bytes of @p, with its CRC. */
static void header_encode(uint8_t *p, const struct bm_header *h)
{
	size_t nl = strlen(h->name);

	memset(p, 0, RFA_BM_HEADER_USED);
	memcpy(p, RFA_BM_MAGIC, 8);
	rf_put_le16(p + 8, h->version);
	rf_put_le16(p + 10, h->flags);
	rf_put_le32(p + 12, h->chunk_size);
	rf_put_le64(p + 16, h->size);
	rf_put_le64(p + 24, h->nbits);
	rf_put_le64(p + 32, h->bits_off);
	rf_put_le64(p + 40, h->bits_len);
	rf_put_le16(p + 48, (uint16_t)nl);
	memcpy(p + 50, h->name, nl);
	rf_put_le32(p + RFA_BM_CRC_OFF, rf_crc32c(0, p, RFA_BM_CRC_OFF));
}

/* Decode and check the header's own consistency; NULL or the reason. */
static const char *header_decode(const uint8_t *p, struct bm_header *h)
{
	uint16_t nl;

	if (memcmp(p, RFA_BM_MAGIC, 8) != 0)
		return "bad magic (not a repagent bitmap)";
	if (rf_get_le32(p + RFA_BM_CRC_OFF) != rf_crc32c(0, p, RFA_BM_CRC_OFF))
		return "header CRC mismatch";
	h->version = rf_get_le16(p + 8);
	h->flags = rf_get_le16(p + 10);
	h->chunk_size = rf_get_le32(p + 12);
	h->size = rf_get_le64(p + 16);
	h->nbits = rf_get_le64(p + 24);
	h->bits_off = rf_get_le64(p + 32);
	h->bits_len = rf_get_le64(p + 40);
	nl = rf_get_le16(p + 48);
	if (h->version != RFA_BM_VERSION)
		return "unsupported version";
	if (h->flags & RFA_BM_FLAG_INVALID)
		return "flagged invalid after a failed persist";
	if (h->flags & ~RFA_BM_FLAG_INVALID)
		return "unknown flags";
	if (nl == 0 || nl > RF_CTL_MAX_NAME)
		return "bad volume name length";
	memcpy(h->name, p + 50, nl);
	h->name[nl] = '\0';
	if (!rf_ctl_name_ok(h->name))
		return "bad volume name";
	if (h->chunk_size == 0 || (h->chunk_size & (h->chunk_size - 1)))
		return "bad chunk size";
	if (h->nbits != (h->size + h->chunk_size - 1) / h->chunk_size)
		return "bit count does not match the volume size";
	if (h->bits_off != RFA_BM_HEADER_SIZE || h->bits_len != bits_len_for(h->nbits))
		return "bad bits offset or length";
	for (unsigned i = 50 + nl; i < RFA_BM_CRC_OFF; i++)
		if (p[i])
			return "reserved header bytes not zero";
	return NULL;
}

/* ---- create ------------------------------------------------------------ */

static int fsync_dir_of(const char *path)
{
	char *copy = strdup(path);
	int fd, rc = 0;

	if (!copy)
		return -ENOMEM;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		rc = -errno;
	else if (fsync(fd) < 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	free(copy);
	return rc;
}

/* Write a fresh, all-clear bitmap to @path atomically (temp file + rename). */
static int bitmap_create(const char *path, const struct bm_header *h)
{
	uint8_t hdr[RFA_BM_HEADER_SIZE];
	size_t tl = strlen(path) + 8;
	char *tmp = malloc(tl);
	int fd, rc;

	if (!tmp)
		return -ENOMEM;
	snprintf(tmp, tl, "%s.new", path);
	fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		goto out_free;
	}
	memset(hdr, 0, sizeof(hdr));
	header_encode(hdr, h);
	if (pwrite(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr)) {
		rc = errno ? -errno : -EIO;
		goto out_unlink;
	}
	if (ftruncate(fd, (off_t)(RFA_BM_HEADER_SIZE + h->bits_len)) < 0 || fsync(fd) < 0) {
		rc = -errno;
		goto out_unlink;
	}
	if (rename(tmp, path) < 0) {
		rc = -errno;
		goto out_unlink;
	}
	close(fd);
	free(tmp);
	return fsync_dir_of(path);
out_unlink:
	close(fd);
	unlink(tmp);
out_free:
	free(tmp);
	return rc;
}

/* ---- open -------------------------------------------------------------- */

/*
 * Check the file open at @fd against the expected header @want. Returns
 * NULL when it can be used, or why not (the text goes to the log).
 */
static const char *bitmap_check(int fd, const struct bm_header *want, char *why, size_t whylen)
{
	uint8_t hdr[RFA_BM_HEADER_USED];
	struct bm_header got;
	const char *bad;
	struct stat st;
	ssize_t n;

	if (fstat(fd, &st) < 0) {
		snprintf(why, whylen, "cannot stat: %s", strerror(errno));
		return why;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "not a regular file");
		return why;
	}
	if ((uint64_t)st.st_size < RFA_BM_HEADER_SIZE) {
		snprintf(why, whylen, "truncated: %" PRIu64 " bytes, the header alone needs %u",
		         (uint64_t)st.st_size, RFA_BM_HEADER_SIZE);
		return why;
	}
	n = pread(fd, hdr, sizeof(hdr), 0);
	if (n != (ssize_t)sizeof(hdr)) {
		snprintf(why, whylen, "cannot read the header: %s",
		         n < 0 ? strerror(errno) : "short read");
		return why;
	}
	bad = header_decode(hdr, &got);
	if (bad) {
		snprintf(why, whylen, "%s", bad);
		return why;
	}
	if (strcmp(got.name, want->name) != 0) {
		snprintf(why, whylen, "belongs to volume '%s'", got.name);
		return why;
	}
	if (got.size != want->size) {
		snprintf(why, whylen, "made for a volume of %" PRIu64 " bytes, not %" PRIu64,
		         got.size, want->size);
		return why;
	}
	if (got.chunk_size != want->chunk_size) {
		snprintf(why, whylen, "chunk size %u, not %u", got.chunk_size, want->chunk_size);
		return why;
	}
	if ((uint64_t)st.st_size != RFA_BM_HEADER_SIZE + got.bits_len) {
		snprintf(why, whylen,
		         "file is %" PRIu64 " bytes, expected %" PRIu64 " (truncated?)",
		         (uint64_t)st.st_size, RFA_BM_HEADER_SIZE + got.bits_len);
		return why;
	}
	return NULL;
}

int rfa_bitmap_open(struct rfa_bitmap **out, const char *path, const char *name, uint64_t size,
                    uint32_t chunk_size, bool *valid)
{
	struct bm_header want = {.version = RFA_BM_VERSION, .chunk_size = chunk_size, .size = size};
	struct rfa_bitmap *bm;
	char why[256];
	const char *bad;
	int rc;

	*out = NULL;
	*valid = false;
	if (!path || !name || !rf_ctl_name_ok(name) || size == 0 || chunk_size == 0 ||
	    (chunk_size & (chunk_size - 1)))
		return -EINVAL;
	snprintf(want.name, sizeof(want.name), "%s", name);
	want.nbits = (size + chunk_size - 1) / chunk_size;
	want.bits_off = RFA_BM_HEADER_SIZE;
	want.bits_len = bits_len_for(want.nbits);

	bm = calloc(1, sizeof(*bm));
	if (!bm)
		return -ENOMEM;
	bm->fd = -1;
	bm->path = strdup(path);
	if (!bm->path) {
		rc = -ENOMEM;
		goto out_free;
	}
	bm->fd = open(path, O_RDWR | O_CLOEXEC);
	if (bm->fd < 0 && errno != ENOENT) {
		rc = -errno;
		RF_ERR("agent", "bitmap %s: cannot open: %s", path, strerror(-rc));
		goto out_free;
	}
	if (bm->fd < 0) {
		RF_INFO("agent", "bitmap %s: missing, creating it (volume %s: full sync)", path,
		        name);
	} else {
		bad = bitmap_check(bm->fd, &want, why, sizeof(why));
		if (!bad) {
			*valid = true;
		} else {
			RF_WARN("agent", "bitmap %s: %s; recreating it (volume %s: full sync)",
			        path, bad, name);
			close(bm->fd);
			bm->fd = -1;
		}
	}
	if (bm->fd < 0) {
		rc = bitmap_create(path, &want);
		if (rc) {
			RF_ERR("agent", "bitmap %s: cannot create: %s", path, strerror(-rc));
			goto out_free;
		}
		bm->fd = open(path, O_RDWR | O_CLOEXEC);
		if (bm->fd < 0) {
			rc = -errno;
			goto out_free;
		}
	}
	bm->nbits = want.nbits;
	bm->bits_len = want.bits_len;
	bm->map_len = RFA_BM_HEADER_SIZE + want.bits_len;
	bm->map = mmap(NULL, bm->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, bm->fd, 0);
	if (bm->map == MAP_FAILED) {
		rc = -errno;
		bm->map = NULL;
		RF_ERR("agent", "bitmap %s: cannot map: %s", path, strerror(-rc));
		goto out_free;
	}
	bm->bits = bm->map + RFA_BM_HEADER_SIZE;
	/* Bits past the last chunk carry nothing; keep them clear. */
	for (uint64_t b = bm->nbits; b < (bm->nbits + 7) / 8 * 8; b++)
		bm->bits[b / 8] &= (uint8_t) ~(1u << (b % 8));
	*out = bm;
	return 0;
out_free:
	if (bm->fd >= 0)
		close(bm->fd);
	free(bm->path);
	free(bm);
	*valid = false;
	return rc;
}

void rfa_bitmap_close(struct rfa_bitmap **pbm)
{
	struct rfa_bitmap *bm = pbm ? *pbm : NULL;

	if (!bm)
		return;
	if (bm->map) {
		if (msync(bm->map, bm->map_len, MS_SYNC) < 0)
			RF_ERR("agent", "bitmap %s: msync at close failed: %s", bm->path,
			       strerror(errno));
		munmap(bm->map, bm->map_len);
	}
	close(bm->fd);
	free(bm->path);
	free(bm);
	*pbm = NULL;
}

/* ---- bits -------------------------------------------------------------- */

uint64_t rfa_bitmap_nbits(const struct rfa_bitmap *bm)
{
	return bm->nbits;
}

bool rfa_bitmap_test(const struct rfa_bitmap *bm, uint64_t bit)
{
	return bit < bm->nbits && (bm->bits[bit / 8] >> (bit % 8)) & 1;
}

bool rfa_bitmap_set(struct rfa_bitmap *bm, uint64_t bit)
{
	uint8_t m = (uint8_t)(1u << (bit % 8));

	if (bit >= bm->nbits || (bm->bits[bit / 8] & m))
		return false;
	bm->bits[bit / 8] |= m;
	return true;
}

bool rfa_bitmap_clear(struct rfa_bitmap *bm, uint64_t bit)
{
	uint8_t m = (uint8_t)(1u << (bit % 8));

	if (bit >= bm->nbits || !(bm->bits[bit / 8] & m))
		return false;
	bm->bits[bit / 8] &= (uint8_t)~m;
	return true;
}

uint64_t rfa_bitmap_count(const struct rfa_bitmap *bm)
{
	uint64_t n = 0, bytes = (bm->nbits + 7) / 8;

	for (uint64_t i = 0; i < bytes; i++)
		n += (uint64_t)__builtin_popcount(bm->bits[i]);
	return n;
}

int rfa_bitmap_next_set(const struct rfa_bitmap *bm, uint64_t from, uint64_t *bit)
{
	uint64_t bytes = (bm->nbits + 7) / 8;

	for (uint64_t b = from; b < bm->nbits;) {
		uint8_t v = bm->bits[b / 8] >> (b % 8);

		if (v) {
			b += (uint64_t)__builtin_ctz(v);
			if (b >= bm->nbits)
				break;
			*bit = b;
			return 0;
		}
		b = (b / 8 + 1) * 8;
		/* Skip zero words quickly. */
		while (b / 8 + 8 <= bytes && b % 64 == 0) {
			uint64_t w;

			memcpy(&w, bm->bits + b / 8, 8);
			if (w)
				break;
			b += 64;
		}
	}
	return -ENOENT;
}

/* ---- persistence ------------------------------------------------------- */

int rfa_bitmap_persist_pages(struct rfa_bitmap *bm, uint64_t first_page, uint64_t last_page,
                             bool sync)
{
	uint64_t npages = bm->bits_len / PAGE;

	if (first_page > last_page || last_page >= npages)
		return -EINVAL;
	if (msync(bm->bits + first_page * PAGE, (size_t)(last_page - first_page + 1) * PAGE,
	          sync ? MS_SYNC : MS_ASYNC) < 0)
		return -errno;
	return 0;
}

int rfa_bitmap_persist(struct rfa_bitmap *bm, bool sync)
{
	return rfa_bitmap_persist_pages(bm, 0, bm->bits_len / PAGE - 1, sync);
}

int rfa_bitmap_mark_invalid(struct rfa_bitmap *bm)
{
	struct bm_header h;

	if (header_decode(bm->map, &h) == NULL) {
		h.flags |= RFA_BM_FLAG_INVALID;
		header_encode(bm->map, &h);
	} else {
		memset(bm->map, 0, 8); /* already bad: make sure it stays so */
	}
	if (msync(bm->map, PAGE, MS_SYNC) < 0)
		return -errno;
	return 0;
}
