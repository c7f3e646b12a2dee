// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "telemetry/admin.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <zlib.h>

#include "common/addr.h"
#include "common/log.h"
#include "telemetry/debug.h"

/* A request head larger than this is refused: GETs from probes and
 * scrapers are a few hundred bytes. */
#define ADMIN_MAX_REQUEST 8192
/* A client gets this long to send its request and take the answer, so a
 * stalled one cannot hold the admin thread (it serves one at a time). */
#define ADMIN_IO_TIMEOUT_MS 2000
/* Pending connections the kernel queues for the admin thread. */
#define ADMIN_BACKLOG 64

struct admin {
	struct admin_opts opts;
	int listen_fd;
	int stop_fd;
	pthread_t thread;
};

static void send_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			return; /* timeout or peer gone: nothing more to do */
		}
		p += n;
		len -= n;
	}
}

static void respond(int fd, int status, const char *reason, const char *type, const char *extra,
		    const void *body, size_t len, bool head_only)
{
	char head[512];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
			 "Connection: close\r\n\r\n",
			 status, reason, type, len, extra ? extra : "");

	send_all(fd, head, (size_t)n);
	if (!head_only)
		send_all(fd, body, len);
}

static void respond_text(int fd, int status, const char *reason, const char *text, bool head_only)
{
	respond(fd, status, reason, "text/plain; charset=utf-8", NULL, text, strlen(text),
		head_only);
}

/* gzip src into *out (malloc'd). Returns 0 or -ENOMEM/-EIO. */
static int gzip_buf(const char *src, size_t len, char **out, size_t *out_len)
{
	z_stream z = {};
	/* 31 = 15 window bits + 16 for a gzip wrapper (RFC 1952). */
	if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return -ENOMEM;
	size_t cap = deflateBound(&z, len);
	char *dst = malloc(cap);

	if (!dst) {
		deflateEnd(&z);
		return -ENOMEM;
	}
	z.next_in = (Bytef *)src;
	z.avail_in = len;
	z.next_out = (Bytef *)dst;
	z.avail_out = cap;
	if (deflate(&z, Z_FINISH) != Z_STREAM_END) {
		deflateEnd(&z);
		free(dst);
		return -EIO;
	}
	*out = dst;
	*out_len = z.total_out;
	deflateEnd(&z);
	return 0;
}

/* Does the head carry Accept-Encoding with gzip? (Token match, not q-values:
 * Prometheus sends "gzip" plainly.) */
