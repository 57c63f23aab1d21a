/* SPDX-License-Identifier: MIT */
/*
 * Bounded blocking IO on non-blocking sockets, shared by the control
 * channel's blocking helpers and the stream transports. Deadlines are
 * CLOCK_MONOTONIC milliseconds (rf_now_ms() + a timeout). Every function
 * returns 0 or -errno (-ETIMEDOUT at the deadline, -ECONNRESET on EOF).
 */
#ifndef REPFABRIC_SOCKIO_H
#define REPFABRIC_SOCKIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* CLOCK_MONOTONIC in milliseconds. */
int64_t rf_now_ms(void);

/* CLOCK_MONOTONIC in microseconds. */
int64_t rf_now_us(void);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t rf_now_ns(void);

/* One step of a bounded busy-poll: tell the CPU we are spinning. */
static inline void rf_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#else
	__asm__ __volatile__("" ::: "memory");
#endif
}

/* Wait until @fd is ready for @events (POLLIN/POLLOUT) or @deadline. */
int rf_wait_fd(int fd, short events, int64_t deadline);

/* Write every byte of @iov (modified as it goes) with MSG_NOSIGNAL. */
int rf_write_all(int fd, struct iovec *iov, int iovcnt, int64_t deadline);

/* Read exactly @len bytes. */
int rf_read_all(int fd, void *buf, size_t len, int64_t deadline);

#endif /* REPFABRIC_SOCKIO_H */
