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
#include "telemetry/dashboard.h"
#include "telemetry/debug.h"

/* A request head larger than this is refused: GETs from probes and
 * scrapers are a few hundred bytes. */
#define ADMIN_MAX_REQUEST 8192
/*
 * A request target (path and query) longer than this is refused (400):
 * /debug/policy/check's query carries a SPIFFE ID and a request path,
 * percent-encoded (POLICY_CHECK_MAX_QUERY).
 */
#define ADMIN_MAX_TARGET 4600
#define ADMIN_XSTR(x) #x
#define ADMIN_STR(x) ADMIN_XSTR(x)
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
/*
 * Dashboard streams (/dashboard/events, Server-Sent Events) open at once,
 * outside the exchanges above so a dashboard never takes a probe's slot:
 * a few browser tabs. Past it a new one is answered 503.
 */
#define ADMIN_MAX_STREAMS 4
/* A stream gets a frame at most this often (the dashboard's refresh). */
#define ADMIN_STREAM_INTERVAL_MS 1000
/*
 * A stream's socket send buffer, fixed so that a client that stops reading
 * holds at most this much in the kernel (a frame of a large node is tens
 * of KiB; autotuning would let it grow to megabytes).
 */
#define ADMIN_STREAM_SNDBUF (256 * 1024)

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

/*
 * A dashboard stream. It holds at most one frame: a tick that finds the
 * last one still unsent drops its frame (the page misses a second, no
 * bytes queue up), and a frame the socket has not taken whole within
 * ADMIN_EXCHANGE_TIMEOUT_MS of being queued cuts the stream, as a slow
 * exchange is cut.
 */
struct admin_stream {
	int fd;		      /* -1: a free slot */
	uint64_t deadline_ms; /* the frame in out must be out by then; UINT64_MAX: none */
	struct admin_out out;
};

