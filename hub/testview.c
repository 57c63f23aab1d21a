/* SPDX-License-Identifier: MIT */
/*
 * A failover test's view of a volume, served over redirected IO (IO_OPEN,
 * IO_READ, IO_WRITE, IO_FLUSH from the nbdkit plugin in redirect mode).
 *
 * Reads come from the scratch overlay where the test wrote, else from the
 * journal up to the test's point over the recovery image (journal_read).
 * Writes go to the scratch only: a sparse file state_dir/tests/NAME.scratch
 * and a bitmap of 4 KiB blocks in memory; a write that covers part of a
 * block not yet in the scratch first copies that block from the view. The
 * recovery image and the journal are never written; the journal is not
 * applied while the test runs (journal->paused). Stopping discards the
 * scratch. The scratch is not durable: a hub restart ends the test.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hub.h"
#include "image_io.h"
#include "journal.h"
#include "repfabric/log.h"

#define SUBSYS "test"
#define BLK    4096u

struct test_view {
	uint64_t seq;
	int64_t time_ms;
	int fd; /* the scratch file */
	char path[PATH_MAX];
	uint64_t nblocks;
	uint8_t *map; /* bit per block: in the scratch */
	uint8_t *buf; /* RF_CTL_MAX_DATA + 2 blocks */
	uint64_t reads, writes, read_bytes, write_bytes;
};

static bool in_scratch(const struct test_view *t, uint64_t b)
{
	return t->map[b / 8] & (1u << (b % 8));
}

uint64_t testview_seq(const struct volume *v)
{
	return v->test ? v->test->seq : 0;
}

