/* SPDX-License-Identifier: MIT */
/*
 * The per-volume journal (see journal.h for the layout and the rules).
 *
 * Memory: one index entry per retained record (seq, time, range, where its
 * payload is); payloads stay in the segment files and are read back with
 * pread when they are applied or a view needs them.
 *
 * Durability: entries are fdatasync'ed (journal_sync) before the drain
 * publishes the ring position. Entries are applied to the image in order;
 * the image is fdatasync'ed, then the "applied" file says which point it
 * holds, then fully applied segments are deleted. Applying again an entry
 * the image already holds (a crash before "applied" was written) is
 * harmless: the entries are replayed in order over a newer state, and the
 * last writer of every byte is the same.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image_io.h"
#include "journal.h"
#include "repfabric/crc32c.h"
#include "repfabric/log.h"
#include "repfabric/ring.h"

#define SUBSYS "journal"

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* mkdir -p, making each directory it creates durable in its parent. */
static int mkdir_p(const char *path)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);
	char *s = buf + 1;

	if (n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (;; s++) {
		char c = *s;

		if (c != '/' && c != '\0')
			continue;
		*s = '\0';
		if (mkdir(buf, 0755) == 0) {
			char *slash = strrchr(buf, '/');
			int rc;

			/* The new directory's entry lives in its parent. */
			*slash = '\0';
			rc = image_fsync_dir(slash == buf ? "/" : buf);
			*slash = '/';
			if (rc)
				return rc;
		} else if (errno != EEXIST) {
			return -errno;
		}
		*s = c;
		if (c == '\0')
			return 0;
	}
}

static int seg_path(const struct journal *j, uint64_t first_seq, char *buf, size_t len)
{
	char hex[17];

	snprintf(hex, sizeof(hex), "%016" PRIx64, first_seq);
	if ((size_t)snprintf(buf, len, "%s/%s.seg", j->dir, hex) >= len)
		return -ENAMETOOLONG;
	return 0;
}

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
	size_t nc;
	void *p;

	if (need <= *cap)
		return 0;
	nc = *cap ? *cap * 2 : 64;
	while (nc < need)
		nc *= 2;
	p = realloc(*arr, nc * elem);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = nc;
	return 0;
}

static int reserve_buf(struct journal *j, size_t len)
{
	uint8_t *p;

	if (len <= j->bufcap)
		return 0;
	p = realloc(j->buf, len);
	if (!p)
		return -ENOMEM;
	j->buf = p;
	j->bufcap = len;
	return 0;
}

static uint64_t entry_bytes(const struct journal_entry *e)
{
	return JOURNAL_HDR_SIZE + (uint64_t)e->payload_len;
}

/* ---- the applied point ------------------------------------------------- */

static int save_applied(struct journal *j)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	FILE *f;
	int rc = 0;

	if ((size_t)snprintf(path, sizeof(path), "%s/applied", j->dir) >= sizeof(path) ||
	    (size_t)snprintf(tmp, sizeof(tmp), "%s/applied.tmp", j->dir) >= sizeof(tmp))
		return -ENAMETOOLONG;
	f = fopen(tmp, "we");
	if (!f)
		return -errno;
	fprintf(f, "applied_seq=%" PRIu64 "\napplied_time_ms=%" PRId64 "\n", j->applied_seq,
	        j->applied_time_ms);
	if (fflush(f) || fsync(fileno(f)))
		rc = -errno;
	if (fclose(f) && !rc)
		rc = -errno;
	if (!rc && rename(tmp, path))
		rc = -errno;
	if (!rc)
		rc = image_fsync_dir(j->dir);
	if (rc) {
		unlink(tmp);
		RF_ERR(SUBSYS, "%s: cannot record the applied point: %s", j->dir, strerror(-rc));
	}
	return rc;
}

static void load_applied(struct journal *j)
{
	char path[PATH_MAX];
	unsigned long long seq;
	long long t;
	FILE *f;

	if ((size_t)snprintf(path, sizeof(path), "%s/applied", j->dir) >= sizeof(path))
		return;
	f = fopen(path, "re");
	if (!f)
		return;
	if (fscanf(f, "applied_seq=%llu\napplied_time_ms=%lld", &seq, &t) == 2) {
		j->have_applied = true;
		j->applied_seq = seq;
		j->applied_time_ms = t;
	} else {
		RF_WARN(SUBSYS, "%s: ignoring an unreadable applied file", j->dir);
	}
	fclose(f);
}

