// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "telemetry/admin.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "common/addr.h"
#include "common/log.h"
#include "telemetry/debug.h"

/* A request head larger than this is refused: GETs from probes and
 * scrapers are a few hundred bytes. */
#define ADMIN_MAX_REQUEST 8192
/*
 * A client gets this long for its whole exchange (request in, answer
 * out), however it trickles its bytes, so a slow one is cut in bounded
 * time: well under the kubelet probe's 1 s default timeout times its
 * failureThreshold, and ample for a local scrape.
 */
#define ADMIN_EXCHANGE_TIMEOUT_MS 2000
/*
 * Exchanges served at once (one thread, non-blocking sockets, one poll).
 * At the cap the client nearest its deadline (the oldest) is cut to make
 * room, so slow clients cannot keep a probe out: probes, scrapes and
 * shoalctl need a handful.
 */
#define ADMIN_MAX_CLIENTS 32
/* Pending connections the kernel queues for the admin thread. */
#define ADMIN_BACKLOG 64

/* An answer being written: built whole, then sent as the socket takes it. */
struct admin_out {
	char *data;
	size_t len, cap, off;
	bool failed; /* out of memory: the client is closed without an answer */
};

struct admin_client {
	int fd; /* -1: a free slot */
	uint64_t deadline_ms;
	size_t req_len;
	bool answered; /* the answer is in out; only writing is left */
	struct admin_out out;
	char req[ADMIN_MAX_REQUEST + 1];
};

struct admin {
	struct admin_opts opts;
	int listen_fd;
	int stop_fd;
	pthread_t thread;
	struct admin_client clients[ADMIN_MAX_CLIENTS];
};

/* Append len bytes of data to the answer o (o->failed when memory is short). */
static void send_all(struct admin_out *o, const void *data, size_t len)
{
	if (o->failed || !len)
		return;
	if (o->len + len > o->cap) {
		size_t cap = o->cap ? o->cap : 1024;
		char *grown;

		while (cap < o->len + len)
			cap *= 2;
		grown = realloc(o->data, cap);
		if (!grown) {
			o->failed = true;
			return;
		}
		o->data = grown;
		o->cap = cap;
	}
	memcpy(o->data + o->len, data, len);
	o->len += len;
}

static void respond(struct admin_out *fd, int status, const char *reason, const char *type,
		    const char *extra, const void *body, size_t len, bool head_only)
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

static void respond_text(struct admin_out *fd, int status, const char *reason, const char *text,
			 bool head_only)
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

static void serve_metrics(struct admin *a, struct admin_out *fd, const char *head, bool head_only)
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
static void serve_debug(struct admin *a, struct admin_out *fd, const char *path, bool head_only)
{
	struct metrics_buf b = {};
	int err = debug_render(path, &a->opts.sources, &b);

	if (err == -ENOENT)
		respond_text(
		    fd, 404, "Not Found",
		    "try /debug/config, /debug/services, /debug/endpoints or /debug/pods\n",
		    head_only);
	else if (err)
		respond_text(fd, 500, "Internal Server Error", "out of memory rendering the page\n",
			     head_only);
	else
		respond(fd, 200, "OK", "application/json", NULL, b.data, b.len, head_only);
	metrics_buf_free(&b);
}

/*
 * Read what cl sent. Returns 1 once an answer is due (a whole head
 * arrived; a malformed one is answered in cl->out already), 0 to wait for
 * more, -1 when the client went away or failed.
 */
static int admin_read(struct admin_client *cl)
{
	struct admin_out *fd = &cl->out;
	char *req = cl->req;

	for (;;) {
		ssize_t n = recv(cl->fd, req + cl->req_len, ADMIN_MAX_REQUEST - cl->req_len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n <= 0)
			return -1;
		cl->req_len += n;
		req[cl->req_len] = '\0';
		if (memchr(req, '\0', cl->req_len)) {
			respond_text(fd, 400, "Bad Request", "NUL byte in request\n", false);
			return 1;
		}
		if (strstr(req, "\r\n\r\n"))
			return 1;
		if (cl->req_len == ADMIN_MAX_REQUEST) {
			respond_text(fd, 431, "Request Header Fields Too Large",
				     "request head too large\n", false);
			return 1;
		}
	}
}

/* Answer the whole request head req into fd. */
static void admin_handle(struct admin *a, const char *req, struct admin_out *fd)
{
	char method[8], path[256], version[16];
	bool head_only;

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
		respond_text(
		    fd, 404, "Not Found",
		    "try /healthz, /readyz, /metrics or /debug/{config,services,endpoints,pods}\n",
		    head_only);
	}
}

