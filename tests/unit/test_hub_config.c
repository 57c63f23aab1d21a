/* SPDX-License-Identifier: MIT */
/*
 * rephubd's configuration (hub/config.c): a good file, defaults, and every
 * kind of bad file, each with its "FILE:LINE: key 'K' in [S]: reason".
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

static char dir[] = "/tmp/rf-test-hub-config.XXXXXX";
static char path[4200];

/* Write @text to a fresh file in the scratch directory and load it. */
static int load(struct hub_config *cfg, const char *text)
{
	static int n;
	FILE *f;

	snprintf(path, sizeof(path), "%s/hub%d.conf", dir, ++n);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return hub_config_load(cfg, path);
}

/* Exactly one error, equal to "PATH:" + @suffix. */
static void expect_error(struct hub_config *cfg, const char *suffix)
{
	char want[8192];

	snprintf(want, sizeof(want), "%s:%s", path, suffix);
	if (cfg->nerrors != 1 || strcmp(cfg->errors[0], want) != 0) {
		print_error("want: %s\n", want);
		for (size_t i = 0; i < cfg->nerrors; i++)
			print_error("got:  %s\n", cfg->errors[i]);
		fail();
	}
}

/* Some error starts with "PATH:" + @prefix. */
static void expect_error_prefix(struct hub_config *cfg, const char *prefix)
{
	char want[8192];

	snprintf(want, sizeof(want), "%s:%s", path, prefix);
	for (size_t i = 0; i < cfg->nerrors; i++)
		if (strncmp(cfg->errors[i], want, strlen(want)) == 0)
			return;
	print_error("want a message starting: %s\n", want);
	for (size_t i = 0; i < cfg->nerrors; i++)
		print_error("got:  %s\n", cfg->errors[i]);
	fail();
}