/* ---- rebuild ----------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Decode and check the header at @h; payload checked by the caller. */
static bool hdr_ok(const uint8_t *h, struct journal_entry *e)
{
	if (get_le(h, 4) != JOURNAL_MAGIC || get_le(h + 4, 2) != JOURNAL_VERSION || h[7])
		return false;
	for (unsigned i = 44; i < JOURNAL_HDR_SIZE; i++)
		if (h[i])
			return false;
	e->type = h[6];
	e->length = (uint32_t)get_le(h + 8, 4);
	e->payload_len = (uint32_t)get_le(h + 12, 4);
	e->seq = get_le(h + 16, 8);
	e->time_ms = (int64_t)get_le(h + 24, 8);
	e->offset = get_le(h + 32, 8);
	if (e->type != RF_RING_REC_DATA && e->type != RF_RING_REC_ZERO &&
	    e->type != RF_RING_REC_TRIM)
		return false;
	if (e->type == RF_RING_REC_DATA ? e->payload_len != e->length : e->payload_len != 0)
		return false;
	return e->offset <= UINT64_MAX - e->length;
}

static void encode_hdr(uint8_t *h, const struct journal_entry *e)
{
	memset(h, 0, JOURNAL_HDR_SIZE);
	put_le(h, JOURNAL_MAGIC, 4);
	put_le(h + 4, JOURNAL_VERSION, 2);
	h[6] = e->type;
	put_le(h + 8, e->length, 4);
	put_le(h + 12, e->payload_len, 4);
	put_le(h + 16, e->seq, 8);
	put_le(h + 24, (uint64_t)e->time_ms, 8);
	put_le(h + 32, e->offset, 8);
}

static uint32_t entry_crc(uint8_t *hdr, const void *payload, uint32_t plen)
{
	uint8_t saved[4];
	uint32_t crc;

	memcpy(saved, hdr + 40, 4);
	memset(hdr + 40, 0, 4);
	crc = rf_crc32c(0, hdr, JOURNAL_HDR_SIZE);
	crc = rf_crc32c(crc, payload, plen);
	memcpy(hdr + 40, saved, 4);
	return crc;
}

/*
 * Scan one segment: index its valid entries. Returns 0 when the segment
 * ended cleanly, 1 when it was cut at a bad entry (the rest is dropped).
 */
static int scan_segment(struct journal *j, uint32_t si, const char *path)
{
	struct journal_seg *s = &j->segs[si];
	struct stat st;
	uint64_t pos = 0;
	int rc, cut = 0;

	if (fstat(s->fd, &st))
		return -errno;
	while (pos < (uint64_t)st.st_size) {
		uint8_t hdr[JOURNAL_HDR_SIZE];
		struct journal_entry e;
		const char *bad = NULL;

		if ((uint64_t)st.st_size - pos < JOURNAL_HDR_SIZE) {
			bad = "a partial header";
		} else if ((rc = image_pread_all(s->fd, hdr, sizeof(hdr), pos))) {
			return rc;
		} else if (!hdr_ok(hdr, &e)) {
			bad = "a bad header";
		} else if ((uint64_t)st.st_size - pos - JOURNAL_HDR_SIZE < e.payload_len) {
			bad = "a partial payload";
		} else {
			rc = reserve_buf(j, e.payload_len);
			if (!rc)
				rc = image_pread_all(s->fd, j->buf, e.payload_len,
				                     pos + JOURNAL_HDR_SIZE);
			if (rc)
				return rc;
			if (entry_crc(hdr, j->buf, e.payload_len) != (uint32_t)get_le(hdr + 40, 4))
				bad = "a CRC mismatch";
			else if (j->have_last && e.seq <= j->last_seq)
				bad = "a sequence that goes backwards";
		}
		if (bad) {
			RF_WARN(SUBSYS,
			        "%s: %s at byte %" PRIu64 " of %lld: the segment is cut there "
			        "(a torn tail)",
			        path, bad, pos, (long long)st.st_size);
			if (ftruncate(s->fd, (off_t)pos))
				return -errno;
			if (fdatasync(s->fd))
				return -errno;
			cut = 1;
			break;
		}
		e.seg = si;
		e.foff = pos + JOURNAL_HDR_SIZE;
		pos += entry_bytes(&e);
		j->have_last = true;
		j->last_seq = e.seq;
		j->last_time_ms = e.time_ms;
		if (j->have_applied && e.seq <= j->applied_seq)
			continue; /* in the image already */
		if (grow((void **)&j->ents, &j->cap, j->n + 1, sizeof(*j->ents)))
			return -ENOMEM;
		j->ents[j->n++] = e;
		j->bytes += entry_bytes(&e);
		s->live++;
	}
	s->size = pos;
	return cut;
}