struct admin {
	struct admin_opts opts;
	int listen_fd;
	int stop_fd;
	pthread_t thread;
	uint64_t next_tick_ms;		 /* the streams' next frame */
	struct admin_stream_stats stats; /* written by the admin thread; atomics */
	struct admin_client clients[ADMIN_MAX_CLIENTS];
	struct admin_stream streams[ADMIN_MAX_STREAMS];
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
static void serve_debug(struct admin *a, struct admin_out *fd, const char *path,
			const char *query, bool head_only)
{
	struct metrics_buf b = {};
	int err = debug_render(path, query, &a->opts.sources, &b);

	if (err == -ENOENT)
		respond_text(fd, 404, "Not Found",
			     "try /debug/config, /debug/services, /debug/endpoints, /debug/pods, "
			     "/debug/identity, /debug/policy or /debug/policy/check\n",
			     head_only);
	else if (err == -EINVAL && !b.failed)
		respond(fd, 400, "Bad Request", "text/plain; charset=utf-8", NULL, b.data, b.len,
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

/* /dashboard, its files, and /dashboard/state (dashboard.h). */
static void serve_dashboard(struct admin *a, struct admin_out *fd, const char *path, bool head_only)
{
	const struct dashboard_asset *asset = dashboard_asset_find(path);
	struct metrics_buf b = {};

	if (asset) {
		/* The page may load and fetch only from this origin (docs/dashboards.md). */
		respond(fd, 200, "OK", asset->type,
			"Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
			"Content-Security-Policy: default-src 'self'; img-src 'self' data:; "
			"frame-ancestors 'none'\r\n",
			asset->data, asset->len, head_only);
		return;
	}
	if (strcmp(path, "/dashboard/state")) {
		respond_text(fd, 404, "Not Found",
			     "try /dashboard, /dashboard/state or /dashboard/events\n", head_only);
		return;
	}
	if (dashboard_render_state(&a->opts.sources, &b))
		respond_text(fd, 500, "Internal Server Error",
			     "out of memory rendering the state\n", head_only);
	else
		respond(fd, 200, "OK", "application/json", "Cache-Control: no-store\r\n", b.data,
			b.len, head_only);
	metrics_buf_free(&b);
}

/*
 * Answer the whole request head req into fd. Returns true, with nothing
 * answered, for a GET of /dashboard/events: the caller makes the
 * connection a stream.
 */
static bool admin_handle(struct admin *a, const char *req, struct admin_out *fd)
{
	char method[8], path[ADMIN_MAX_TARGET + 1], version[16];
	bool head_only;

	if (sscanf(req, "%7s %" ADMIN_STR(ADMIN_MAX_TARGET) "s %15s", method, path, version) != 3 ||
	    strncmp(version, "HTTP/1.", 7) != 0) {
		respond_text(fd, 400, "Bad Request", "malformed request line\n", false);
		return false;
	}
	head_only = !strcmp(method, "HEAD");
	if (strcmp(method, "GET") && !head_only) {
		respond(fd, 405, "Method Not Allowed", "text/plain; charset=utf-8",
			"Allow: GET, HEAD\r\n", "GET or HEAD only\n", 17, false);
		return false;
	}
	char *query = strchr(path, '?');

	if (query)
		*query++ = '\0';
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
		serve_debug(a, fd, path, query, head_only);
	} else if (!strcmp(path, "/dashboard/events") && !head_only) {
		return true;
	} else if (!strcmp(path, "/dashboard") || !strncmp(path, "/dashboard/", 11)) {
		serve_dashboard(a, fd, path, head_only);
	} else {
		respond_text(fd, 404, "Not Found",
			     "try /healthz, /readyz, /metrics, /dashboard or "
			     "/debug/{config,services,endpoints,pods,identity}\n",
			     head_only);
	}
	return false;
}

static uint64_t admin_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void admin_client_close(struct admin_client *cl)
{
	if (cl->fd >= 0)
		close(cl->fd); /* -1: a stream took it */
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

#define STAT_ADD(a, field) __atomic_add_fetch(&(a)->stats.field, 1, __ATOMIC_RELAXED)

static uint64_t admin_stream_interval(const struct admin *a)
{
	return a->opts.stream_interval_ms ? a->opts.stream_interval_ms : ADMIN_STREAM_INTERVAL_MS;
}

static void admin_stream_close(struct admin_stream *st)
{
	close(st->fd);
	st->fd = -1;
	free(st->out.data);
	memset(&st->out, 0, sizeof(st->out));
}

/*
 * Write what the socket takes of st's frame. Returns 0 (all out, or
 * EAGAIN: poll says when) or -1 when the client is gone.
 */
static int admin_stream_flush(struct admin *a, struct admin_stream *st)
{
	struct admin_out *o = &st->out;

	while (o->off < o->len) {
		ssize_t n = send(st->fd, o->data + o->off, o->len - o->off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n < 0)
			return -1;
		o->off += n;
	}
	if (st->deadline_ms != UINT64_MAX) {
		st->deadline_ms = UINT64_MAX;
		STAT_ADD(a, frames);
	}
	return 0;
}

/* Queue frame (len bytes) on st, or drop it when the last is still unsent. */
static void admin_stream_queue(struct admin *a, struct admin_stream *st, const char *frame,
			       size_t len, uint64_t now)
{
	if (st->out.off < st->out.len) {
		STAT_ADD(a, dropped);
		return;
	}
	st->out.len = st->out.off = 0;
	send_all(&st->out, frame, len);
	st->deadline_ms = now + ADMIN_EXCHANGE_TIMEOUT_MS;
	if (st->out.failed || admin_stream_flush(a, st))
		admin_stream_close(st);
}

/* "data: <state>\n\n" into f. Returns 0 or -ENOMEM. */
static int admin_stream_frame(struct admin *a, struct metrics_buf *f)
{
	metrics_buf_printf(f, "data: ");
	dashboard_render_state(&a->opts.sources, f);
	metrics_buf_printf(f, "\n\n");
	return f->failed ? -ENOMEM : 0;
}

/*
 * Make cl's connection a dashboard stream (the head of an event stream and
 * a first frame), or answer 503 in cl->out when ADMIN_MAX_STREAMS are open.
 */
static void admin_stream_open(struct admin *a, struct admin_client *cl, uint64_t now)
{
	static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
				   "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
				   "retry: 2000\n\n";
	struct admin_stream *st = NULL;
	struct metrics_buf f = {};
	bool any = false;
	int sndbuf = ADMIN_STREAM_SNDBUF;

	for (int i = 0; i < ADMIN_MAX_STREAMS; i++) {
		if (a->streams[i].fd >= 0)
			any = true;
		else if (!st)
			st = &a->streams[i];
	}
	if (!st) {
		char msg[128];
		int n = snprintf(msg, sizeof(msg),
				 "too many dashboard streams: at most %d at once; close a tab\n",
				 ADMIN_MAX_STREAMS);

		STAT_ADD(a, refused);
		respond(&cl->out, 503, "Service Unavailable", "text/plain; charset=utf-8",
			"Retry-After: 5\r\n", msg, (size_t)n, false);
		return;
	}
	if (admin_stream_frame(a, &f)) {
		respond_text(&cl->out, 500, "Internal Server Error",
			     "out of memory rendering the state\n", false);
		metrics_buf_free(&f);
		return;
	}
	setsockopt(cl->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	st->fd = cl->fd;
	cl->fd = -1;
	STAT_ADD(a, opened);
	send_all(&st->out, head, sizeof(head) - 1);
	send_all(&st->out, f.data, f.len);
	st->deadline_ms = now + ADMIN_EXCHANGE_TIMEOUT_MS;
	if (st->out.failed || admin_stream_flush(a, st))
		admin_stream_close(st);
	if (!any)
		a->next_tick_ms = now + admin_stream_interval(a);
	metrics_buf_free(&f);
}

/* Every stream's frame of this tick: one render, queued on each. */
static void admin_stream_tick(struct admin *a, uint64_t now)
{
	struct metrics_buf f = {};

	a->next_tick_ms = now + admin_stream_interval(a);
	if (admin_stream_frame(a, &f) == 0)
		for (int i = 0; i < ADMIN_MAX_STREAMS; i++)
			if (a->streams[i].fd >= 0)
				admin_stream_queue(a, &a->streams[i], f.data, f.len, now);
	metrics_buf_free(&f);
}

/* A stream's socket is readable: a client sends nothing more, so EOF or an error ends it. */
static bool admin_stream_read(struct admin_stream *st)
{
	char sink[512];

	for (;;) {
		ssize_t n = recv(st->fd, sink, sizeof(sink), 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return true;
		if (n <= 0)
			return false;
	}
}

void admin_get_stream_stats(struct admin *a, struct admin_stream_stats *out)
{
	out->opened = __atomic_load_n(&a->stats.opened, __ATOMIC_RELAXED);
	out->refused = __atomic_load_n(&a->stats.refused, __ATOMIC_RELAXED);
	out->frames = __atomic_load_n(&a->stats.frames, __ATOMIC_RELAXED);
	out->dropped = __atomic_load_n(&a->stats.dropped, __ATOMIC_RELAXED);
	out->cut = __atomic_load_n(&a->stats.cut, __ATOMIC_RELAXED);
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
		if (!cl->out.len && !cl->out.failed && admin_handle(a, cl->req, &cl->out)) {
			admin_stream_open(a, cl, admin_now_ms());
			if (cl->fd < 0)
				return false; /* the stream has it */
		}
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
		struct pollfd fds[2 + ADMIN_MAX_CLIENTS + ADMIN_MAX_STREAMS];
		struct admin_client *who[ADMIN_MAX_CLIENTS];
		struct admin_stream *whose[ADMIN_MAX_STREAMS];
		uint64_t now = admin_now_ms(), next = UINT64_MAX;
		int n = 2, n_clients, n_streams = 0, timeout;
		bool streaming = false;

		for (int i = 0; i < ADMIN_MAX_STREAMS; i++)
			streaming |= a->streams[i].fd >= 0;
		if (streaming && now >= a->next_tick_ms)
			admin_stream_tick(a, now);

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
		n_clients = n - 2;
		for (int i = 0; i < ADMIN_MAX_STREAMS; i++) {
			struct admin_stream *st = &a->streams[i];

			if (st->fd < 0)
				continue;
			if (now >= st->deadline_ms) {
				STAT_ADD(a, cut); /* its frame sat unsent too long: a slow client */
				admin_stream_close(st);
				continue;
			}
			if (st->deadline_ms < next)
				next = st->deadline_ms;
			whose[n_streams++] = st;
			fds[n++] = (struct pollfd){
			    .fd = st->fd,
			    .events = POLLIN | (st->out.off < st->out.len ? POLLOUT : 0)};
		}
		if (n_streams && a->next_tick_ms < next)
			next = a->next_tick_ms;
		timeout = next == UINT64_MAX ? -1 : next <= now ? 0 : (int)(next - now);
		if (poll(fds, n, timeout) < 0) {
			if (errno == EINTR)
				continue;
			pr_warn("admin: poll: %s", strerror(errno));
			return NULL;
		}
		if (fds[1].revents)
			return NULL;
		for (int i = 2; i < 2 + n_clients; i++)
			if (fds[i].revents && !admin_client_step(a, who[i - 2]))
				admin_client_close(who[i - 2]);
		for (int i = 0; i < n_streams; i++) {
			struct admin_stream *st = whose[i];
			short ev = fds[2 + n_clients + i].revents;

			if (!ev)
				continue;
			if (((ev & (POLLIN | POLLHUP | POLLERR)) && !admin_stream_read(st)) ||
			    ((ev & POLLOUT) && admin_stream_flush(a, st)))
				admin_stream_close(st);
		}
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
	for (int i = 0; i < ADMIN_MAX_STREAMS; i++)
		a->streams[i].fd = -1;
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
	for (int i = 0; i < ADMIN_MAX_STREAMS; i++)
		if (a->streams[i].fd >= 0)
			admin_stream_close(&a->streams[i]);
	close(a->listen_fd);
	close(a->stop_fd);
	free(a);
}
