/* SPDX-License-Identifier: MIT */
/*
 * State layer: the hub's record of an agent — find, create, map its ring,
 * publish its durable position (agent.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "repfabric/log.h"

#define SUBSYS "session"

struct agent *agent_find(struct hub *h, const char *id)
{
	for (struct agent *a = h->agents; a; a = a->next)
		if (strcmp(a->id, id) == 0)
			return a;
	return NULL;
}

struct agent *agent_get(struct hub *h, const char *id)
{
	struct agent *a = agent_find(h, id), **tail;

	if (a)
		return a;
	if (!rf_ctl_name_ok(id))
		return NULL;
	a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->hub = h;
	strcpy(a->id, id);
	if ((size_t)snprintf(a->ring_path, sizeof(a->ring_path), "%s/%s.ring", h->rings_dir, id) >=
	    sizeof(a->ring_path)) {
		free(a);
		return NULL;
	}
	for (tail = &h->agents; *tail; tail = &(*tail)->next)
		;
	*tail = a;
	return a;
}

bool agent_live(const struct agent *a)
{
	return a && a->conn && !a->conn->dead;
}

void agent_set_error(struct agent *a, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(a->last_error, sizeof(a->last_error), fmt, ap);
	va_end(ap);
}

int agent_ring_open(struct agent *a, bool create)
{
	int rc;

	if (a->ring)
		return 0;
	if (create) {
		rc = rf_ring_create(&a->ring, a->ring_path, a->hub->cfg->ring_size);
		if (!rc)
			RF_INFO(SUBSYS, "agent %s: created ring %s (%" PRIu64 " bytes of data)",
			        a->id, a->ring_path, a->hub->cfg->ring_size);
	} else {
		rc = access(a->ring_path, F_OK) == 0 ? rf_ring_open(&a->ring, a->ring_path)
		                                     : -ENOENT;
		if (!rc) {
			RF_INFO(SUBSYS, "agent %s: opened ring %s (%" PRIu64 " bytes of data)",
			        a->id, a->ring_path, rf_ring_data_size(a->ring));
			if (rf_ring_data_size(a->ring) != a->hub->cfg->ring_size)
				RF_INFO(SUBSYS,
				        "agent %s: the ring keeps its size; ring_size applies to "
				        "new rings",
				        a->id);
		}
	}
	if (rc)
		return rc;
	a->ring_broken = false;
	rf_ring_head(a->ring, &a->durable_pos, &a->durable_seq);
	return 0;
}

int agent_ring_failed(struct agent *a, int rc)
{
	a->ring_broken = true;
	agent_set_error(a, "cannot open ring %s: %s", a->ring_path, strerror(-rc));
	RF_ERR(SUBSYS, "agent %s: cannot open or create ring %s: %s%s", a->id, a->ring_path,
	       strerror(-rc),
	       rc == -EBADMSG ? " (the header is damaged; move the file aside to start "
	                        "over with a full sync)"
	                      : "");
	return rc;
}

void agent_publish(struct agent *a)
{
	struct rf_fab_position pos;

	if (!a->peer)
		return;
	pos.durable_pos = pos.head_pos = a->durable_pos;
	pos.durable_seq = pos.head_seq = a->durable_seq;
	rf_fab_publish(a->peer, &pos); /* -ENOTCONN: a DETACHED event follows */
}