static int setup(void **state)
{
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_good(void **state)
{
	struct hub_config cfg;
	char text[4096];

	snprintf(text, sizeof(text),
	         "; a full configuration\n"
	         "[hub]\n"
	         "control = 127.0.0.1:7470          ; TCP control channel\n"
	         "data = rdma://10.0.0.2:7471\n"
	         "state_dir = %s/state\n"
	         "  ring_size = 128M\n"
	         "sync_rate = 100m\n"
	         "log_level = debug\n"
	         "metrics = 127.0.0.1:9470\n"
	         "\n"
	         "# a comment\n"
	         "[volume vm1-disk0]\n"
	         "recovery = %s/state/vm1-disk0.img\n"
	         "[volume  vm1.disk_1]\n"
	         "recovery: %s/vm1-disk1.img\n",
	         dir, dir, dir);
	assert_int_equal(load(&cfg, text), 0);
	assert_int_equal(cfg.nerrors, 0);
	assert_string_equal(cfg.control, "127.0.0.1:7470");
	assert_string_equal(cfg.data, "rdma://10.0.0.2:7471");
	assert_int_equal(cfg.ring_size, 128ull << 20);
	assert_int_equal(cfg.sync_rate, 100ull << 20);
	assert_int_equal(cfg.log_level, RF_LOG_DEBUG);
	assert_string_equal(cfg.metrics, "127.0.0.1:9470");
	assert_int_equal(cfg.nvols, 2);
	assert_string_equal(cfg.vols[0].name, "vm1-disk0");
	assert_string_equal(cfg.vols[1].name, "vm1.disk_1");
	assert_non_null(hub_config_volume(&cfg, "vm1.disk_1"));
	assert_null(hub_config_volume(&cfg, "vm2"));
	assert_int_equal(cfg.vols[1].line, 14);
	hub_config_free(&cfg);
}

static void test_defaults(void **state)
{
	struct hub_config cfg;
	char text[4096];

	snprintf(text, sizeof(text), "[hub]\nstate_dir = %s\n", dir);
	assert_int_equal(load(&cfg, text), 0);
	assert_string_equal(cfg.control, "127.0.0.1:7470");
	assert_string_equal(cfg.data, "tcp://127.0.0.1:7471");
	assert_int_equal(cfg.ring_size, 64ull << 20);
	assert_int_equal(cfg.sync_rate, 0);
	assert_int_equal(cfg.log_level, RF_LOG_INFO);
	assert_int_equal(cfg.nvols, 0);
	assert_string_equal(cfg.ring_dir, ""); /* state_dir/rings */
	assert_int_equal(cfg.resync_rate, 0);
	assert_string_equal(cfg.metrics, ""); /* no metrics endpoint */
	hub_config_free(&cfg);

	snprintf(text, sizeof(text), "[hub]\nstate_dir = %s\nresync_rate = 8m\n", dir);
	assert_int_equal(load(&cfg, text), 0);
	assert_int_equal(cfg.resync_rate, 8ull << 20);
	hub_config_free(&cfg);

	snprintf(text, sizeof(text), "[hub]\nstate_dir = %s\nring_dir = %s/rings-on-tmpfs\n", dir,
	         dir);
	assert_int_equal(load(&cfg, text), 0);
	assert_non_null(strstr(cfg.ring_dir, "/rings-on-tmpfs"));
	hub_config_free(&cfg);

	snprintf(text, sizeof(text), "[hub]\nstate_dir = %s\nring_dir = relative/rings\n", dir);
	assert_int_equal(load(&cfg, text), -EINVAL);
	expect_error_prefix(&cfg, "3: key 'ring_dir' in [hub]: ");
	hub_config_free(&cfg);
}

/* handshake_timeout, max_pending, durability, poll_us: defaults, values, refusals. */
static void test_admission_and_durability(void **state)
{
	static const struct {
		const char *line, *err;
	} bad[] = {
	    {"handshake_timeout = 50ms", "'50ms' is out of bounds (100ms..300s)"},
	    {"handshake_timeout = 301s", "'301s' is out of bounds (100ms..300s)"},
	    {"handshake_timeout = soon", "'soon' is not a duration (digits with ms, s, m, h or d)"},
	    {"max_pending = 0", "'0' is out of bounds (1..65536)"},
	    {"max_pending = 65537", "'65537' is out of bounds (1..65536)"},
	    {"max_pending = 64k", "'64k' is not a whole number"},
	    {"durability = fast", "'fast' is not auto, pmem or apply"},
	    {"poll_us = 100001", "'100001' is out of bounds (0..100000)"},
	    {"poll_us = -1", "'-1' is not a whole number"},
	};
	struct hub_config cfg;
	char text[4096], want[256];

	(void)state;
	snprintf(text, sizeof(text), "[hub]\nstate_dir = %s\n", dir);
	assert_int_equal(load(&cfg, text), 0);
	assert_int_equal(cfg.handshake_timeout_ms, 5000);
	assert_int_equal(cfg.max_pending, 64);
	assert_int_equal(cfg.durability, HUB_DURABLE_AUTO);
	assert_int_equal(cfg.poll_us, 0);
	hub_config_free(&cfg);
	snprintf(text, sizeof(text),
	         "[hub]\nstate_dir = %s\nhandshake_timeout = 1500ms\nmax_pending = 7\n"
	         "durability = pmem\npoll_us = 50\n",
	         dir);
	assert_int_equal(load(&cfg, text), 0);
	assert_int_equal(cfg.poll_us, 50);
	assert_int_equal(cfg.handshake_timeout_ms, 1500);
	assert_int_equal(cfg.max_pending, 7);
	assert_int_equal(cfg.durability, HUB_DURABLE_PMEM);
	assert_string_equal(hub_durability_name(cfg.durability), "pmem");
	hub_config_free(&cfg);
	snprintf(text, sizeof(text), "[hub]\nstate_dir = %s\ndurability = apply\n", dir);
	assert_int_equal(load(&cfg, text), 0);
	assert_int_equal(cfg.durability, HUB_DURABLE_APPLY);
	hub_config_free(&cfg);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "[hub]\nstate_dir = %s\n%s\n", dir, bad[i].line);
		assert_int_equal(load(&cfg, text), -EINVAL);
		snprintf(want, sizeof(want), "3: key '%.*s' in [hub]: %s",
		         (int)strcspn(bad[i].line, " "), bad[i].line, bad[i].err);
		expect_error(&cfg, want);
		hub_config_free(&cfg);
	}
}