static uint64_t admin_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void admin_client_close(struct admin_client *cl)
{
	close(cl->fd);
	cl->fd = -1;
	free(cl->out.data);
	memset(&cl->out, 0, sizeof(cl->out));
}

/* Write what the socket takes of cl's answer; true once all of it is out. */
static bool admin_write(struct admin_client *cl)
{
	struct admin_out *o = &cl->out;

	while (o->off < o->len) {
		ssize_t n = send(cl->fd, o->data + o->off, o->len - o->off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return false; /* EAGAIN: poll says when; a failure: the deadline ends it */
		o->off += n;
	}
	return true;
}

/* Make progress on cl; false once it is done (answered, or gone) and may be closed. */
static bool admin_client_step(struct admin *a, struct admin_client *cl)
{
	if (!cl->answered) {
		int r = admin_read(cl);

		if (r < 0)
			return false;
		if (r == 0)
			return true;
		if (!cl->out.len && !cl->out.failed)
			admin_handle(a, cl->req, &cl->out);
		cl->answered = true;
		if (cl->out.failed)
			return false;
	}
	return !admin_write(cl);
}

/* Take the connections queued on the listener; at the cap the oldest client makes room. */
static void admin_accept(struct admin *a, uint64_t now)
{
	for (int round = 0; round < ADMIN_MAX_CLIENTS; round++) {
		struct admin_client *slot = NULL, *oldest = NULL;
		int fd = accept4(a->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (fd < 0)
			return; /* EAGAIN, ECONNABORTED, EMFILE: try again on the next wakeup */
		for (int i = 0; i < ADMIN_MAX_CLIENTS && !slot; i++) {
			struct admin_client *cl = &a->clients[i];

			if (cl->fd < 0)
				slot = cl;
			else if (!oldest || cl->deadline_ms < oldest->deadline_ms)
				oldest = cl;
		}
		if (!slot) {
			admin_client_close(oldest);
			slot = oldest;
		}
		slot->fd = fd;
		slot->deadline_ms = now + ADMIN_EXCHANGE_TIMEOUT_MS;
		slot->req_len = 0;
		slot->answered = false;
		/* The request usually came with the connection: answer it now. */
		if (!admin_client_step(a, slot))
			admin_client_close(slot);
	}
}

/*
 * One thread, one poll over the listener and every client: each reads
 * its head, gets its answer built whole and writes it, non-blocking and
 * within its ADMIN_EXCHANGE_TIMEOUT_MS deadline, past which it is cut.
 */
static void *admin_main(void *arg)
{
	struct admin *a = arg;

	for (;;) {
		struct pollfd fds[2 + ADMIN_MAX_CLIENTS];
		struct admin_client *who[ADMIN_MAX_CLIENTS];
		uint64_t now = admin_now_ms(), next = UINT64_MAX;
		int n = 2, timeout;

		fds[0] = (struct pollfd){.fd = a->listen_fd, .events = POLLIN};
		fds[1] = (struct pollfd){.fd = a->stop_fd, .events = POLLIN};
		for (int i = 0; i < ADMIN_MAX_CLIENTS; i++) {
			struct admin_client *cl = &a->clients[i];

			if (cl->fd < 0)
				continue;
			if (now >= cl->deadline_ms) {
				admin_client_close(cl); /* its deadline passed: cut */
				continue;
			}
			if (cl->deadline_ms < next)
				next = cl->deadline_ms;
			who[n - 2] = cl;
			fds[n++] = (struct pollfd){.fd = cl->fd,
						   .events = cl->answered ? POLLOUT : POLLIN};
		}
		timeout = next == UINT64_MAX ? -1 : (int)(next - now);
		if (poll(fds, n, timeout) < 0) {
			if (errno == EINTR)
				continue;
			pr_warn("admin: poll: %s", strerror(errno));
			return NULL;
		}
		if (fds[1].revents)
			return NULL;
		for (int i = 2; i < n; i++)
			if (fds[i].revents && !admin_client_step(a, who[i - 2]))
				admin_client_close(who[i - 2]);
		if (fds[0].revents)
			admin_accept(a, admin_now_ms());
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
	for (int i = 0; i < ADMIN_MAX_CLIENTS; i++)
		a->clients[i].fd = -1;
	a->stop_fd = eventfd(0, EFD_CLOEXEC);
	slen = addr_to_sockaddr(&addr, port_be, &ss);
	/* Non-blocking: admin_accept takes what is queued, then returns to poll. */
	if (a->stop_fd >= 0)
		a->listen_fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
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
	for (int i = 0; i < ADMIN_MAX_CLIENTS; i++)
		if (a->clients[i].fd >= 0)
			admin_client_close(&a->clients[i]);
	close(a->listen_fd);
	close(a->stop_fd);
	free(a);
}