int testview_start(struct volume *v, uint64_t seq, int64_t time_ms, char *why, size_t whylen)
{
	struct test_view *t;
	char dir[PATH_MAX];
	int rc;

	t = calloc(1, sizeof(*t));
	if (!t)
		goto nomem;
	t->fd = -1;
	t->seq = seq;
	t->time_ms = time_ms;
	t->nblocks = (v->size + BLK - 1) / BLK;
	t->map = calloc((size_t)(t->nblocks + 7) / 8, 1);
	t->buf = malloc(RF_CTL_MAX_DATA + 2 * BLK);
	if (!t->map || !t->buf)
		goto nomem;
	if ((size_t)snprintf(dir, sizeof(dir), "%s/tests", v->hub->cfg->state_dir) >= sizeof(dir) ||
	    (size_t)snprintf(t->path, sizeof(t->path), "%s/%s.scratch", dir, v->cfg->name) >=
	        sizeof(t->path)) {
		rc = -ENAMETOOLONG;
		snprintf(why, whylen, "the scratch path is too long");
		goto fail;
	}
	if (mkdir(dir, 0750) && errno != EEXIST) {
		rc = -errno;
		snprintf(why, whylen, "cannot create %s: %s", dir, strerror(-rc));
		goto fail;
	}
	t->fd = open(t->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (t->fd < 0 || ftruncate(t->fd, (off_t)v->size)) {
		rc = -errno;
		snprintf(why, whylen, "cannot create the scratch %s: %s", t->path, strerror(-rc));
		goto fail;
	}
	v->test = t;
	v->jr->paused = true;
	return 0;
nomem:
	rc = -ENOMEM;
	snprintf(why, whylen, "out of memory for the test's scratch map");
fail:
	if (t) {
		if (t->fd >= 0) {
			close(t->fd);
			unlink(t->path);
		}
		free(t->map);
		free(t->buf);
		free(t);
	}
	return rc;
}

void testview_stop(struct volume *v)
{
	struct test_view *t = v->test;

	if (!t)
		return;
	RF_INFO(SUBSYS,
	        "volume %s: test at seq %" PRIu64 " ends: %" PRIu64 " reads (%" PRIu64
	        " bytes), %" PRIu64 " writes (%" PRIu64 " bytes) discarded",
	        v->cfg->name, t->seq, t->reads, t->read_bytes, t->writes, t->write_bytes);
	close(t->fd);
	unlink(t->path);
	free(t->map);
	free(t->buf);
	free(t);
	v->test = NULL;
	if (v->jr)
		v->jr->paused = false;
}

/* Read the view: runs of blocks from the scratch, the rest from the journal. */
static int view_read(struct volume *v, uint64_t off, uint32_t len, uint8_t *out)
{
	struct test_view *t = v->test;
	uint64_t pos = off, end = off + len;

	while (pos < end) {
		uint64_t b = pos / BLK;
		bool s = in_scratch(t, b);
		uint64_t run_end = (b + 1) * BLK;
		int rc;

		while (run_end < end && in_scratch(t, run_end / BLK) == s)
			run_end += BLK;
		if (run_end > end)
			run_end = end;
		if (s)
			rc = image_pread_all(t->fd, out + (pos - off), run_end - pos, pos);
		else
			rc = journal_read(v->jr, v->fd, t->seq, pos, out + (pos - off),
			                  (uint32_t)(run_end - pos));
		if (rc)
			return rc;
		pos = run_end;
	}
	return 0;
}

/* A block only partly written: bring it into the scratch first. */
static int fill_block(struct volume *v, uint64_t b)
{
	struct test_view *t = v->test;
	uint64_t off = b * BLK;
	uint32_t n = (uint32_t)(v->size - off < BLK ? v->size - off : BLK);
	uint8_t blk[BLK];
	int rc;

	if (in_scratch(t, b))
		return 0;
	rc = journal_read(v->jr, v->fd, t->seq, off, blk, n);
	if (!rc)
		rc = image_pwrite_all(t->fd, blk, n, off);
	return rc;
}

static int view_write(struct volume *v, uint64_t off, uint32_t len, const uint8_t *data)
{
	struct test_view *t = v->test;
	uint64_t first = off / BLK, last = (off + len - 1) / BLK;
	int rc;

	if (off % BLK) {
		rc = fill_block(v, first);
		if (rc)
			return rc;
	}
	if ((off + len) % BLK && (off + len) < v->size) {
		rc = fill_block(v, last);
		if (rc)
			return rc;
	}
	rc = image_pwrite_all(t->fd, data, len, off);
	if (rc)
		return rc;
	for (uint64_t b = first; b <= last; b++)
		t->map[b / 8] |= (uint8_t)(1u << (b % 8));
	return 0;
}

static int io_open(struct ctl_conn *c, uint64_t req_id, const struct rf_ctl_io_open *m,
                   struct ctl_reply *r)
{
	struct rf_ctl_io_open_ok ok;
	struct volume *v;
	uint8_t buf[32];
	int n;

	v = volume_find(c->hub, m->name);
	if (!v)
		return ctl_fail(r, ENOENT, "no volume named '%s' in the hub's configuration",
		                m->name);
	if (!v->test)
		return ctl_fail(r, ENOENT,
		                "no failover test is running on %s (repctl test-failover start %s)",
		                m->name, m->name);
	ok.handle = v->handle;
	ok.size = v->size;
	ok.seq = v->test->seq;
	n = rf_ctl_enc_io_open_ok(buf, sizeof(buf), &ok);
	if (n > 0)
		ctl_send(c, RF_CTL_IO_OPEN_OK, req_id, buf, (uint32_t)n);
	RF_INFO(SUBSYS, "volume %s: test view opened by %s", m->name, c->peer);
	return 0;
}

int testview_io(struct ctl_conn *c, const struct ctl_request *rq, struct ctl_reply *r)
{
	const struct rf_ctl_io_req m = rq->m->io_req;
	uint16_t type = rq->type;
	uint64_t req_id = rq->req_id;
	struct volume *v;
	int rc;

	if (type == RF_CTL_IO_OPEN)
		return io_open(c, req_id, &rq->m->io_open, r);
	v = NULL;
	for (size_t i = 0; i < c->hub->nvols && !v; i++)
		if (c->hub->vols[i].handle == m.handle)
			v = &c->hub->vols[i];
	if (!v || !v->test)
		return ctl_fail(r, ESTALE, "handle %u: no failover test runs on it (stopped?)",
		                m.handle);
	if (type != RF_CTL_IO_FLUSH && (m.offset > v->size || m.length > v->size - m.offset))
		return ctl_fail(r, EINVAL,
		                "range %" PRIu64 "+%u is outside volume %s (%" PRIu64 " bytes)",
		                m.offset, m.length, v->cfg->name, v->size);
	switch (type) {
	case RF_CTL_IO_READ:
		rc = view_read(v, m.offset, m.length, v->test->buf);
		if (!rc) {
			v->test->reads++;
			v->test->read_bytes += m.length;
			ctl_send(c, RF_CTL_IO_DATA, req_id, v->test->buf, m.length);
		}
		break;
	case RF_CTL_IO_WRITE:
		rc = view_write(v, m.offset, m.length, m.data);
		if (!rc) {
			v->test->writes++;
			v->test->write_bytes += m.length;
			ctl_send(c, RF_CTL_IO_DONE, req_id, NULL, 0);
		}
		break;
	default:
		rc = 0; /* the scratch is thrown away: nothing to make durable */
		ctl_send(c, RF_CTL_IO_DONE, req_id, NULL, 0);
		break;
	}
	if (rc) {
		RF_ERR(SUBSYS, "volume %s: test IO at %" PRIu64 "+%u failed: %s", v->cfg->name,
		       m.offset, m.length, strerror(-rc));
		return ctl_fail(r, -rc, "test view IO failed: %s", strerror(-rc));
	}
	return 0;
}