static void test_unknown_key(void **state)
{
	struct hub_config cfg;
	char text[4096];

	snprintf(text, sizeof(text), "[hub]\nstate_dir = %s\nring_sise = 64M\n", dir);
	assert_int_equal(load(&cfg, text), -EINVAL);
	expect_error(&cfg, "3: key 'ring_sise' in [hub]: unknown key");
	hub_config_free(&cfg);

	snprintf(text, sizeof(text),
	         "[hub]\nstate_dir = %s\n[volume a]\nrecovery = %s/a.img\nsize = 1G\n", dir, dir);
	assert_int_equal(load(&cfg, text), -EINVAL);
	expect_error(&cfg, "5: key 'size' in [volume a]: unknown key");
	hub_config_free(&cfg);

	snprintf(text, sizeof(text),
	         "[hub]\nstate_dir = %s\n[volume a]\nrecovery = %s/a.img\nagent = vm 1\n", dir,
	         dir);
	assert_int_equal(load(&cfg, text), -EINVAL);
	expect_error(&cfg, "5: key 'agent' in [volume a]: 'vm 1' is not 1..64 of [A-Za-z0-9._-]");
	hub_config_free(&cfg);

	snprintf(text, sizeof(text),
	         "[hub]\nstate_dir = %s\n[volume a]\nrecovery = %s/a.img\nagent = vm1\n", dir, dir);
	assert_int_equal(load(&cfg, text), 0);
	assert_string_equal(cfg.vols[0].agent, "vm1");
	hub_config_free(&cfg);
}

static void test_bad_address(void **state)
{
	static const struct {
		const char *value, *reason;
	} cases[] = {
	    {"127.0.0.1", "'127.0.0.1' is not HOST:PORT ([IPv6]:PORT for IPv6)"},
	    {"127.0.0.1:0", "'127.0.0.1:0': the port must be a number in 1..65535"},
	    {"127.0.0.1:65536", "'127.0.0.1:65536': the port must be a number in 1..65535"},
	    {"127.0.0.1:http", "'127.0.0.1:http': the port must be a number in 1..65535"},
	    {":7470", "':7470': missing or over-long host"},
	    {"[::1:7470", "'[::1:7470' is not HOST:PORT ([IPv6]:PORT for IPv6)"},
	};
	struct hub_config cfg;
	char text[4096], want[512];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), "[hub]\nstate_dir = %s\ncontrol = %s\n", dir,
		         cases[i].value);
		assert_int_equal(load(&cfg, text), -EINVAL);
		snprintf(want, sizeof(want), "3: key 'control' in [hub]: %s", cases[i].reason);
		expect_error(&cfg, want);
		hub_config_free(&cfg);
	}
	/* IPv6 in brackets is fine. */
	snprintf(text, sizeof(text), "[hub]\nstate_dir = %s\ncontrol = [::1]:7470\n", dir);
	assert_int_equal(load(&cfg, text), 0);
	hub_config_free(&cfg);
}

static void test_bad_url(void **state)
{
	static const struct {
		const char *value, *reason;
	} cases[] = {
	    {"127.0.0.1:7471", "'127.0.0.1:7471' is not a transport URL (rdma://IP:PORT, "
	                       "tcp://HOST:PORT or shm:///PATH)"},
	    {"udp://127.0.0.1:7471", "'udp://127.0.0.1:7471': unknown transport 'udp' (rdma, "
	                             "tcp or shm)"},
	    {"tcp://127.0.0.1", "'tcp://127.0.0.1': '127.0.0.1' is not HOST:PORT ([IPv6]:PORT "
	                        "for IPv6)"},
	    {"rdma://10.0.0.2:99999", "'rdma://10.0.0.2:99999': '10.0.0.2:99999': the port must "
	                              "be a number in 1..65535"},
	    {"shm://dev/shm/x", "'shm://dev/shm/x': shm needs an absolute socket path "
	                        "(shm:///PATH)"},
	};
	struct hub_config cfg;
	char text[4096], want[512];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), "[hub]\ndata = %s\nstate_dir = %s\n", cases[i].value,
		         dir);
		assert_int_equal(load(&cfg, text), -EINVAL);
		snprintf(want, sizeof(want), "2: key 'data' in [hub]: %s", cases[i].reason);
		expect_error(&cfg, want);
		hub_config_free(&cfg);
	}
}

