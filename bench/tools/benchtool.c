// SPDX-License-Identifier: MIT
/*
 * benchtool: the small TCP tools scripts/bench needs and no Debian package
 * gives in the form we want.
 *
 *   benchtool serve PORT                  echo server (epoll, any number of
 *                                         connections), on 0.0.0.0:PORT
 *   benchtool pingpong ADDR:PORT SIZE SECONDS
 *                                         one connection, SIZE-byte message,
 *                                         wait for the echo, repeat; prints
 *                                         round trips/s and RTT percentiles
 *   benchtool hold ADDR:PORT N [silent|http]
 *                                         open N connections, echo one byte
 *                                         on each (so every hop has really
 *                                         set the connection up and carried
 *                                         data), print "held N", then sleep
 *                                         until SIGTERM; "silent": connect
 *                                         only, no byte; "http": one GET
 *                                         and its whole response instead
 *   benchtool connect ADDR:PORT SECONDS
 *                                         new connections one after another:
 *                                         connect, one byte each way (so the
 *                                         connection is set up end to end,
 *                                         not only to a proxy's accept
 *                                         queue), close; prints connections/s
 *                                         and percentiles of each one's time
 *
 * Built by scripts/bench with cc into build-bench/tools/; not part of the
 * meson build on purpose (it is a measuring tool, not shoal).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* One message of the ping-pong is at most this big: it is a latency probe. */
#define PP_MAX_SIZE 65536
/* RTT samples kept; beyond that the run keeps going but stops recording. */
#define PP_MAX_SAMPLES (8u << 20)
#define SERVE_MAX_EVENTS 256
#define SERVE_BUF 65536
/* hold: connections that may fail (and be retried) before it gives up. */
#define HOLD_MAX_FAILURES 100
/* connect: failed connections counted before it gives up (a broken path,
 * not noise). */
#define CONNECT_MAX_FAILURES 1000

static void die(const char *what)
{
	fprintf(stderr, "benchtool: %s: %s\n", what, strerror(errno));
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void parse_addr(const char *s, struct sockaddr_in *sa)
{
	char host[64];
	const char *colon = strrchr(s, ':');

	if (!colon || (size_t)(colon - s) >= sizeof(host)) {
		fprintf(stderr, "benchtool: bad address '%s' (want A.B.C.D:PORT)\n", s);
		exit(2);
	}
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &sa->sin_addr) != 1) {
		fprintf(stderr, "benchtool: bad IPv4 address '%s'\n", host);
		exit(2);
	}
}

static int dial(const struct sockaddr_in *sa)
{
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("socket");
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0)
		die("connect");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static int full_io(int fd, char *buf, size_t len, int do_write)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = do_write ? send(fd, buf + done, len - done, MSG_NOSIGNAL)
				     : read(fd, buf + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void __attribute__((noreturn)) serve(int port)
{
	struct epoll_event ev, evs[SERVE_MAX_EVENTS];
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	static char buf[SERVE_BUF];
	int one = 1, lfd, ep;

	raise_nofile();
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		die("socket");
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("bind");
	if (listen(lfd, 65535) < 0)
		die("listen");
	ep = epoll_create1(EPOLL_CLOEXEC);
	ev.events = EPOLLIN;
	ev.data.fd = lfd;
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	for (;;) {
		int n = epoll_wait(ep, evs, SERVE_MAX_EVENTS, -1);

		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;

			if (fd == lfd) {
				int c;

				while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
					setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					ev.events = EPOLLIN;
					ev.data.fd = c;
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
				}
				continue;
			}
			for (;;) {
				ssize_t r = read(fd, buf, sizeof(buf));

				if (r > 0) {
					/* Echo replies are small; a blocking-style
					 * retry loop is enough for a bench tool. */
					ssize_t off = 0;

					while (off < r) {
						ssize_t w = send(fd, buf + off, (size_t)(r - off), MSG_NOSIGNAL);

						if (w < 0 && errno == EAGAIN)
							continue;
						if (w < 0)
							break;
						off += w;
					}
					continue;
				}
				if (r < 0 && errno == EAGAIN)
					break;
				close(fd);
				break;
			}
		}
	}
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static int pingpong(const char *addr, size_t size, double seconds)
{
	struct sockaddr_in sa;
	static char buf[PP_MAX_SIZE];
	uint32_t *rtt = malloc(PP_MAX_SAMPLES * sizeof(*rtt));
	uint64_t start, end, t0, t1;
	size_t n = 0, total = 0;
	int fd;

	if (!rtt || size == 0 || size > PP_MAX_SIZE) {
		fprintf(stderr, "benchtool: pingpong size must be 1..%d\n", PP_MAX_SIZE);
		return 2;
	}
	parse_addr(addr, &sa);
	fd = dial(&sa);
	memset(buf, 'x', size);
	/* Warm-up: the first round trips set up the path (and the sockmap's
	 * sticky decision), which is not what we measure. */
	for (int i = 0; i < 100; i++)
		if (full_io(fd, buf, size, 1) || full_io(fd, buf, size, 0))
			die("pingpong warm-up");
	start = now_ns();
	end = start + (uint64_t)(seconds * 1e9);
	do {
		t0 = now_ns();
		if (full_io(fd, buf, size, 1) || full_io(fd, buf, size, 0))
			die("pingpong");
		t1 = now_ns();
		if (n < PP_MAX_SAMPLES)
			rtt[n++] = (uint32_t)((t1 - t0) > UINT32_MAX ? UINT32_MAX : (t1 - t0));
		total++;
	} while (t1 < end);
	qsort(rtt, n, sizeof(*rtt), cmp_u32);
	printf("roundtrips=%zu rate=%.0f p50_us=%.2f p99_us=%.2f\n", total,
	       (double)total / ((double)(t1 - start) / 1e9), rtt[n / 2] / 1000.0,
	       rtt[(size_t)((double)n * 0.99)] / 1000.0);
	close(fd);
	free(rtt);
	return 0;
}

