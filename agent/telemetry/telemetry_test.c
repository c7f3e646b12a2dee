// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The metrics text and the admin endpoint, over real sockets on 127.0.0.1. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "telemetry/admin.h"
#include "telemetry/metrics.h"

/* Every line is "# HELP name text", "# TYPE name type" or "name[{labels}] value",
 * and every sample's family was announced by HELP and TYPE before it. */
static void check_exposition(const char *text)
{
	char *copy = strdup(text), *save, *line;
	char family[256] = "";
	int samples = 0;

	for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char name[256];

		if (!strncmp(line, "# HELP ", 7)) {
			cr_assert_eq(sscanf(line + 7, "%255s", family), 1);
			continue;
		}
		if (!strncmp(line, "# TYPE ", 7)) {
			char type[32];

			cr_assert_eq(sscanf(line + 7, "%255s %31s", name, type), 2);
			cr_assert_str_eq(name, family, "TYPE follows its HELP: %s", line);
			cr_assert(!strcmp(type, "counter") || !strcmp(type, "gauge") ||
				      !strcmp(type, "histogram"),
				  "%s", line);
			continue;
		}
		size_t n = strcspn(line, "{ ");

		cr_assert_lt(n, sizeof(name));
		memcpy(name, line, n);
		name[n] = '\0';
		/* A histogram's samples are its name with _bucket, _sum or _count. */
		for (const char *sfx = "_bucket\0_sum\0_count\0"; *sfx; sfx += strlen(sfx) + 1) {
			size_t fl = strlen(family);

			if (n == fl + strlen(sfx) && !strncmp(name, family, fl) &&
			    !strcmp(name + fl, sfx))
				name[fl] = '\0';
		}
		cr_assert_str_eq(name, family, "sample of an announced family: %s", line);
		cr_assert(isdigit((unsigned char)line[strlen(line) - 1]), "numeric value: %s", line);
		samples++;
	}
	cr_assert_gt(samples, 0);
	free(copy);
}

Test(metrics, renders_every_family_without_sources)
{
	struct metrics_sources src = { .start_time = 1700000000.5 };
	struct metrics_buf b = {};

	cr_assert_eq(metrics_render(&src, &b), 0);
	cr_assert_not_null(strstr(b.data, "# TYPE shoal_datapath_connect_intercepted_total counter"));
	cr_assert_not_null(strstr(b.data, "\nshoal_datapath_up 0\n"), "no pins: datapath down");
	cr_assert_not_null(strstr(b.data, "# TYPE shoal_proxy_accepted_total counter"));
	cr_assert_not_null(strstr(b.data, "shoal_build_info{version=\""));
	cr_assert_not_null(strstr(b.data, "shoal_process_start_time_seconds 1700000000.500"));
	check_exposition(b.data);
	metrics_buf_free(&b);
}

static int free_port(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	return ntohs(sin.sin_port);
}

static struct admin *admin;
static int admin_port;
static bool is_ready;

static bool test_ready(void *ctx, char *why, size_t len)
{
	(void)ctx;
	if (!is_ready)
		snprintf(why, len, "proxy not listening");
	return is_ready;
}

static void admin_setup(void)
{
	char listen[32], err[256];
	struct admin_opts o = { .listen = listen, .ready = test_ready };

	admin_port = free_port();
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", admin_port);
	cr_assert_eq(admin_start(&o, &admin, err, sizeof(err)), 0, "%s", err);
}

static void admin_teardown(void)
{
	admin_stop(admin);
}

/* Send raw, read the whole answer (the server closes). */
static char *exchange(const char *raw, size_t raw_len, size_t *out_len)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(admin_port),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	size_t cap = 1 << 20, len = 0;
	char *buf = malloc(cap + 1);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ssize_t n;

	cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(send(fd, raw, raw_len, MSG_NOSIGNAL), (ssize_t)raw_len);
	while ((n = recv(fd, buf + len, cap - len, 0)) > 0)
		len += n;
	close(fd);
	buf[len] = '\0';
	*out_len = len;
	return buf;
}

static char *get(const char *raw)
{
	size_t len;

	return exchange(raw, strlen(raw), &len);
}

TestSuite(admin, .init = admin_setup, .fini = admin_teardown);

