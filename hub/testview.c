/* SPDX-License-Identifier: MIT */
/*
 * Protocol layer: redirected IO on a failover test's view (IO_OPEN,
 * IO_READ, IO_WRITE, IO_FLUSH from the nbdkit plugin in redirect mode).
 *
 * The view is apply.c's read chain: reads come from the scratch overlay
 * where the test wrote, else from the journal up to the test's point over
 * the recovery image. Writes go to the scratch only (a sparse file
 * state_dir/tests/NAME.scratch and a bitmap of 4 KiB blocks in memory).
 * The recovery image and the journal are never written; the journal is
 * not applied while the test runs (journal->paused). Stopping discards
 * the scratch (volstate.c starts and stops views). The scratch is not
 * durable: a hub restart ends the test.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "apply.h"
#include "ctl_server.h"
#include "handlers.h"
#include "repfabric/log.h"
#include "volstate.h"

#define SUBSYS "test"

static int view_read(struct volume *v, uint64_t off, uint32_t len, uint8_t *out)
{
	return apply_view_read(v->test, off, len, out);
}

static int view_write(struct volume *v, uint64_t off, uint32_t len, const uint8_t *data)
{
	return apply_view_write(v->test, off, len, data);
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