/*
 * connect: new connections for SECONDS, one at a time: connect, one byte
 * there and back, close; at most PP_MAX_SAMPLES timings are kept. Prints
 * "conns=N rate=R p50_us=A p99_us=B failed=F"; 0, or 1 after too many
 * failures.
 */
static int connect_rate(const char *addr, double seconds)
{
	struct sockaddr_in sa;
	uint32_t *lat = malloc(PP_MAX_SAMPLES * sizeof(*lat));
	uint64_t start, end, t0, t1 = 0;
	size_t n = 0, total = 0, failed = 0;
	char c = 'c';

	if (!lat)
		die("connect: malloc");
	parse_addr(addr, &sa);
	start = now_ns();
	end = start + (uint64_t)(seconds * 1e9);
	do {
		int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0)
			die("connect: socket");
		t0 = now_ns();
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		errno = 0;
		if (connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    full_io(fd, &c, 1, 1) || full_io(fd, &c, 1, 0)) {
			if (failed++ == 0)
				fprintf(stderr, "benchtool: connect %s: %s\n", addr,
					errno ? strerror(errno) : "closed by the peer");
			close(fd);
			if (failed > CONNECT_MAX_FAILURES) {
				fprintf(stderr, "benchtool: connect: %zu failures\n", failed);
				return 1;
			}
			t1 = now_ns();
			continue;
		}
		close(fd);
		t1 = now_ns();
		if (n < PP_MAX_SAMPLES)
			lat[n++] = (uint32_t)((t1 - t0) > UINT32_MAX ? UINT32_MAX : (t1 - t0));
		total++;
	} while (t1 < end);
	if (!n) {
		fprintf(stderr, "benchtool: connect: no connection completed\n");
		return 1;
	}
	qsort(lat, n, sizeof(*lat), cmp_u32);
	printf("conns=%zu rate=%.0f p50_us=%.2f p99_us=%.2f failed=%zu\n", total,
	       (double)total / ((double)(t1 - start) / 1e9), lat[n / 2] / 1000.0,
	       lat[(size_t)((double)n * 0.99)] / 1000.0, failed);
	free(lat);
	return 0;
}

static volatile sig_atomic_t stop;
static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

/*
 * One GET on fd and its whole response (a head, then Content-Length bytes
 * of body): 0, or -1 with errno (0: the peer closed or answered oddly).
 */
static int http_exchange(int fd)
{
	static const char req[] = "GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
	char buf[4096], *end, *cl;
	size_t got = 0, head, want;
	ssize_t n;

	if (full_io(fd, (char *)req, sizeof(req) - 1, 1))
		return -1;
	while (!(end = memmem(buf, got, "\r\n\r\n", 4))) {
		if (got == sizeof(buf) - 1)
			return errno = 0, -1;
		n = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (n <= 0)
			return errno = n ? errno : 0, -1;
		got += (size_t)n;
	}
	buf[got] = '\0';
	head = (size_t)(end + 4 - buf);
	cl = strcasestr(buf, "\r\ncontent-length:");
	if (!cl || cl > end)
		return errno = 0, -1;
	want = head + strtoul(cl + 17, NULL, 10);
	while (got < want) {
		n = read(fd, buf, sizeof(buf) < want - got ? sizeof(buf) : want - got);
		if (n <= 0)
			return errno = n ? errno : 0, -1;
		got += (size_t)n;
	}
	return 0;
}

enum hold_mode { HOLD_ECHO, HOLD_SILENT, HOLD_HTTP };

static int hold(const char *addr, long count, enum hold_mode mode)
{
	long failed = 0;
	struct sockaddr_in sa;
	char c = 'h';

	raise_nofile();
	parse_addr(addr, &sa);
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	/* A connection that fails is retried (a few times in all) and
	 * counted: the caller reports it rather than losing the whole run. */
	for (long i = 0; i < count; i++) {
		int fd = dial(&sa);

		errno = 0;
		if ((mode == HOLD_ECHO && (full_io(fd, &c, 1, 1) || full_io(fd, &c, 1, 0))) ||
		    (mode == HOLD_HTTP && http_exchange(fd))) {
			fprintf(stderr, "benchtool: hold: connection %ld: %s\n", i,
				errno ? strerror(errno) : "closed by the peer");
			close(fd);
			if (++failed > HOLD_MAX_FAILURES)
				die("hold: too many failed connections");
			i--;
		}
	}
	printf("held %ld failed %ld\n", count, failed);
	fflush(stdout);
	while (!stop)
		pause();
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "serve"))
		serve(atoi(argv[2]));
	if (argc == 5 && !strcmp(argv[1], "pingpong"))
		return pingpong(argv[2], (size_t)atol(argv[3]), atof(argv[4]));
	if (argc == 4 && !strcmp(argv[1], "hold"))
		return hold(argv[2], atol(argv[3]), HOLD_ECHO);
	if (argc == 5 && !strcmp(argv[1], "hold") && !strcmp(argv[4], "silent"))
		return hold(argv[2], atol(argv[3]), HOLD_SILENT);
	if (argc == 5 && !strcmp(argv[1], "hold") && !strcmp(argv[4], "http"))
		return hold(argv[2], atol(argv[3]), HOLD_HTTP);
	if (argc == 4 && !strcmp(argv[1], "connect"))
		return connect_rate(argv[2], atof(argv[3]));
	fprintf(stderr, "usage: benchtool serve PORT | pingpong ADDR:PORT SIZE SECONDS | "
			"hold ADDR:PORT N [silent|http] | connect ADDR:PORT SECONDS\n");
	return 2;
}
