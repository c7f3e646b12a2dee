// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "telemetry/admin_client.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/addr.h"

/* Connect fd to sa within the timeout. 0 or -errno. */
static int connect_timed(int fd, const struct sockaddr *sa, socklen_t len)
{
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	socklen_t elen = sizeof(int);
	int e = 0;

	if (connect(fd, sa, len) == 0)
		return 0;
	if (errno != EINPROGRESS)
		return -errno;
	if (poll(&p, 1, ADMIN_CLIENT_TIMEOUT_MS) <= 0)
		return -ETIMEDOUT;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) < 0)
		return -errno;
	return -e;
}

/* Read until EOF into a growing buffer. 0 or -errno. */
static int read_all(int fd, char **out, size_t *out_len)
{
	size_t cap = 65536, len = 0;
	char *buf = malloc(cap + 1);

	if (!buf)
		return -ENOMEM;
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t n;

		if (len == cap) {
			char *grown =
			    cap * 2 <= ADMIN_CLIENT_MAX_BYTES ? realloc(buf, cap * 2 + 1) : NULL;

			if (!grown) {
				free(buf);
				return -EFBIG;
			}
			buf = grown;
			cap *= 2;
		}
		if (poll(&p, 1, ADMIN_CLIENT_TIMEOUT_MS) <= 0) {
			free(buf);
			return -ETIMEDOUT;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0) {
			int e = -errno;

			free(buf);
			return e;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	*out = buf;
	*out_len = len;
	return 0;
}

int admin_client_get(const char *listen, const char *path, char **body, size_t *len, char *err,
		     size_t errlen)
{
	struct sockaddr_storage ss;
	struct shoal_addr addr;
	uint16_t port_be;
	char req[512], *resp = NULL, *start;
	size_t resp_len = 0;
	int fd, ret, status;

	if (addr_parse_hostport(listen, &addr, &port_be)) {
		snprintf(err, errlen, "admin address '%s': expected ADDR:PORT or [ADDR]:PORT",
			 listen);
		return -EINVAL;
	}
	socklen_t slen = addr_to_sockaddr(&addr, port_be, &ss);

	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "socket: %s", strerror(-ret));
		return ret;
	}
	ret = connect_timed(fd, (struct sockaddr *)&ss, slen);
	if (ret) {
		snprintf(err, errlen,
			 "cannot connect to the admin endpoint %s: %s (is shoald running? "
			 "see --admin)",
			 listen, strerror(-ret));
		goto out;
	}
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, listen);

	if (n < 0 || (size_t)n >= sizeof(req) || send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
		ret = -EIO;
		snprintf(err, errlen, "cannot send the request to %s", listen);
		goto out;
	}
	ret = read_all(fd, &resp, &resp_len);
	if (ret) {
		snprintf(err, errlen, "reading %s%s: %s", listen, path, strerror(-ret));
		goto out;
	}
	start = strstr(resp, "\r\n\r\n");
	if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1 || !start) {
		ret = -EPROTO;
		snprintf(err, errlen, "%s%s: not an HTTP answer", listen, path);
		goto out;
	}
	start += 4;
	if (status != 200) {
		ret = -EIO;
		snprintf(err, errlen, "%s%s answered %d: %.*s", listen, path, status,
			 (int)strcspn(start, "\n"), start);
		goto out;
	}
	*len = resp_len - (size_t)(start - resp);
	memmove(resp, start, *len + 1);
	*body = resp;
	resp = NULL;
out:
	free(resp);
	close(fd);
	return ret;
}
