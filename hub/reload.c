/* SPDX-License-Identifier: MIT */
/*
 * SIGHUP: read the configuration file again and apply what can change
 * under running sessions (docs/HUB.md, "Signals"):
 *
 *   volumes       added, removed (unless busy), agent bindings
 *   psk_file      keys reloaded; a connection whose key changed or went is closed
 *   sync_rate, resync_rate, log_level (unless --log-level was given),
 *   handshake_timeout, max_pending, poll_us
 *
 * Everything the running hub is built on (control, data, state_dir,
 * ring_dir, ring_size, metrics, a volume's recovery and journal settings)
 * keeps its running value, with a warning naming each change. A file with
 * any problem changes nothing. Connected agents stay connected (unless the
 * key they proved changed or went); when the reload added a volume, every
 * connected agent is asked to report the volumes it was refused again.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "hub.h"
#include "repfabric/log.h"

#define SUBSYS "reload"

/* A [hub] string key that needs a restart: warn and keep the running one. */
static void keep_str(const char *key, const char *run, char *next, size_t cap)
{
	if (strcmp(run, next) == 0)
		return;
	RF_WARN(SUBSYS, "%s '%s' -> '%s' needs a restart; keeping '%s'", key, run, next, run);
	snprintf(next, cap, "%s", run);
}

static void keep_fixed(const struct hub_config *run, struct hub_config *next)
{
	keep_str("control", run->control, next->control, sizeof(next->control));
	keep_str("data", run->data, next->data, sizeof(next->data));
	keep_str("state_dir", run->state_dir, next->state_dir, sizeof(next->state_dir));
	keep_str("ring_dir", run->ring_dir, next->ring_dir, sizeof(next->ring_dir));
	keep_str("metrics", run->metrics, next->metrics, sizeof(next->metrics));
	if (run->ring_size != next->ring_size) {
		RF_WARN(SUBSYS, "ring_size changes need a restart (and apply to new rings only)");
		next->ring_size = run->ring_size;
	}
}

/* Ask every connected agent to report its volumes again. */
static void ask_reports(struct hub *h)
{
	for (struct hub_agent *a = h->agents; a; a = a->next)
		if (a->conn && !a->conn->closing && !a->conn->dead)
			ctl_send(a->conn, RF_CTL_REPORT_AGAIN, 0, NULL, 0);
}

void hub_reload(struct hub *h)
{
	struct hub_config next, old;
	struct rf_auth_keys keys = {0}, old_keys;
	struct volumes_reload_stats st;
	char why[PATH_MAX + 256];
	int rc;

	h->reloads++;
	RF_INFO(SUBSYS, "SIGHUP: reading %s again", h->cfg->path);
	rc = hub_config_load(&next, h->cfg->path);
	if (rc) {
		for (size_t i = 0; i < next.nerrors; i++)
			RF_ERR(SUBSYS, "%s", next.errors[i]);
		RF_ERR(SUBSYS, "reload refused: %zu problem(s) in %s; nothing changed",
		       next.nerrors, h->cfg->path);
		goto fail;
	}
	keep_fixed(h->cfg, &next);
	if (next.psk_file[0]) {
		rc = rf_auth_keys_load(&keys, next.psk_file, why, sizeof(why));
		if (rc) {
			RF_ERR(SUBSYS, "reload refused: %s; nothing changed", why);
			goto fail;
		}
	}
	rc = volumes_reload(h, &next, &st);
	if (rc) {
		if (rc != -EINVAL) /* -EINVAL: volumes_reload said why */
			RF_ERR(SUBSYS, "reload refused: %s; nothing changed", strerror(-rc));
		goto fail;
	}
	/* The volumes now point into next.vols: it becomes the running one. */
	old = *h->cfg;
	*h->cfg = next;
	hub_config_free(&old);
	if (h->auth_on != (keys.n > 0))
		RF_WARN(SUBSYS, "authentication turned %s",
		        keys.n ? "on: connections that did not authenticate are closed"
		               : "OFF: any host that reaches the control address is trusted");
	old_keys = h->keys;
	h->keys = keys;
	h->auth_on = keys.n > 0;
	/* A removed or changed key ends the sessions proved with it. */
	auth_recheck(h, &old_keys);
	rf_auth_keys_free(&old_keys);
	auth_warn_unbound(h);
	if (!h->log_level_fixed)
		rf_log_set_level(h->cfg->log_level);
	hub_apply_limits(h);
	if (st.added)
		ask_reports(h);
	RF_INFO(SUBSYS,
	        "reloaded: %zu volume(s) (%u added, %u removed, %u kept while busy), %zu key(s), "
	        "sync_rate %" PRIu64 ", resync_rate %" PRIu64,
	        h->nvols, st.added, st.removed, st.kept, h->keys.n, h->cfg->sync_rate,
	        h->cfg->resync_rate);
	return;
fail:
	h->reload_failures++;
	rf_auth_keys_free(&keys);
	hub_config_free(&next);
}