static bool accepts_gzip(const char *head)
{
	for (const char *line = strstr(head, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
		const char *h = line + 2;

		if (strncasecmp(h, "accept-encoding:", 16) != 0)
			continue;
		const char *end = strstr(h, "\r\n");

		for (const char *p = h + 16; p + 4 <= end; p++)
			if (strncasecmp(p, "gzip", 4) == 0)
				return true;
	}
	return false;
}

static void serve_metrics(struct admin *a, int fd, const char *head, bool head_only)
{
	struct metrics_buf b = {};
	char *gz = NULL;
	size_t gz_len;

	if (metrics_render(&a->opts.sources, &b)) {
		respond_text(fd, 500, "Internal Server Error", "out of memory rendering metrics\n",
			     head_only);
		metrics_buf_free(&b);
		return;
	}
	if (accepts_gzip(head) && gzip_buf(b.data, b.len, &gz, &gz_len) == 0) {
		respond(fd, 200, "OK", "text/plain; version=0.0.4; charset=utf-8",
			"Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n", gz, gz_len,
			head_only);
		free(gz);
	} else {
		respond(fd, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", NULL, b.data,
			b.len, head_only);
	}
	metrics_buf_free(&b);
}

/* /debug/...: JSON pages (debug.h). */
static void serve_debug(struct admin *a, int fd, const char *path, bool head_only)
{
	struct metrics_buf b = {};
	int err = debug_render(path, &a->opts.sources, &b);

	if (err == -ENOENT)
		respond_text(fd, 404, "Not Found",
			     "try /debug/config, /debug/services or /debug/endpoints\n", head_only);
	else if (err)
		respond_text(fd, 500, "Internal Server Error", "out of memory rendering the page\n",
			     head_only);
	else
		respond(fd, 200, "OK", "application/json", NULL, b.data, b.len, head_only);
	metrics_buf_free(&b);
}

/* Read one request head and answer it. */
static void admin_handle(struct admin *a, int fd)
{
	struct timeval tv = { ADMIN_IO_TIMEOUT_MS / 1000, (ADMIN_IO_TIMEOUT_MS % 1000) * 1000 };
	char req[ADMIN_MAX_REQUEST + 1], method[8], path[256], version[16];
	size_t len = 0;
	bool head_only;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	for (;;) {
		ssize_t n = recv(fd, req + len, ADMIN_MAX_REQUEST - len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		len += n;
		req[len] = '\0';
		if (memchr(req, '\0', len)) {
			respond_text(fd, 400, "Bad Request", "NUL byte in request\n", false);
			return;
		}
		if (strstr(req, "\r\n\r\n"))
			break;
		if (len == ADMIN_MAX_REQUEST) {
			respond_text(fd, 431, "Request Header Fields Too Large",
				     "request head too large\n", false);
			return;
		}
	}
	if (sscanf(req, "%7s %255s %15s", method, path, version) != 3 ||
	    strncmp(version, "HTTP/1.", 7) != 0) {
		respond_text(fd, 400, "Bad Request", "malformed request line\n", false);
		return;
	}
	head_only = !strcmp(method, "HEAD");
	if (strcmp(method, "GET") && !head_only) {
		respond(fd, 405, "Method Not Allowed", "text/plain; charset=utf-8",
			"Allow: GET, HEAD\r\n", "GET or HEAD only\n", 17, false);
		return;
	}
	char *query = strchr(path, '?');

	if (query)
		*query = '\0';
	if (!strcmp(path, "/healthz")) {
		respond_text(fd, 200, "OK", "ok\n", head_only);
	} else if (!strcmp(path, "/readyz")) {
		char why[512] = "";

		if (!a->opts.ready || a->opts.ready(a->opts.ready_ctx, why, sizeof(why)))
			respond_text(fd, 200, "OK", "ready\n", head_only);
		else {
			strncat(why, "\n", sizeof(why) - strlen(why) - 1);
			respond_text(fd, 503, "Service Unavailable", why, head_only);
		}
	} else if (!strcmp(path, "/metrics")) {
		serve_metrics(a, fd, req, head_only);
	} else if (!strncmp(path, "/debug/", 7)) {
		serve_debug(a, fd, path, head_only);
	} else {
		respond_text(fd, 404, "Not Found",
			     "try /healthz, /readyz, /metrics or /debug/{config,services,endpoints}\n",
			     head_only);
	}
}

static void *admin_main(void *arg)
{
	struct admin *a = arg;

	for (;;) {
		struct pollfd fds[2] = { { .fd = a->listen_fd, .events = POLLIN },
					 { .fd = a->stop_fd, .events = POLLIN } };

		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			pr_warn("admin: poll: %s", strerror(errno));
			return NULL;
		}
		if (fds[1].revents)
			return NULL;
		int fd = accept4(a->listen_fd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0)
			continue; /* EAGAIN, ECONNABORTED, EMFILE: try again on the next wakeup */
		admin_handle(a, fd);
		close(fd);
	}
}

int admin_start(const struct admin_opts *opts, struct admin **out, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	struct shoal_addr addr;
	uint16_t port_be;
	socklen_t slen;
	sigset_t all, old;
	int one = 1, e;
	struct admin *a;

	if (addr_parse_hostport(opts->listen, &addr, &port_be)) {
		snprintf(err, errlen, "admin address '%s': expected ADDR:PORT or [ADDR]:PORT",
			 opts->listen);
		return -EINVAL;
	}
	a = calloc(1, sizeof(*a));
	if (!a) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	a->opts = *opts;
	a->listen_fd = -1;
	a->stop_fd = eventfd(0, EFD_CLOEXEC);
	slen = addr_to_sockaddr(&addr, port_be, &ss);
	if (a->stop_fd >= 0)
		a->listen_fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (a->stop_fd < 0 || a->listen_fd < 0) {
		e = -errno;
		snprintf(err, errlen, "admin socket: %s", strerror(errno));
		goto fail;
	}
	setsockopt(a->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(a->listen_fd, (struct sockaddr *)&ss, slen) < 0 ||
	    listen(a->listen_fd, ADMIN_BACKLOG) < 0) {
		e = -errno;
		snprintf(err, errlen, "cannot bind the admin endpoint to %s: %s", opts->listen,
			 strerror(errno));
		goto fail;
	}
	/* Signals belong to the main thread's signalfd. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	e = -pthread_create(&a->thread, NULL, admin_main, a);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (e) {
		snprintf(err, errlen, "cannot start the admin thread: %s", strerror(-e));
		goto fail;
	}
	*out = a;
	return 0;
fail:
	if (a->listen_fd >= 0)
		close(a->listen_fd);
	if (a->stop_fd >= 0)
		close(a->stop_fd);
	free(a);
	return e;
}

void admin_stop(struct admin *a)
{
	uint64_t one = 1;

	if (!a)
		return;
	if (write(a->stop_fd, &one, sizeof(one)) != sizeof(one))
		pr_warn("admin: cannot signal the admin thread to stop: %s", strerror(errno));
	pthread_join(a->thread, NULL);
	close(a->listen_fd);
	close(a->stop_fd);
	free(a);
}