static int open_segment(struct journal *j, uint64_t first_seq, bool create)
{
	char path[PATH_MAX];
	struct journal_seg *s;
	int fd, rc;

	rc = seg_path(j, first_seq, path, sizeof(path));
	if (rc)
		return rc;
	rc = grow((void **)&j->segs, &j->segcap, j->nsegs + 1, sizeof(*j->segs));
	if (rc)
		return rc;
	fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0), 0644);
	if (fd < 0)
		return -errno;
	s = &j->segs[j->nsegs++];
	memset(s, 0, sizeof(*s));
	s->first_seq = first_seq;
	s->fd = fd;
	if (create)
		j->need_dirsync = true;
	return 0;
}

/* Close and delete segment 0 (every entry in it applied). */
static int remove_first_segment(struct journal *j)
{
	char path[PATH_MAX];
	int rc;

	rc = seg_path(j, j->segs[0].first_seq, path, sizeof(path));
	if (rc)
		return rc;
	close(j->segs[0].fd);
	if (unlink(path) && errno != ENOENT)
		RF_WARN(SUBSYS, "cannot delete %s: %s", path, strerror(errno));
	memmove(j->segs, j->segs + 1, (j->nsegs - 1) * sizeof(*j->segs));
	j->nsegs--;
	for (size_t i = j->head; i < j->n; i++)
		j->ents[i].seg--;
	j->need_dirsync = true;
	return 0;
}

int journal_open(struct journal *j, const char *dir, const struct journal_params *p)
{
	uint64_t *firsts = NULL;
	size_t nf = 0, fcap = 0;
	struct dirent *de;
	DIR *d = NULL;
	int rc;

	memset(j, 0, sizeof(*j));
	if ((size_t)snprintf(j->dir, sizeof(j->dir), "%s", dir) >= sizeof(j->dir))
		return -ENAMETOOLONG;
	j->p = *p;
	if (!j->p.segment_bytes)
		j->p.segment_bytes = JOURNAL_SEGMENT_SIZE;
	rc = mkdir_p(dir);
	if (rc)
		goto fail;
	load_applied(j);
	d = opendir(dir);
	if (!d) {
		rc = -errno;
		goto fail;
	}
	while ((de = readdir(d))) {
		char *end;
		uint64_t v;

		if (strlen(de->d_name) != 20 || strcmp(de->d_name + 16, ".seg") != 0)
			continue;
		errno = 0;
		v = strtoull(de->d_name, &end, 16);
		if (errno || end != de->d_name + 16)
			continue;
		rc = grow((void **)&firsts, &fcap, nf + 1, sizeof(*firsts));
		if (rc)
			goto fail;
		firsts[nf++] = v;
	}
	closedir(d);
	d = NULL;
	if (nf > 1)
		qsort(firsts, nf, sizeof(*firsts), cmp_u64);
	for (size_t i = 0; i < nf; i++) {
		char path[PATH_MAX];
		int cut;

		rc = open_segment(j, firsts[i], false);
		if (rc)
			goto fail;
		seg_path(j, firsts[i], path, sizeof(path));
		cut = scan_segment(j, (uint32_t)(j->nsegs - 1), path);
		if (cut < 0) {
			rc = cut;
			goto fail;
		}
		if (cut && i + 1 < nf) {
			RF_ERR(SUBSYS,
			       "%s: %zu later segment(s) after a bad entry in the middle of the "
			       "journal are dropped",
			       dir, nf - i - 1);
			for (size_t k = i + 1; k < nf; k++) {
				seg_path(j, firsts[k], path, sizeof(path));
				unlink(path);
			}
			break;
		}
	}
	/* Drop leading segments that hold nothing retained (the last one stays). */
	while (j->nsegs > 1 && j->segs[0].live == 0) {
		rc = remove_first_segment(j);
		if (rc)
			goto fail;
	}
	if (!j->have_applied && j->n > 0 && j->ents[0].seq > 0) {
		/* Never applied: the image is the point just before the first entry. */
		j->applied_seq = j->ents[0].seq - 1;
		j->applied_time_ms = 0;
		j->have_applied = true;
	}
	free(firsts);
	RF_INFO(SUBSYS,
	        "%s: %zu entries (%" PRIu64 " bytes) in %zu segment(s), image at seq %" PRIu64, dir,
	        j->n - j->head, j->bytes, j->nsegs, j->applied_seq);
	return 0;
fail:
	if (d)
		closedir(d);
	free(firsts);
	journal_close(j);
	return rc;
}