static void test_bad_size(void **state)
{
	static const struct {
		const char *key, *value, *reason;
	} cases[] = {
	    {"ring_size", "64X",
	     "'64X' is not a size (digits with an optional K, M, G or T "
	     "suffix)"},
	    {"ring_size", "M", "'M' is not a size (digits with an optional K, M, G or T suffix)"},
	    {"ring_size", "-1M",
	     "'-1M' is not a size (digits with an optional K, M, G or T "
	     "suffix)"},
	    {"ring_size", "64MB",
	     "'64MB' is not a size (digits with an optional K, M, G or T "
	     "suffix)"},
	    {"ring_size", "", "'' is not a size (digits with an optional K, M, G or T suffix)"},
	    {"ring_size", "512K", "'512K' is out of bounds (1048576..70368744177664 bytes)"},
	    {"ring_size", "1048577", "'1048577' is not a multiple of 256 bytes"},
	    {"ring_size", "99999999999999999999", "'99999999999999999999' is size too large"},
	    {"ring_size", "16777216T", "'16777216T' is size too large"},
	    {"sync_rate", "2T", "'2T' is out of bounds (0..1099511627776 bytes)"},
	    {"resync_rate", "1.5M",
	     "'1.5M' is not a size (digits with an optional K, M, G or T suffix)"},
	    {"resync_rate", "2T", "'2T' is out of bounds (0..1099511627776 bytes)"},
	    {"log_level", "loud", "'loud' is not a log level (err, warn, info or debug)"},
	    {"metrics", "9470", "'9470' is not HOST:PORT ([IPv6]:PORT for IPv6)"},
	    {"metrics", "127.0.0.1:0", "'127.0.0.1:0': the port must be a number in 1..65535"},
	    {"psk_file", "keys.psk", "'keys.psk' is not an absolute path"},
	    {"psk_file", "/nonexistent/keys.psk",
	     "/nonexistent/keys.psk: cannot open: No such file or directory"},
	};
	struct hub_config cfg;
	char text[4096], want[512];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), "[hub]\nstate_dir = %s\n%s = %s\n", dir, cases[i].key,
		         cases[i].value);
		assert_int_equal(load(&cfg, text), -EINVAL);
		snprintf(want, sizeof(want), "3: key '%s' in [hub]: %s", cases[i].key,
		         cases[i].reason);
		expect_error(&cfg, want);
		hub_config_free(&cfg);
	}
}

static void test_parse_size(void **state)
{
	const char *why = NULL;
	uint64_t v;

	assert_int_equal(hub_parse_size("0", &v, &why), 0);
	assert_int_equal(v, 0);
	assert_int_equal(hub_parse_size("1k", &v, &why), 0);
	assert_int_equal(v, 1024);
	assert_int_equal(hub_parse_size("64M", &v, &why), 0);
	assert_int_equal(v, 64ull << 20);
	assert_int_equal(hub_parse_size("3G", &v, &why), 0);
	assert_int_equal(v, 3ull << 30);
	assert_int_equal(hub_parse_size("2t", &v, &why), 0);
	assert_int_equal(v, 2ull << 40);
	assert_int_equal(hub_parse_size("18446744073709551615", &v, &why), 0);
	assert_int_equal(v, UINT64_MAX);
	assert_int_equal(hub_parse_size("18446744073709551616", &v, &why), -EINVAL);
	assert_int_equal(hub_parse_size(" 1", &v, &why), -EINVAL);
	assert_int_equal(hub_parse_size("1 M", &v, &why), -EINVAL);
}

static void test_duplicate_volume(void **state)
{
	struct hub_config cfg;
	char text[4096];

	snprintf(text, sizeof(text),
	         "[hub]\nstate_dir = %s\n\n[volume vm1]\nrecovery = %s/a.img\n\n"
	         "[volume vm1]\nrecovery = %s/b.img\n",
	         dir, dir, dir);
	assert_int_equal(load(&cfg, text), -EINVAL);
	expect_error(&cfg, "7: section [volume vm1]: duplicate volume (first on line 4)");
	hub_config_free(&cfg);
}

static void test_missing_required(void **state)
{
	struct hub_config cfg;
	char text[4096];

	snprintf(text, sizeof(text), "[hub]\nstate_dir = %s\n[volume vm1]\n; no recovery\n", dir);
	assert_int_equal(load(&cfg, text), -EINVAL);
	expect_error(&cfg, "3: section [volume vm1]: missing required key 'recovery'");
	hub_config_free(&cfg);
}

static void test_duplicate_key(void **state)
{
	struct hub_config cfg;
	char text[4096];

	snprintf(text, sizeof(text), "[hub]\nstate_dir = %s\nring_size = 1M\nring_size = 2M\n",
	         dir);
	assert_int_equal(load(&cfg, text), -EINVAL);
	expect_error(&cfg, "4: key 'ring_size' in [hub]: set twice (first on line 3)");
	hub_config_free(&cfg);
}

