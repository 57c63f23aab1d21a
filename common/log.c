/* SPDX-License-Identifier: MIT */
/* The leveled logger: see include/repfabric/log.h. */
#include <inttypes.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "repfabric/log.h"

static _Atomic int log_level = RF_LOG_INFO;
static rf_log_sink_fn log_sink;
static void *log_sink_ctx;
static const char *log_program = "repfabric";

static const char *const level_names[] = {"err", "warn", "info", "debug"};

void rf_log_set_level(enum rf_log_level level)
{
	atomic_store(&log_level, (int)level);
}

enum rf_log_level rf_log_get_level(void)
{
	return (enum rf_log_level)atomic_load(&log_level);
}

int rf_log_level_parse(const char *s, enum rf_log_level *out)
{
	for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*out = (enum rf_log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *rf_log_level_name(enum rf_log_level level)
{
	if ((unsigned)level < sizeof(level_names) / sizeof(level_names[0]))
		return level_names[level];
	return "?";
}

static void stderr_sink(void *ctx, enum rf_log_level level, const char *line)
{
	struct timespec ts;
	struct tm tm;
	char stamp[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ldZ %s[%d] %s %s\n", stamp, ts.tv_nsec / 1000000, log_program,
	        (int)getpid(), rf_log_level_name(level), line);
}

static void syslog_sink(void *ctx, enum rf_log_level level, const char *line)
{
	static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};

	syslog(prio[level], "%s", line);
}

void rf_log_set_sink(rf_log_sink_fn fn, void *ctx)
{
	log_sink = fn;
	log_sink_ctx = ctx;
}

void rf_log_use_syslog(const char *ident)
{
	openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	rf_log_set_sink(syslog_sink, NULL);
}

void rf_log_set_program(const char *name)
{
	log_program = name;
}

void rf_vlog(enum rf_log_level level, const char *subsys, const char *fmt, va_list ap)
{
	char line[1024];
	int n;

	if ((int)level > atomic_load(&log_level))
		return;
	n = snprintf(line, sizeof(line), "%s: ", subsys ? subsys : "-");
	if (n < 0 || (size_t)n >= sizeof(line))
		n = 0;
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	(log_sink ? log_sink : stderr_sink)(log_sink_ctx, level, line);
}

void rf_log(enum rf_log_level level, const char *subsys, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	rf_vlog(level, subsys, fmt, ap);
	va_end(ap);
}

void rf_fmt_utc_ms(int64_t ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	if (strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm) == 0 || strlen(buf) + 6 > len) {
		snprintf(buf, len, "%" PRId64 " ms", ms);
		return;
	}
	snprintf(buf + strlen(buf), len - strlen(buf), ".%03dZ", (int)(ms % 1000));
}
