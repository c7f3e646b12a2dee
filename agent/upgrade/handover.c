// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "upgrade/handover.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "datapath/env.h"
#include "shoal/abi.h"

const char *handover_type_name(uint16_t t)
{
	switch (t) {
	case HANDOVER_HELLO:
		return "HELLO";
	case HANDOVER_OFFER:
		return "OFFER";
	case HANDOVER_READY:
		return "READY";
	case HANDOVER_DONE:
		return "DONE";
	case HANDOVER_REFUSE:
		return "REFUSE";
	default:
		return "?";
	}
}

void handover_default_path(const char *pin_root, char *buf, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a, 64 bits */

	if (!strcmp(pin_root, SHOAL_DEFAULT_PIN_ROOT)) {
		snprintf(buf, len, "%s", HANDOVER_DEFAULT_SOCKET);
		return;
	}
	for (const char *c = pin_root; *c; c++)
		h = (h ^ (unsigned char)*c) * 0x100000001b3ull;
	snprintf(buf, len, "/run/shoal/handover-%016llx.sock", (unsigned long long)h);
}

/* path as a sockaddr_un; -ENAMETOOLONG past sun_path. */
static int handover_addr(const char *path, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path))
		return -ENAMETOOLONG;
	memcpy(sun->sun_path, path, strlen(path));
	return 0;
}

static void handover_set_timeouts(int fd)
{
	struct timeval tv = {.tv_sec = HANDOVER_STEP_TIMEOUT_MS / 1000,
			     .tv_usec = (HANDOVER_STEP_TIMEOUT_MS % 1000) * 1000};

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

int handover_connect(const char *path)
{
	struct sockaddr_un sun;
	int fd, err = handover_addr(path, &sun);

	if (err)
		return err;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	handover_set_timeouts(fd);
	return fd;
}

int handover_listen(const char *path)
{
	struct sockaddr_un sun;
	char dir[sizeof(sun.sun_path)];
	char *slash;
	int fd, err = handover_addr(path, &sun);

	if (err)
		return err;
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		err = env_mkdir_p(dir);
		if (err)
			return err;
	}
	/* A live listener is another shoald: never take its path. */
	fd = handover_connect(path);
	if (fd >= 0) {
		close(fd);
		return -EADDRINUSE;
	}
	if (fd == -ECONNREFUSED && unlink(path) < 0 && errno != ENOENT)
		return -errno;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* Only root (shoald's user) may hand over: the peer gets our listeners. */
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || chmod(path, 0600) < 0 ||
	    listen(fd, 4) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

void handover_close(int fd, const char *path)
{
	if (fd < 0)
		return;
	close(fd);
	if (path)
		unlink(path);
}

int handover_send(int fd, enum handover_type t, const int *fds, uint32_t n, uint32_t last,
		  uint32_t total, const char *text)
{
	struct handover_msg m = {
	    .magic = HANDOVER_MAGIC,
	    .version = HANDOVER_VERSION,
	    .type = (uint16_t)t,
	    .pid = (uint32_t)getpid(),
	    .n_fds = n,
	    .last = last,
	    .total = total,
	};
	char cbuf[CMSG_SPACE(sizeof(int) * HANDOVER_FDS_PER_MSG)];
	struct iovec iov = {.iov_base = &m, .iov_len = sizeof(m)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t sent;

	if (n > HANDOVER_FDS_PER_MSG)
		return -E2BIG;
	if (text)
		snprintf(m.text, sizeof(m.text), "%s", text);
	if (n) {
		struct cmsghdr *cm;

		memset(cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * n);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * n);
	}
	do
		sent = sendmsg(fd, &mh, MSG_NOSIGNAL);
	while (sent < 0 && errno == EINTR);
	if (sent < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return (size_t)sent == sizeof(m) ? 0 : -EPROTO;
}

static void close_fds(int *fds, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		close(fds[i]);
}

int handover_recv(int fd, struct handover_msg *m, int *fds, uint32_t max, uint32_t *n_fds,
		  char *err, size_t errlen)
{
	char cbuf[CMSG_SPACE(sizeof(int) * HANDOVER_FDS_PER_MSG)];
	struct iovec iov = {.iov_base = m, .iov_len = sizeof(*m)};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	uint32_t got = 0;
	ssize_t n;

	*n_fds = 0;
	memset(m, 0, sizeof(*m));
	do
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	if (n == 0)
		return -EPIPE;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		uint32_t k;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		k = (uint32_t)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (uint32_t i = 0; i < k; i++) {
			int f;

			memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (got < max)
				fds[got++] = f;
			else
				close(f); /* more than the caller has room for: refused below */
		}
	}
	if ((size_t)n != sizeof(*m) || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
		snprintf(
		    err, errlen,
		    "hand-over: a %zd-byte packet%s, where protocol version %u sends %zu bytes", n,
		    (mh.msg_flags & MSG_CTRUNC) ? " with too many fds" : "", HANDOVER_VERSION,
		    sizeof(*m));
		goto refuse;
	}
	if (m->magic != HANDOVER_MAGIC) {
		snprintf(err, errlen, "hand-over: bad magic 0x%08x (want 0x%08x): not a shoald",
			 m->magic, HANDOVER_MAGIC);
		goto refuse;
	}
	if (m->version != HANDOVER_VERSION) {
		snprintf(err, errlen,
			 "hand-over: the peer (pid %u) speaks protocol version %u, this shoald "
			 "version %u",
			 m->pid, m->version, HANDOVER_VERSION);
		goto refuse;
	}
	if (m->n_fds != got || got > max || m->n_fds > HANDOVER_FDS_PER_MSG) {
		snprintf(err, errlen, "hand-over: %s says %u fds, %u arrived (room for %u)",
			 handover_type_name(m->type), m->n_fds, got, max);
		goto refuse;
	}
	m->text[sizeof(m->text) - 1] = '\0';
	*n_fds = got;
	return 0;

refuse:
	close_fds(fds, got);
	return -EPROTO;
}