static void test_sections(void **state)
{
	struct hub_config cfg;
	char text[4096];

	snprintf(text, sizeof(text), "[hub]\nstate_dir = %s\n[hubb]\nfoo = 1\n", dir);
	assert_int_equal(load(&cfg, text), -EINVAL);
	/* Keys under a refused header are not reported again. */
	expect_error(&cfg, "3: section [hubb]: unknown section (expected [hub] or [volume NAME])");
	hub_config_free(&cfg);

	snprintf(text, sizeof(text), "ring_size = 1M\n[hub]\nstate_dir = %s\n", dir);
	assert_int_equal(load(&cfg, text), -EINVAL);
	expect_error(&cfg, "1: key 'ring_size' outside any section (put it under [hub])");
	hub_config_free(&cfg);

	snprintf(text, sizeof(text), "[hub]\nstate_dir = %s\n[volume bad/name]\nrecovery = /x\n",
	         dir);
	assert_int_equal(load(&cfg, text), -EINVAL);
	expect_error(&cfg, "3: section [volume bad/name]: 'bad/name' is not a valid volume name "
	                   "(1..64 of A-Z a-z 0-9 . _ -)");
	hub_config_free(&cfg);

	snprintf(text, sizeof(text), "[hub]\nstate_dir = %s\n[hub]\nring_size = 2M\n", dir);
	assert_int_equal(load(&cfg, text), -EINVAL);
	expect_error(&cfg, "3: section [hub]: given twice (first on line 1)");
	hub_config_free(&cfg);
}

static void test_syntax(void **state)
{
	struct hub_config cfg;
	char text[4096], longline[400];

	snprintf(text, sizeof(text), "[hub]\nstate_dir = %s\nring_size 1M\n", dir);
	assert_int_equal(load(&cfg, text), -EINVAL);
	expect_error(&cfg, "3: expected 'key = value', a [section] or a comment");
	hub_config_free(&cfg);

	snprintf(text, sizeof(text), "[hub\nstate_dir = %s\n", dir);
	assert_int_equal(load(&cfg, text), -EINVAL);
	expect_error_prefix(&cfg, "1: section header without a closing ']'");
	hub_config_free(&cfg);

	memset(longline, 'a', sizeof(longline) - 1);
	longline[sizeof(longline) - 1] = '\0';
	snprintf(text, sizeof(text), "[hub]\nstate_dir = %s\n; %s\n", dir, longline);
	assert_int_equal(load(&cfg, text), -EINVAL);
	expect_error_prefix(&cfg, "3: line longer than");
	hub_config_free(&cfg);
}

static void test_paths(void **state)
{
	struct hub_config cfg;
	char text[16384], file[256];
	FILE *f;

	snprintf(text, sizeof(text), "[hub]\nstate_dir = relative/dir\n");
	assert_int_equal(load(&cfg, text), -EINVAL);
	expect_error(&cfg, "2: key 'state_dir' in [hub]: 'relative/dir' is not an absolute path");
	hub_config_free(&cfg);

	snprintf(file, sizeof(file), "%s/plain-file", dir);
	f = fopen(file, "w");
	assert_non_null(f);
	fclose(f);
	snprintf(text, sizeof(text), "[hub]\nstate_dir = %s/sub\n", file);
	assert_int_equal(load(&cfg, text), -EINVAL);
	snprintf(text, sizeof(text),
	         "2: key 'state_dir' in [hub]: '%s/sub' cannot be created: %s is not a directory",
	         file, file);
	expect_error(&cfg, text);
	hub_config_free(&cfg);

	snprintf(text, sizeof(text), "[hub]\nstate_dir = %s\n[volume a]\nrecovery = %s/x/\n", dir,
	         dir);
	assert_int_equal(load(&cfg, text), -EINVAL);
	expect_error_prefix(&cfg, "4: key 'recovery' in [volume a]: ");
	hub_config_free(&cfg);

	snprintf(text, sizeof(text),
	         "[hub]\nstate_dir = %s\n[volume a]\nrecovery = %s/same.img\n"
	         "[volume b]\nrecovery = %s/same.img\n",
	         dir, dir, dir);
	assert_int_equal(load(&cfg, text), -EINVAL);
	snprintf(text, sizeof(text),
	         "6: key 'recovery' in [volume b]: '%s/same.img' is already the recovery image "
	         "of volume a",
	         dir);
	expect_error(&cfg, text);
	hub_config_free(&cfg);
}

static void test_missing_file(void **state)
{
	struct hub_config cfg;
	char p[4200];

	snprintf(p, sizeof(p), "%s/does-not-exist.conf", dir);
	assert_int_equal(hub_config_load(&cfg, p), -ENOENT);
	assert_int_equal(cfg.nerrors, 1);
	assert_non_null(strstr(cfg.errors[0], "cannot read: No such file or directory"));
	hub_config_free(&cfg);
}