void journal_close(struct journal *j)
{
	for (size_t i = 0; i < j->nsegs; i++)
		if (j->segs[i].fd >= 0)
			close(j->segs[i].fd);
	free(j->segs);
	free(j->ents);
	free(j->buf);
	j->segs = NULL;
	j->ents = NULL;
	j->buf = NULL;
	j->nsegs = j->segcap = j->n = j->head = j->cap = j->bufcap = 0;
}

/* ---- append ------------------------------------------------------------ */

int journal_append(struct journal *j, uint64_t seq, int64_t time_ms, uint8_t type, uint64_t offset,
                   uint32_t length, const void *payload, uint32_t payload_len)
{
	uint8_t hdr[JOURNAL_HDR_SIZE];
	struct journal_entry e = {.seq = seq,
	                          .time_ms = time_ms,
	                          .offset = offset,
	                          .length = length,
	                          .payload_len = payload_len,
	                          .type = type};
	struct journal_seg *s;
	int rc;

	if (j->failed)
		return -EIO;
	if (j->have_last && seq <= j->last_seq)
		return 1;
	encode_hdr(hdr, &e);
	if (!hdr_ok(hdr, &e))
		return -EINVAL;
	if (j->nsegs == 0 || j->segs[j->nsegs - 1].size >= j->p.segment_bytes) {
		rc = open_segment(j, seq, true);
		if (rc) {
			RF_ERR(SUBSYS, "%s: cannot create a segment: %s", j->dir, strerror(-rc));
			return rc;
		}
	}
	s = &j->segs[j->nsegs - 1];
	put_le(hdr + 40, entry_crc(hdr, payload, payload_len), 4);
	rc = grow((void **)&j->ents, &j->cap, j->n + 1, sizeof(*j->ents));
	if (!rc)
		rc = image_pwrite_all(s->fd, hdr, sizeof(hdr), s->size);
	if (!rc && payload_len)
		rc = image_pwrite_all(s->fd, payload, payload_len, s->size + JOURNAL_HDR_SIZE);
	if (rc) {
		/* Whatever reached the file past s->size is a torn tail. */
		RF_ERR(SUBSYS, "%s: cannot append seq %" PRIu64 ": %s", j->dir, seq, strerror(-rc));
		return rc;
	}
	e.seg = (uint32_t)(j->nsegs - 1);
	e.foff = s->size + JOURNAL_HDR_SIZE;
	s->size += entry_bytes(&e);
	s->live++;
	j->ents[j->n++] = e;
	j->bytes += entry_bytes(&e);
	if (!j->have_applied && seq > 0) {
		j->have_applied = true;
		j->applied_seq = seq - 1;
		j->applied_time_ms = 0;
	}
	j->have_last = true;
	j->last_seq = seq;
	j->last_time_ms = time_ms;
	j->need_sync = true;
	return 0;
}

int journal_sync(struct journal *j)
{
	int rc;

	if (j->failed)
		return -EIO;
	if (j->need_sync && j->nsegs) {
		/* Only the newest segment is appended to, but a roll leaves the
		 * one before it possibly unsynced: sync both. */
		for (size_t i = j->nsegs >= 2 ? j->nsegs - 2 : 0; i < j->nsegs; i++) {
			if (fdatasync(j->segs[i].fd)) {
				rc = -errno;
				j->failed = true;
				RF_ERR(SUBSYS,
				       "%s: fdatasync of a journal segment failed: %s; the journal "
				       "takes no more records until rephubd restarts (nothing "
				       "published durable is lost: the ring keeps the rest)",
				       j->dir, strerror(-rc));
				return rc;
			}
		}
	}
	if (j->need_dirsync) {
		rc = image_fsync_dir(j->dir);
		if (rc)
			return rc;
		j->need_dirsync = false;
	}
	j->need_sync = false;
	return 0;
}

