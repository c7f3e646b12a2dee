/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Loopback plumbing shared by the tests that run a real proxy
 * (proxy_test.c, http1_test.c, h2_test.c, discovery/apply_test.c). Test code only:
 * failures are Criterion assertions.
 */
#ifndef SHOAL_PROXY_TEST_SUPPORT_H
#define SHOAL_PROXY_TEST_SUPPORT_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "proxy/proxy.h"

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t test_now_ms(void);

/* 127.0.0.1:port. */
struct sockaddr_in test_loopback(uint16_t port);

/* A socket bound to a fresh 127.0.0.1 port, listening with backlog (or
 * not listening at all when backlog < 0: connects to it are refused). */
int test_bound_socket(int backlog);

/* The local port of bound socket fd. */
uint16_t test_bound_port(int fd);

/* A 127.0.0.1 port that was free a moment ago. */
uint16_t test_free_port(void);

/* A blocking client connected to 127.0.0.1:port, with I/O timeouts. */
int test_client_connect(uint16_t port, int timeout_ms);

/* Same, from source address src ("127.0.0.2": any of 127/8 is local). */
int test_client_connect_from(const char *src, uint16_t port, int timeout_ms);

struct config;

/*
 * src as it is now, as a new config with room for n services (free with
 * config_free): its services copied, not shared as config_copy does,
 * because the tests change their one static service between updates.
 */
int test_config_snapshot(const struct config *src, int n, struct config **out);

/* proxy_on_shortcut_fn for tests: no test socket is in a SOCKHASH, so
 * every one is plain TCP and its short reads are trusted. */
bool test_plain_tcp(void *ctx, int fd);

/*
 * A connect_error seam (proxy_opts) for tests: the next
 * test_connects_to_fail upstream connects end with test_connect_errno, as
 * if SO_ERROR said so once the non-blocking connect finished; the others
 * report their real SO_ERROR. Reset both in the test's setup.
 */
extern atomic_int test_connects_to_fail;
extern atomic_int test_connect_errno;
int test_failing_connect_error(int fd);

/*
 * The sum of every sample of px's /metrics whose line starts with prefix
 * and contains has (NULL: any).
 */
unsigned long long test_metric_sum(struct proxy *px, const char *prefix, const char *has);
/*
 * Within 2 s, test_metric_sum(px, prefix, has) reaches want (a request is
 * recorded once it ended); a Criterion expectation.
 */
void test_expect_metric(struct proxy *px, const char *prefix, const char *has,
			unsigned long long want);

#endif
