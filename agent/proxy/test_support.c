// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "proxy/test_support.h"

#include <criterion/criterion.h>
#include <stdlib.h>

#include "config/config.h"
#include "policy/policy.h"
#include "telemetry/metrics.h"
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

uint64_t test_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct sockaddr_in test_loopback(uint16_t port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sin;
}

int test_bound_socket(int backlog)
{
	struct sockaddr_in sin = test_loopback(0);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0, "bind: %s",
		     strerror(errno));
	if (backlog >= 0)
		cr_assert_eq(listen(fd, backlog), 0);
	return fd;
}

uint16_t test_bound_port(int fd)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	return ntohs(sin.sin_port);
}

uint16_t test_free_port(void)
{
	int fd = test_bound_socket(-1);
	uint16_t port = test_bound_port(fd);

	close(fd);
	return port;
}

int test_client_connect(uint16_t port, int timeout_ms)
{
	return test_client_connect_from(NULL, port, timeout_ms);
}

int test_client_connect_from(const char *src, uint16_t port, int timeout_ms)
{
	struct sockaddr_in sin = test_loopback(port);
	struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (src) {
		struct sockaddr_in from = {.sin_family = AF_INET};

		cr_assert_eq(inet_pton(AF_INET, src, &from.sin_addr), 1, "bad source %s", src);
		cr_assert_eq(bind(fd, (struct sockaddr *)&from, sizeof(from)), 0, "bind %s: %s",
			     src, strerror(errno));
	}
	cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0, "connect: %s",
		     strerror(errno));
	return fd;
}

bool test_plain_tcp(void *ctx, int fd)
{
	(void)ctx;
	(void)fd;
	return false;
}

atomic_int test_connects_to_fail;
atomic_int test_connect_errno;

int test_failing_connect_error(int fd)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (atomic_fetch_sub(&test_connects_to_fail, 1) > 0)
		return atomic_load(&test_connect_errno);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return errno;
	return err;
}

int test_config_snapshot(const struct config *src, int n, struct config **out)
{
	struct config *c = malloc(sizeof(*c));

	cr_assert_not_null(c);
	*c = *src;
	policy_set_get(c->policy);
	policy_set_get(c->policy_file);
	config_nodes_get(c->nodes_learned);
	c->services = calloc((size_t)n, sizeof(*c->services));
	cr_assert_not_null(c->services);
	c->n_services = n;
	for (int i = 0; i < n; i++) {
		c->services[i] = i < src->n_services ? config_service_dup(src->services[i])
						     : config_service_new((uint32_t)i);
		cr_assert_not_null(c->services[i]);
	}
	*out = c;
	return 0;
}

unsigned long long test_metric_sum(struct proxy *px, const char *prefix, const char *has)
{
	struct metrics_sources src = {.proxy = px};
	struct metrics_buf b = {};
	unsigned long long sum = 0;

	cr_assert_eq(metrics_render(&src, &b), 0);
	for (char *line = b.data; line && line < b.data + b.len;) {
		char *nl = memchr(line, '\n', b.data + b.len - line);
		char *sp;

		if (!nl)
			break;
		*nl = '\0';
		sp = strrchr(line, ' ');
		if (!strncmp(line, prefix, strlen(prefix)) && sp && (!has || strstr(line, has)))
			sum += strtoull(sp + 1, NULL, 10);
		line = nl + 1;
	}
	metrics_buf_free(&b);
	return sum;
}

void test_expect_metric(struct proxy *px, const char *prefix, const char *has,
			unsigned long long want)
{
	uint64_t until = test_now_ms() + 2000;
	unsigned long long got;

	while ((got = test_metric_sum(px, prefix, has)) != want && test_now_ms() < until)
		usleep(5000);
	cr_expect_eq(got, want, "%s...%s: %llu, want %llu", prefix, has ? has : "", got, want);
}