/* ---- retire ------------------------------------------------------------ */

static int load_payload(struct journal *j, const struct journal_entry *e)
{
	int rc = reserve_buf(j, e->payload_len ? e->payload_len : 1);

	if (rc)
		return rc;
	return image_pread_all(j->segs[e->seg].fd, j->buf, e->payload_len, e->foff);
}

static bool due(const struct journal *j, const struct journal_entry *e, int64_t now_ms)
{
	if (j->bytes > j->p.retain_bytes)
		return true;
	return now_ms - e->time_ms >= (int64_t)j->p.retain_ms;
}

int journal_retire(struct journal *j, int img_fd, int64_t now_ms, bool force, uint64_t force_upto,
                   uint64_t max_bytes)
{
	uint64_t done_bytes = 0, old_head = j->head, old_applied = j->applied_seq;
	int64_t old_time = j->applied_time_ms;
	bool old_have = j->have_applied;
	int n = 0, rc = 0;

	if (j->paused && !force)
		return 0;
	/* Sync our own appends first: never apply what is not durable here. */
	rc = journal_sync(j);
	if (rc)
		return rc;
	while (j->head < j->n && done_bytes < max_bytes) {
		struct journal_entry *e = &j->ents[j->head];

		if (force ? e->seq > force_upto : !due(j, e, now_ms))
			break;
		rc = load_payload(j, e);
		if (!rc)
			rc = image_apply(img_fd, e->type, e->offset, e->length, j->buf);
		if (rc) {
			RF_ERR(SUBSYS, "%s: cannot apply seq %" PRIu64 " to the image: %s", j->dir,
			       e->seq, strerror(-rc));
			break;
		}
		done_bytes += e->payload_len + JOURNAL_HDR_SIZE;
		j->bytes -= entry_bytes(e);
		j->segs[e->seg].live--;
		j->applied_seq = e->seq;
		j->applied_time_ms = e->time_ms;
		j->have_applied = true;
		j->head++;
		n++;
	}
	if (n == 0)
		return rc;
	if (fdatasync(img_fd)) {
		int err = -errno;

		/* The kernel may have dropped the pages it failed to write and
		 * report success next time: take the entries back, so the next
		 * retire writes them again instead of skipping them. */
		RF_ERR(SUBSYS,
		       "%s: fdatasync of the image failed: %s; the entries stay in the journal",
		       j->dir, strerror(-err));
		while (j->head > old_head) {
			struct journal_entry *e = &j->ents[--j->head];

			j->bytes += entry_bytes(e);
			j->segs[e->seg].live++;
		}
		j->applied_seq = old_applied;
		j->applied_time_ms = old_time;
		j->have_applied = old_have;
		return err;
	}
	rc = save_applied(j);
	if (rc)
		return rc;
	while (j->nsegs > 0 && j->segs[0].live == 0 && (j->nsegs > 1 || j->head == j->n)) {
		rc = remove_first_segment(j);
		if (rc)
			return rc;
	}
	if (j->head == j->n) {
		j->head = j->n = 0;
	} else if (j->head > 4096 && j->head * 2 > j->n) {
		memmove(j->ents, j->ents + j->head, (j->n - j->head) * sizeof(*j->ents));
		j->n -= j->head;
		j->head = 0;
	}
	return n;
}

int journal_reset(struct journal *j)
{
	char path[PATH_MAX];

	if (j->n > j->head)
		return -EBUSY;
	if ((size_t)snprintf(path, sizeof(path), "%s/applied", j->dir) >= sizeof(path))
		return -ENAMETOOLONG;
	if (unlink(path) && errno != ENOENT)
		return -errno;
	while (j->nsegs > 0) {
		int rc = remove_first_segment(j);

		if (rc)
			return rc;
	}
	j->have_applied = j->have_last = false;
	j->applied_seq = j->last_seq = 0;
	j->applied_time_ms = j->last_time_ms = 0;
	j->head = j->n = 0;
	return image_fsync_dir(j->dir);
}