Test(admin, healthz_readyz_and_errors)
{
	char *r = get("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");

	cr_assert(!strncmp(r, "HTTP/1.1 200 OK\r\n", 17), "%s", r);
	free(r);
	is_ready = false;
	r = get("GET /readyz HTTP/1.1\r\n\r\n");
	cr_assert(!strncmp(r, "HTTP/1.1 503 ", 13), "%s", r);
	cr_assert_not_null(strstr(r, "proxy not listening"));
	free(r);
	is_ready = true;
	r = get("GET /readyz HTTP/1.1\r\n\r\n");
	cr_assert(!strncmp(r, "HTTP/1.1 200 ", 13), "%s", r);
	free(r);
	r = get("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
	cr_assert(!strncmp(r, "HTTP/1.1 405 ", 13), "%s", r);
	free(r);
	r = get("GET /nope HTTP/1.1\r\n\r\n");
	cr_assert(!strncmp(r, "HTTP/1.1 404 ", 13), "%s", r);
	free(r);
	r = get("garbage\r\n\r\n");
	cr_assert(!strncmp(r, "HTTP/1.1 400 ", 13), "%s", r);
	free(r);
	r = get("HEAD /healthz HTTP/1.1\r\n\r\n");
	cr_assert(!strncmp(r, "HTTP/1.1 200 ", 13), "%s", r);
	cr_assert_null(strstr(r, "\r\n\r\nok"), "HEAD has no body");
	free(r);
}

Test(admin, refuses_oversized_and_nul)
{
	size_t n = 20000, len;
	char *big = malloc(n);
	char *r;

	memset(big, 'a', n);
	memcpy(big, "GET /", 5);
	r = exchange(big, n, &len);
	cr_assert(!strncmp(r, "HTTP/1.1 431 ", 13), "%s", r);
	free(r);
	r = exchange("GET /\0x HTTP/1.1\r\n\r\n", 20, &len);
	cr_assert(!strncmp(r, "HTTP/1.1 400 ", 13), "%s", r);
	free(r);
	free(big);
}

Test(admin, metrics_plain_and_gzip)
{
	char *r = get("GET /metrics HTTP/1.1\r\n\r\n");
	char *body = strstr(r, "\r\n\r\n");

	cr_assert(!strncmp(r, "HTTP/1.1 200 ", 13), "%s", r);
	cr_assert_not_null(strstr(r, "Content-Type: text/plain; version=0.0.4"));
	check_exposition(body + 4);
	free(r);

	size_t len;

	const char *gz_req = "GET /metrics HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n";

	r = exchange(gz_req, strlen(gz_req), &len);
	body = strstr(r, "\r\n\r\n") + 4;
	cr_assert_not_null(strstr(r, "Content-Encoding: gzip"));
	/* Inflate and check it is the same exposition. */
	char *plain = malloc(1 << 20);
	z_stream z = { .next_in = (Bytef *)body, .avail_in = (uInt)(len - (body - r)),
		       .next_out = (Bytef *)plain, .avail_out = (1 << 20) - 1 };

	cr_assert_eq(inflateInit2(&z, 31), Z_OK);
	cr_assert_eq(inflate(&z, Z_FINISH), Z_STREAM_END);
	plain[z.total_out] = '\0';
	inflateEnd(&z);
	check_exposition(plain);
	cr_assert_not_null(strstr(plain, "shoal_build_info"));
	free(plain);
	free(r);
}

/* ---- slow clients cannot block the admin endpoint ---------------------- */

#define SLOW_CLIENTS 4
/* The exchange deadline (ADMIN_EXCHANGE_TIMEOUT_MS in admin.c). */
#define EXCHANGE_MS 2000

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct slowloris {
	int fd;
	pthread_t thread;
	atomic_llong cut_ms; /* when the admin endpoint closed it; 0: not yet */
	long long start_ms;
};

/* Send a request head one byte every 250 ms, never finishing, until cut. */
static void *slowloris_main(void *arg)
{
	struct slowloris *sl = arg;
	const char *head = "GET /healthz HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

	for (size_t i = 0; head[i]; i++) {
		char c;

		if (send(sl->fd, &head[i], 1, MSG_NOSIGNAL) != 1 ||
		    recv(sl->fd, &c, 1, MSG_DONTWAIT) == 0 ||
		    (errno != EAGAIN && errno != EWOULDBLOCK)) {
			atomic_store(&sl->cut_ms, now_ms());
			return NULL;
		}
		usleep(250 * 1000);
	}
	return NULL;
}

/*
 * Clients that trickle a head a byte at a time (each byte well inside any
 * per-read timeout) do not hold /healthz back: it answers at once while
 * they run, and each of them is cut at its exchange deadline. Before, one
 * client at a time was served and each byte renewed its 2 s timeout.
 */
Test(admin, slow_clients_do_not_block_healthz_and_are_cut_at_their_deadline)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(admin_port),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	static struct slowloris sl[SLOW_CLIENTS];
	long long worst = 0;

	for (int i = 0; i < SLOW_CLIENTS; i++) {
		sl[i].fd = socket(AF_INET, SOCK_STREAM, 0);
		cr_assert_eq(connect(sl[i].fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
		sl[i].start_ms = now_ms();
		atomic_store(&sl[i].cut_ms, 0);
		cr_assert_eq(pthread_create(&sl[i].thread, NULL, slowloris_main, &sl[i]), 0);
	}
	usleep(300 * 1000);
	/* Probes while the slow clients trickle, up to their deadline. */
	for (int k = 0; k < 6; k++) {
		long long t0 = now_ms(), ms;
		char *r = get("GET /healthz HTTP/1.1\r\n\r\n");

		ms = now_ms() - t0;
		cr_expect(!strncmp(r, "HTTP/1.1 200 OK\r\n", 17), "probe %d: '%s'", k, r);
		free(r);
		if (ms > worst)
			worst = ms;
		usleep(200 * 1000);
	}
	/* A probe is a few syscalls; 250 ms leaves a loaded machine room. */
	cr_expect_lt(worst, 250, "/healthz took %lld ms with %d slow clients", worst,
		     SLOW_CLIENTS);
	for (int i = 0; i < SLOW_CLIENTS; i++) {
		long long cut;

		pthread_join(sl[i].thread, NULL);
		cut = atomic_load(&sl[i].cut_ms);
		cr_expect_neq(cut, 0, "slow client %d was never cut", i);
		if (cut)
			cr_expect(cut - sl[i].start_ms >= EXCHANGE_MS - 100 &&
				      cut - sl[i].start_ms < EXCHANGE_MS + 1000,
				  "slow client %d cut after %lld ms, want about %d", i,
				  cut - sl[i].start_ms, EXCHANGE_MS);
		close(sl[i].fd);
	}
}
