/* SPDX-License-Identifier: MIT */
/*
 * Storage layer: apply a record to a volume's journal or its image, and
 * the failover test's read chain scratch -> journal -> image (apply.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apply.h"
#include "image_io.h"
#include "journal.h"
#include "repfabric/ctl.h"

#define BLK 4096u

int apply_record(int img_fd, struct journal *jr, const struct rf_ring_record *r, int64_t wall_ms)
{
	int rc;

	if (!jr)
		return image_apply(img_fd, r->type, r->offset, r->length, r->payload);
	rc = journal_append(jr, r->seq, wall_ms, (uint8_t)r->type, r->offset, r->length, r->payload,
	                    r->payload_len);
	return rc < 0 ? rc : 0;
}

int apply_commit(int img_fd, struct journal *jr)
{
	if (jr)
		return journal_sync(jr);
	return fdatasync(img_fd) ? -errno : 0;
}

/* ---- links --------------------------------------------------------------- */

static int image_link_pread(struct apply_link *l, void *buf, uint32_t len, uint64_t off)
{
	struct apply_image *im = (struct apply_image *)l;

	return image_pread_all(im->fd, buf, len, off);
}

static const struct apply_link_ops image_ops = {.name = "image", .pread = image_link_pread};

static int journal_link_pread(struct apply_link *l, void *buf, uint32_t len, uint64_t off)
{
	struct apply_journal *j = (struct apply_journal *)l;
	int rc = l->next->ops->pread(l->next, buf, len, off);

	return rc ? rc : journal_overlay(j->jr, j->seq, off, buf, len);
}

static const struct apply_link_ops journal_ops = {.name = "journal", .pread = journal_link_pread};

static bool in_scratch(const struct apply_scratch *s, uint64_t b)
{
	return s->map[b / 8] & (1u << (b % 8));
}

/* Runs of blocks from the scratch, the rest from the link below. */
static int scratch_link_pread(struct apply_link *l, void *buf, uint32_t len, uint64_t off)
{
	struct apply_scratch *s = (struct apply_scratch *)l;
	uint64_t pos = off, end = off + len;
	uint8_t *out = buf;

	while (pos < end) {
		uint64_t b = pos / BLK;
		bool in = in_scratch(s, b);
		uint64_t run_end = (b + 1) * BLK;
		int rc;

		while (run_end < end && in_scratch(s, run_end / BLK) == in)
			run_end += BLK;
		if (run_end > end)
			run_end = end;
		if (in)
			rc = image_pread_all(s->fd, out + (pos - off), run_end - pos, pos);
		else
			rc = l->next->ops->pread(l->next, out + (pos - off),
			                         (uint32_t)(run_end - pos), pos);
		if (rc)
			return rc;
		pos = run_end;
	}
	return 0;
}

static const struct apply_link_ops scratch_ops = {.name = "scratch", .pread = scratch_link_pread};

/* A block only partly written: bring it into the scratch first. */
static int fill_block(struct apply_scratch *s, uint64_t b)
{
	uint64_t off = b * BLK;
	uint32_t n = (uint32_t)(s->size - off < BLK ? s->size - off : BLK);
	uint8_t blk[BLK];
	int rc;

	if (in_scratch(s, b))
		return 0;
	rc = s->link.next->ops->pread(s->link.next, blk, n, off);
	if (!rc)
		rc = image_pwrite_all(s->fd, blk, n, off);
	return rc;
}

static int scratch_write(struct apply_scratch *s, uint64_t off, uint32_t len, const void *data)
{
	uint64_t first = off / BLK, last = (off + len - 1) / BLK;
	int rc;

	if (off % BLK) {
		rc = fill_block(s, first);
		if (rc)
			return rc;
	}
	if ((off + len) % BLK && (off + len) < s->size) {
		rc = fill_block(s, last);
		if (rc)
			return rc;
	}
	rc = image_pwrite_all(s->fd, data, len, off);
	if (rc)
		return rc;
	for (uint64_t b = first; b <= last; b++)
		s->map[b / 8] |= (uint8_t)(1u << (b % 8));
	return 0;
}

/* ---- the view ------------------------------------------------------------ */

int apply_view_open(struct test_view **out, const char *path, int img_fd, struct journal *jr,
                    uint64_t size, uint64_t seq, int64_t time_ms, char *why, size_t whylen)
{
	struct test_view *t;
	struct apply_scratch *s;
	int rc;

	*out = NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		goto nomem;
	s = &t->scratch;
	s->fd = -1;
	t->seq = seq;
	t->time_ms = time_ms;
	t->image = (struct apply_image){.link = {.ops = &image_ops}, .fd = img_fd};
	t->journal = (struct apply_journal){
	    .link = {.ops = &journal_ops, .next = &t->image.link}, .jr = jr, .seq = seq};
	s->link = (struct apply_link){.ops = &scratch_ops, .next = &t->journal.link};
	s->size = size;
	s->nblocks = (size + BLK - 1) / BLK;
	s->map = calloc((size_t)(s->nblocks + 7) / 8, 1);
	t->buf = malloc(RF_CTL_MAX_DATA + 2 * BLK);
	if (!s->map || !t->buf)
		goto nomem;
	if ((size_t)snprintf(s->path, sizeof(s->path), "%s", path) >= sizeof(s->path)) {
		rc = -ENAMETOOLONG;
		snprintf(why, whylen, "the scratch path is too long");
		goto fail;
	}
	s->fd = open(s->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (s->fd < 0 || ftruncate(s->fd, (off_t)size)) {
		rc = -errno;
		snprintf(why, whylen, "cannot create the scratch %s: %s", s->path, strerror(-rc));
		goto fail;
	}
	*out = t;
	return 0;
nomem:
	rc = -ENOMEM;
	snprintf(why, whylen, "out of memory for the test's scratch map");
fail:
	apply_view_close(&t);
	return rc;
}

void apply_view_close(struct test_view **tp)
{
	struct test_view *t = *tp;

	if (!t)
		return;
	if (t->scratch.fd >= 0) {
		close(t->scratch.fd);
		unlink(t->scratch.path);
	}
	free(t->scratch.map);
	free(t->buf);
	free(t);
	*tp = NULL;
}

int apply_view_read(struct test_view *t, uint64_t off, uint32_t len, void *out)
{
	return t->scratch.link.ops->pread(&t->scratch.link, out, len, off);
}

int apply_view_write(struct test_view *t, uint64_t off, uint32_t len, const void *data)
{
	return scratch_write(&t->scratch, off, len, data);
}
