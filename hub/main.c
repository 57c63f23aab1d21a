/* SPDX-License-Identifier: MIT */
/*
 * rephubd: the replication hub daemon.
 *
 *   rephubd --config FILE [--log-level err|warn|info|debug] [--syslog]
 *   rephubd --config FILE --check-config
 *
 * Runs in the foreground and logs to stderr (or syslog). SIGTERM or SIGINT
 * stops it: no new connections, the rings are drained, heads and volume
 * state persisted, then it exits 0.
 */
#include <dirent.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "agent.h"
#include "hub.h"
#include "repfabric/log.h"
#include "repfabric/ring.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: rephubd --config FILE [--log-level err|warn|info|debug] [--syslog]\n"
	           "       rephubd --config FILE --check-config\n"
	           "\n"
	           "  --config FILE     the INI configuration (see docs/CONFIG.md)\n"
	           "  --check-config    validate FILE, print what is wrong, exit 0 or 1\n"
	           "  --log-level LVL   override the file's log_level\n"
	           "  --syslog          log to syslog instead of stderr\n");
}

/* --check-config: the durability rule each ring would get, and why. */
static void print_ring_rule(const struct hub_config *cfg, const char *what, const char *path)
{
	bool is_pmem = false, rule_pmem;
	const char *why;
	int rc = rf_ring_probe_pmem(path, &is_pmem);

	if (rc) {
		printf("%s %s: cannot tell whether it is persistent memory: %s\n", what, path,
		       strerror(-rc));
		return;
	}
	why = hub_ring_rule((enum hub_durability)cfg->durability, is_pmem, &rule_pmem);
	printf("%s %s: rule %s (%s)\n", what, path, rule_pmem ? "pmem" : "apply", why);
}

static void print_ring_rules(const struct hub_config *cfg)
{
	char dir[PATH_MAX], p[PATH_MAX + 256];
	struct dirent *de;
	DIR *d;

	if ((size_t)snprintf(dir, sizeof(dir), "%s%s",
	                     cfg->ring_dir[0] ? cfg->ring_dir : cfg->state_dir,
	                     cfg->ring_dir[0] ? "" : "/rings") >= sizeof(dir))
		return;
	d = opendir(dir);
	if (!d) {
		printf("rings: %s does not exist yet (created at start-up; new rings there are "
		       "ordinary files: rule %s)\n",
		       dir, cfg->durability == HUB_DURABLE_PMEM ? "pmem, forced" : "apply");
		return;
	}
	print_ring_rule(cfg, "new rings in", dir);
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);

		if (n <= 5 || strcmp(de->d_name + n - 5, ".ring") != 0)
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		print_ring_rule(cfg, "ring", p);
	}
	closedir(d);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
	                                     {"check-config", no_argument, NULL, 'C'},
	                                     {"log-level", required_argument, NULL, 'l'},
	                                     {"syslog", no_argument, NULL, 's'},
	                                     {"help", no_argument, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	const char *path = NULL, *level = NULL;
	bool check = false, use_syslog = false;
	enum rf_log_level lvl = RF_LOG_INFO;
	struct hub_config cfg;
	struct hub hub;
	int c, rc;

	rf_log_set_program("rephubd");
	while ((c = getopt_long(argc, argv, "c:l:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'C':
			check = true;
			break;
		case 'l':
			level = optarg;
			break;
		case 's':
			use_syslog = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!path || optind != argc) {
		usage(stderr);
		return 2;
	}
	if (level && rf_log_level_parse(level, &lvl)) {
		fprintf(stderr, "rephubd: --log-level '%s': expected err, warn, info or debug\n",
		        level);
		return 2;
	}
	rc = hub_config_load(&cfg, path);
	if (rc) {
		for (size_t i = 0; i < cfg.nerrors; i++)
			fprintf(stderr, "%s\n", cfg.errors[i]);
		if (!check)
			fprintf(stderr, "rephubd: not starting: %zu problem(s) in %s\n",
			        cfg.nerrors, path);
		hub_config_free(&cfg);
		return 1;
	}
	if (check) {
		printf("%s: OK (%zu volume(s), control %s, data %s)\n", path, cfg.nvols,
		       cfg.control, cfg.data);
		print_ring_rules(&cfg);
		hub_config_free(&cfg);
		return 0;
	}
	rf_log_set_level(level ? lvl : cfg.log_level);
	if (use_syslog)
		rf_log_use_syslog("rephubd");

	hub_raise_fd_limit();
	rc = hub_init(&hub, &cfg);
	hub.log_level_fixed = level != NULL; /* a reload keeps --log-level */
	if (rc == 0)
		rc = hub_run(&hub);
	hub_fini(&hub);
	if (rc)
		RF_ERR("hub", "exiting: %s", strerror(-rc));
	else
		RF_INFO("hub", "stopped");
	hub_config_free(&cfg);
	return rc ? 1 : 0;
}
