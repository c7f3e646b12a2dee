// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The web dashboard on the admin endpoint: its embedded files, the state
 * JSON, and the bounds of its event stream (a cap on streams, a slow
 * reader's frames dropped and the stream cut, never queued).
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "telemetry/admin.h"
#include "telemetry/dashboard.h"

/* admin.c's ADMIN_MAX_STREAMS and ADMIN_EXCHANGE_TIMEOUT_MS. */
#define MAX_STREAMS 4
#define EXCHANGE_MS 2000

static struct admin *admin;
static int admin_port;

static int free_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	return ntohs(sin.sin_port);
}

static void start(unsigned int interval_ms)
{
	char listen[32], err[256];
	struct admin_opts o = {.listen = listen, .stream_interval_ms = interval_ms};

	admin_port = free_port();
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", admin_port);
	cr_assert_eq(admin_start(&o, &admin, err, sizeof(err)), 0, "%s", err);
}

static void stop(void)
{
	admin_stop(admin);
	admin = NULL;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A connected socket that sent raw; rcvbuf > 0 shrinks its receive buffer first. */
static int open_with(const char *raw, int rcvbuf)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
				  .sin_port = htons(admin_port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct timeval tv = {.tv_sec = 5};

	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(send(fd, raw, strlen(raw), MSG_NOSIGNAL), (ssize_t)strlen(raw));
	return fd;
}

/* Read from fd until needle has appeared count times (or EOF/timeout); the text read. */
static char *read_until(int fd, const char *needle, int count)
{
	size_t cap = 1 << 20, len = 0;
	char *buf = malloc(cap + 1);
	int seen = 0;

	buf[0] = '\0';
	while (seen < count && len < cap) {
		ssize_t n = recv(fd, buf + len, cap - len, 0);

		if (n <= 0)
			break;
		len += n;
		buf[len] = '\0';
		seen = 0;
		for (const char *p = strstr(buf, needle); p; p = strstr(p + 1, needle))
			seen++;
	}
	return buf;
}

static char *get(const char *raw)
{
	int fd = open_with(raw, 0);
	char *r = read_until(fd, "\x01never", 1);

	close(fd);
	return r;
}

Test(dashboard, serves_its_files_with_a_same_origin_policy)
{
	start(0);
	char *r = get("GET /dashboard HTTP/1.1\r\n\r\n");

	cr_assert(!strncmp(r, "HTTP/1.1 200 OK\r\n", 17), "%s", r);
	cr_expect_not_null(strstr(r, "Content-Type: text/html"));
	cr_expect_not_null(strstr(r, "Content-Security-Policy: default-src 'self'"));
	cr_expect_not_null(strstr(r, "/dashboard/app.js"));
	free(r);
	r = get("GET /dashboard/app.js HTTP/1.1\r\n\r\n");
	cr_expect(!strncmp(r, "HTTP/1.1 200 OK\r\n", 17), "%s", r);
	cr_expect_not_null(strstr(r, "text/javascript"));
	cr_expect_not_null(strstr(r, "new EventSource(\"/dashboard/events\")"));
	free(r);
	r = get("GET /dashboard/state HTTP/1.1\r\n\r\n");
	cr_expect(!strncmp(r, "HTTP/1.1 200 OK\r\n", 17), "%s", r);
	cr_expect_not_null(strstr(r, "\r\n\r\n{\"time_ms\":"), "%s", r);
	cr_expect_not_null(strstr(r, "\"services\":{\"services\":[]}"), "%s", r);
	cr_expect_not_null(strstr(r, "\"edges\":[],"), "%s", r);
	cr_expect_not_null(strstr(r, "\"caller_edges\":[]}"), "%s", r);
	free(r);
	r = get("GET /dashboard/nope.js HTTP/1.1\r\n\r\n");
	cr_expect(!strncmp(r, "HTTP/1.1 404 ", 13), "%s", r);
	free(r);
	/* Every embedded file is reachable, and the table ends. */
	int n = 0;

	for (const struct dashboard_asset *a = dashboard_assets; a->path; a++, n++)
		cr_expect_eq(dashboard_asset_find(a->path), a);
	cr_expect_eq(n, 3);
	stop();
}

/* The stream sends its head, then one frame per interval, each one line of JSON. */
Test(dashboard, events_stream_frames)
{
	start(50);
	int fd = open_with("GET /dashboard/events HTTP/1.1\r\n\r\n", 0);
	long long t0 = now_ms();
	char *r = read_until(fd, "data: {", 4);
	long long ms = now_ms() - t0;
	int frames = 0;

	cr_assert(!strncmp(r, "HTTP/1.1 200 OK\r\n", 17), "%s", r);
	cr_expect_not_null(strstr(r, "Content-Type: text/event-stream\r\n"));
	for (const char *p = strstr(r, "data: {"); p; p = strstr(p + 1, "data: {")) {
		const char *end = strstr(p, "\n\n");

		cr_assert_not_null(end, "frame %d not ended", frames);
		cr_expect_null(memchr(p, '\n', (size_t)(end - p)), "frame %d spans lines", frames);
		frames++;
	}
	cr_expect_eq(frames, 4, "%d frames", frames);
	/* The first at once, then one per 50 ms: about 150 ms, never bursts. */
	cr_expect(ms >= 120 && ms < 2000, "4 frames took %lld ms", ms);
	free(r);
	close(fd);
	stop();
}

/*
 * MAX_STREAMS streams are served; the next is answered 503, clearly, while
 * the endpoint's other pages still answer; once one closes, a new one is
 * taken.
 */
Test(dashboard, too_many_streams_are_refused)
{
	struct admin_stream_stats st;
	int fds[MAX_STREAMS];

	start(100);
	for (int i = 0; i < MAX_STREAMS; i++) {
		fds[i] = open_with("GET /dashboard/events HTTP/1.1\r\n\r\n", 0);
		char *r = read_until(fds[i], "data: {", 1);

		cr_assert(!strncmp(r, "HTTP/1.1 200 OK\r\n", 17), "stream %d: %s", i, r);
		free(r);
	}
	char *r = get("GET /dashboard/events HTTP/1.1\r\n\r\n");

	cr_expect(!strncmp(r, "HTTP/1.1 503 ", 13), "%s", r);
	cr_expect_not_null(strstr(r, "too many dashboard streams: at most 4"), "%s", r);
	free(r);
	r = get("GET /healthz HTTP/1.1\r\n\r\n");
	cr_expect(!strncmp(r, "HTTP/1.1 200 OK\r\n", 17), "%s", r);
	free(r);
	admin_get_stream_stats(admin, &st);
	cr_expect_eq(st.opened, MAX_STREAMS);
	cr_expect_eq(st.refused, 1);
	close(fds[0]);
	/* The admin thread sees the close at its next poll. */
	for (int tries = 0; tries < 50; tries++) {
		fds[0] = open_with("GET /dashboard/events HTTP/1.1\r\n\r\n", 0);
		r = read_until(fds[0], "\r\n", 1);
		bool ok = !strncmp(r, "HTTP/1.1 200 OK\r\n", 17);

		free(r);
		if (ok)
			break;
		close(fds[0]);
		usleep(20 * 1000);
	}
	admin_get_stream_stats(admin, &st);
	cr_expect_eq(st.opened, MAX_STREAMS + 1, "a freed slot was not reused");
	for (int i = 0; i < MAX_STREAMS; i++)
		close(fds[i]);
	stop();
}

/*
 * A client that stops reading: once its socket buffers are full, frames
 * are dropped instead of queued, and the stream is cut when a frame has
 * sat unsent for the exchange deadline; other streams keep their frames.
 */
Test(dashboard, a_slow_stream_drops_frames_then_is_cut, .timeout = 30)
{
	struct admin_stream_stats st;

	start(2); /* frames every 2 ms fill the buffers in well under a second */
	int slow = open_with("GET /dashboard/events HTTP/1.1\r\n\r\n", 4096);
	int fast = open_with("GET /dashboard/events HTTP/1.1\r\n\r\n", 0);
	long long t0 = now_ms(), cut_at = 0;
	size_t fast_bytes = 0;
	char buf[65536];

	while (now_ms() - t0 < 10000) {
		ssize_t n = recv(fast, buf, sizeof(buf), MSG_DONTWAIT);

		if (n > 0)
			fast_bytes += n;
		admin_get_stream_stats(admin, &st);
		if (st.cut) {
			cut_at = now_ms();
			break;
		}
		usleep(1000);
	}
	admin_get_stream_stats(admin, &st);
	cr_expect_eq(st.cut, 1, "the slow stream was not cut in 10 s");
	cr_expect_gt(st.dropped, 0, "no frame was dropped for the slow stream");
	cr_expect_gt(fast_bytes, 0);
	/* Cut a deadline after its buffers filled: not before the deadline itself. */
	cr_expect(cut_at - t0 >= EXCHANGE_MS - 100, "cut after %lld ms", cut_at - t0);
	/* The slow client reads what was in flight, then the end. */
	ssize_t n;

	while ((n = recv(slow, buf, sizeof(buf), 0)) > 0)
		;
	cr_expect(n == 0 || errno == ECONNRESET, "slow stream not closed: %zd %s", n,
		  strerror(errno));
	/* The fast one still streams. */
	uint64_t frames = st.frames;

	usleep(100 * 1000);
	while (recv(fast, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
	usleep(100 * 1000);
	admin_get_stream_stats(admin, &st);
	cr_expect_gt(st.frames, frames, "the fast stream stopped getting frames");
	close(slow);
	close(fast);
	stop();
}
