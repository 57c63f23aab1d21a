/* SPDX-License-Identifier: MIT */
/* Record effects on raw images (see image_io.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "image_io.h"
#include "repfabric/ring.h"

#define ZERO_BUF (1u << 20)

static const uint8_t zeros[ZERO_BUF];

int image_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Short reads past the end of the file read as zeroes. */
int image_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0) {
			memset(p, 0, len);
			return 0;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int write_zeros(int fd, uint64_t off, uint64_t len)
{
	while (len > 0) {
		size_t n = len < ZERO_BUF ? (size_t)len : ZERO_BUF;
		int rc = image_pwrite_all(fd, zeros, n, off);

		if (rc)
			return rc;
		off += n;
		len -= n;
	}
	return 0;
}

static bool fallocate_unsupported(int err)
{
	return err == EOPNOTSUPP || err == ENOSYS || err == EINVAL || err == ENODEV;
}

/* The range reads as zeroes afterwards, whatever the file system supports. */
static int zero_range(int fd, uint64_t off, uint64_t len)
{
	if (fallocate(fd, FALLOC_FL_ZERO_RANGE, (off_t)off, (off_t)len) == 0)
		return 0;
	if (!fallocate_unsupported(errno))
		return -errno;
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
		return 0;
	if (!fallocate_unsupported(errno))
		return -errno;
	return write_zeros(fd, off, len);
}

static int trim_range(int fd, uint64_t off, uint64_t len)
{
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
		return 0;
	if (!fallocate_unsupported(errno))
		return -errno;
	return zero_range(fd, off, len);
}

int image_apply(int fd, unsigned type, uint64_t off, uint32_t len, const void *payload)
{
	if (len == 0)
		return 0;
	switch (type) {
	case RF_RING_REC_DATA:
		return image_pwrite_all(fd, payload, len, off);
	case RF_RING_REC_ZERO:
		return zero_range(fd, off, len);
	case RF_RING_REC_TRIM:
		return trim_range(fd, off, len);
	default:
		return -EINVAL;
	}
}

int image_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd))
		rc = -errno;
	close(fd);
	return rc;
}
