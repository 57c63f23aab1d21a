/* SPDX-License-Identifier: MIT */
/*
 * repfabric leveled logger.
 *
 * Libraries never print: they call rf_log() (or the RF_* macros), and the
 * program chooses where lines go (stderr by default, syslog, or a custom
 * sink such as nbdkit_error/nbdkit_debug inside the nbdkit modules).
 * Thread-safe: a line is formatted into a local buffer and handed to the
 * sink in one call.
 */
#ifndef REPFABRIC_LOG_H
#define REPFABRIC_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum rf_log_level {
	RF_LOG_ERR = 0,  /* an operation failed; someone should look */
	RF_LOG_WARN = 1, /* something unusual that the code handled */
	RF_LOG_INFO = 2, /* state changes an operator wants to see */
	RF_LOG_DEBUG = 3 /* per-operation detail, off by default */
};

/* A sink receives one formatted line without a trailing newline. */
typedef void (*rf_log_sink_fn)(void *ctx, enum rf_log_level level, const char *line);

/* Only messages at or below @level are formatted and emitted. Default INFO. */
void rf_log_set_level(enum rf_log_level level);
enum rf_log_level rf_log_get_level(void);

/*
 * Parse "err", "warn", "info" or "debug" (case-insensitive).
 * Returns 0, or -EINVAL when @s names no level.
 */
int rf_log_level_parse(const char *s, enum rf_log_level *out);
const char *rf_log_level_name(enum rf_log_level level);

/* Route lines to @fn (NULL restores the stderr sink). */
void rf_log_set_sink(rf_log_sink_fn fn, void *ctx);

/* Route lines to syslog(3) with @ident and LOG_DAEMON. */
void rf_log_use_syslog(const char *ident);

/* Name printed on stderr lines (e.g. "rephubd"). Default "repfabric". */
void rf_log_set_program(const char *name);

void rf_log(enum rf_log_level level, const char *subsys, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void rf_vlog(enum rf_log_level level, const char *subsys, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#define RF_LOG_ENABLED(lvl) ((lvl) <= rf_log_get_level())

#define RF_ERR(subsys, ...)  rf_log(RF_LOG_ERR, subsys, __VA_ARGS__)
#define RF_WARN(subsys, ...) rf_log(RF_LOG_WARN, subsys, __VA_ARGS__)
#define RF_INFO(subsys, ...) rf_log(RF_LOG_INFO, subsys, __VA_ARGS__)
#define RF_DEBUG(subsys, ...)                                                                      \
	do {                                                                                       \
		if (RF_LOG_ENABLED(RF_LOG_DEBUG))                                                  \
			rf_log(RF_LOG_DEBUG, subsys, __VA_ARGS__);                                 \
	} while (0)

/* @ms (CLOCK_REALTIME milliseconds) as "YYYY-MM-DDTHH:MM:SS.mmmZ" in @buf,
 * or "N ms" when that does not fit: the one format for times in messages. */
void rf_fmt_utc_ms(int64_t ms, char *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* REPFABRIC_LOG_H */