int journal_drop_after(struct journal *j, uint64_t seq)
{
	size_t keep = j->n;
	int rc;

	while (keep > j->head && j->ents[keep - 1].seq > seq)
		keep--;
	if (keep == j->n)
		return 0;
	for (size_t i = keep; i < j->n; i++) {
		j->bytes -= entry_bytes(&j->ents[i]);
		j->segs[j->ents[i].seg].live--;
	}
	/* Cut the segment of the first dropped entry; delete the ones after it. */
	{
		const struct journal_entry *first = &j->ents[keep];
		uint32_t si = first->seg;
		char path[PATH_MAX];

		while (j->nsegs > si + 1) {
			struct journal_seg *s = &j->segs[j->nsegs - 1];

			seg_path(j, s->first_seq, path, sizeof(path));
			close(s->fd);
			unlink(path);
			j->nsegs--;
		}
		j->segs[si].size = first->foff - JOURNAL_HDR_SIZE;
		if (ftruncate(j->segs[si].fd, (off_t)j->segs[si].size) || fdatasync(j->segs[si].fd))
			return -errno;
	}
	j->n = keep;
	rc = image_fsync_dir(j->dir);
	if (rc)
		return rc;
	if (keep > j->head) {
		j->last_seq = j->ents[keep - 1].seq;
		j->last_time_ms = j->ents[keep - 1].time_ms;
	} else {
		j->last_seq = j->applied_seq;
		j->last_time_ms = j->applied_time_ms;
	}
	return 0;
}

/* ---- views ------------------------------------------------------------- */

int journal_overlay(struct journal *j, uint64_t seq, uint64_t offset, void *buf, uint32_t len)
{
	uint8_t *out = buf;
	int rc;

	if (j->have_applied && seq < j->applied_seq)
		return -ERANGE;
	for (size_t i = j->head; i < j->n; i++) {
		const struct journal_entry *e = &j->ents[i];
		uint64_t lo, hi;

		if (e->seq > seq)
			break;
		lo = e->offset > offset ? e->offset : offset;
		hi = e->offset + e->length < offset + len ? e->offset + e->length : offset + len;
		if (lo >= hi)
			continue;
		if (e->type == RF_RING_REC_DATA) {
			rc = image_pread_all(j->segs[e->seg].fd, out + (lo - offset), hi - lo,
			                     e->foff + (lo - e->offset));
			if (rc)
				return rc;
		} else {
			memset(out + (lo - offset), 0, hi - lo);
		}
	}
	return 0;
}

int journal_read(struct journal *j, int img_fd, uint64_t seq, uint64_t offset, void *buf,
                 uint32_t len)
{
	int rc;

	if (j->have_applied && seq < j->applied_seq)
		return -ERANGE;
	rc = image_pread_all(img_fd, buf, len, offset);
	return rc ? rc : journal_overlay(j, seq, offset, buf, len);
}

int journal_point_at(const struct journal *j, int64_t time_ms, uint64_t *seq)
{
	if (j->have_applied && time_ms < j->applied_time_ms)
		return -ERANGE;
	/* Nothing applied yet: the image's time is unknown, only entries have one. */
	if (j->applied_time_ms == 0 && (j->n == j->head || time_ms < j->ents[j->head].time_ms))
		return -ERANGE;
	*seq = j->applied_seq;
	for (size_t i = j->head; i < j->n && j->ents[i].time_ms <= time_ms; i++)
		*seq = j->ents[i].seq;
	return 0;
}

void journal_get_info(const struct journal *j, struct journal_info *info)
{
	memset(info, 0, sizeof(*info));
	info->have_oldest = j->have_applied;
	info->oldest_seq = j->applied_seq;
	info->oldest_time_ms = j->applied_time_ms;
	info->newest_seq = j->n > j->head ? j->ents[j->n - 1].seq : j->applied_seq;
	info->newest_time_ms = j->n > j->head ? j->ents[j->n - 1].time_ms : j->applied_time_ms;
	info->entries = j->n - j->head;
	info->bytes = j->bytes;
	info->segments = j->nsegs;
	info->paused = j->paused;
}