static void test_many_errors(void **state)
{
	struct hub_config cfg;
	char text[4096];

	/* Every problem is reported, not only the first. */
	snprintf(text, sizeof(text),
	         "[hub]\nstate_dir = %s\ncontrol = nope\nring_size = 1X\nfoo = bar\n"
	         "[volume a]\n",
	         dir);
	assert_int_equal(load(&cfg, text), -EINVAL);
	assert_int_equal(cfg.nerrors, 4);
	expect_error_prefix(&cfg, "3: key 'control'");
	expect_error_prefix(&cfg, "4: key 'ring_size'");
	expect_error_prefix(&cfg, "5: key 'foo' in [hub]: unknown key");
	expect_error_prefix(&cfg, "6: section [volume a]: missing required key 'recovery'");
	hub_config_free(&cfg);
}

/* [volume] journal_time (a duration) and journal_size. */
static void test_journal_keys(void **state)
{
	static const struct {
		const char *time;
		uint64_t ms;
	} good[] = {{"0", 0},         {"90", 90000},   {"1500ms", 1500}, {"45s", 45000},
	            {"30m", 1800000}, {"2h", 7200000}, {"7d", 604800000}};
	static const struct {
		const char *key, *value, *reason;
	} bad[] = {
	    {"journal_time", "1.5h", "'1.5h' is not a duration (digits with ms, s, m, h or d)"},
	    {"journal_time", "1w", "'1w' is not a duration (digits with ms, s, m, h or d)"},
	    {"journal_time", "h", "'h' is not a duration (digits with ms, s, m, h or d)"},
	    {"journal_time", "-1h", "'-1h' is not a duration (digits with ms, s, m, h or d)"},
	    {"journal_time", "366d", "'366d' is out of bounds (0..365 days)"},
	    {"journal_time", "99999999999999999999",
	     "'99999999999999999999' is out of bounds "
	     "(0..365 days)"},
	    {"journal_size", "512K", "'512K' is out of bounds (1048576..1099511627776 bytes)"},
	    {"journal_size", "1Q",
	     "'1Q' is not a size (digits with an optional K, M, G or T "
	     "suffix)"},
	};
	struct hub_config cfg;
	char text[4096], want[512];

	snprintf(text, sizeof(text), "[hub]\nstate_dir = %s\n[volume a]\nrecovery = %s/a.img\n",
	         dir, dir);
	assert_int_equal(load(&cfg, text), 0);
	assert_int_equal(cfg.vols[0].journal_time_ms, 0); /* no journal unless asked */
	assert_int_equal(cfg.vols[0].journal_size, 1ull << 30);
	hub_config_free(&cfg);
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(text, sizeof(text),
		         "[hub]\nstate_dir = %s\n[volume a]\nrecovery = %s/a.img\n"
		         "journal_time = %s\njournal_size = 2G\n",
		         dir, dir, good[i].time);
		assert_int_equal(load(&cfg, text), 0);
		assert_int_equal(cfg.vols[0].journal_time_ms, good[i].ms);
		assert_int_equal(cfg.vols[0].journal_size, 2ull << 30);
		hub_config_free(&cfg);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text),
		         "[hub]\nstate_dir = %s\n[volume a]\nrecovery = %s/a.img\n%s = %s\n", dir,
		         dir, bad[i].key, bad[i].value);
		assert_int_equal(load(&cfg, text), -EINVAL);
		snprintf(want, sizeof(want), "5: key '%s' in [volume a]: %s", bad[i].key,
		         bad[i].reason);
		expect_error(&cfg, want);
		hub_config_free(&cfg);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_good),
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_admission_and_durability),
	    cmocka_unit_test(test_unknown_key),
	    cmocka_unit_test(test_bad_address),
	    cmocka_unit_test(test_bad_url),
	    cmocka_unit_test(test_bad_size),
	    cmocka_unit_test(test_parse_size),
	    cmocka_unit_test(test_duplicate_volume),
	    cmocka_unit_test(test_missing_required),
	    cmocka_unit_test(test_duplicate_key),
	    cmocka_unit_test(test_sections),
	    cmocka_unit_test(test_syntax),
	    cmocka_unit_test(test_paths),
	    cmocka_unit_test(test_missing_file),
	    cmocka_unit_test(test_many_errors),
	    cmocka_unit_test(test_journal_keys),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
