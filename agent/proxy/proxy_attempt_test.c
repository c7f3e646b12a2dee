// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Opaque TCP's tries through the proxy on 127.0.0.1 (attempt.c, opaque.c;
 * docs/proxy.md, "One connection", steps 4 and 5): failover after a
 * refused or timed-out connect, giving up (all refused, the connect
 * deadline, no endpoints), P2C over open connections, and the proxy's
 * own shortages, which are no endpoint's failure. The fixture is
 * proxy_fixture.h.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#include "common/addr.h"
#include "proxy/proxy.h"
#include "proxy/proxy_int.h"
#include "proxy/test_support.h"
#include "proxy/timer.h"
#include "recording/http_metrics.h"
#include "recording/series_ids.h"
#include "recording/trace.h"
#include "proxy/proxy_fixture.h"

Test(proxy, refused_endpoint_fails_over_to_the_next)
{
	uint16_t ports[2] = {refused_port(), backend_start(BACKEND_ID, 'B')};
	char id = 0;
	int fd;

	set_mapped_endpoints(ports, 2);
	start_proxy();
	/*
	 * P2C may try the refused endpoint first; its failure penalty then
	 * keeps it out of every later pick. Either way each connection is
	 * served, and the refused one costs at most one failed connect.
	 */
	for (int i = 0; i < 10; i++) {
		fd = client_connect();
		cr_assert_eq(read(fd, &id, 1), 1);
		cr_assert_eq(id, 'B');
		close(fd);
	}
	expect_stat(accepted, 10);
	cr_expect_leq(stats_now().connect_failures, 1, "connect_failures is %llu",
		      (unsigned long long)stats_now().connect_failures);
	expect_stat(gave_up, 0);
	end_test();
}

Test(proxy, connect_timeout_fails_over_to_the_next)
{
	uint16_t ports[2] = {blackhole_port(), backend_start(BACKEND_ID, 'B')};
	uint64_t t0, ms;
	char id = 0;
	int fd;

	cfg.connect_timeout_ms = 200;
	set_mapped_endpoints(ports, 2);
	start_proxy();
	t0 = test_now_ms();
	fd = client_connect();
	cr_assert_eq(read(fd, &id, 1), 1);
	ms = test_now_ms() - t0;
	cr_assert_eq(id, 'B');
	/* P2C picks the black hole first or not at all: then B at once. */
	if (stats_now().connect_failures)
		cr_assert_geq(ms, 150, "failed over after %llu ms, before the timeout",
			      (unsigned long long)ms);
	cr_assert_lt(ms, 2000, "failed over after %llu ms", (unsigned long long)ms);
	close(fd);
	cr_expect_leq(stats_now().connect_failures, 1);
	end_test();
}

Test(proxy, all_endpoints_refused_resets_the_client_quickly)
{
	uint16_t ports[2] = {refused_port(), refused_port()};
	uint64_t t0, ms;
	int fd;

	set_mapped_endpoints(ports, 2);
	start_proxy();
	t0 = test_now_ms();
	fd = client_connect();
	expect_reset(fd);
	ms = test_now_ms() - t0;
	cr_assert_lt(ms, 1000, "reset after %llu ms (deadline %u ms)", (unsigned long long)ms,
		     cfg.connect_deadline_ms);
	close(fd);
	expect_stat(connect_failures, 2);
	expect_stat(gave_up, 1);
	expect_stat(active, 0);
	end_test();
}

Test(proxy, connect_deadline_bounds_all_attempts)
{
	uint16_t hole = blackhole_port();
	uint16_t ports[3] = {hole, hole, hole};
	uint64_t t0, ms;
	int fd;

	cfg.connect_timeout_ms = 1000;
	cfg.connect_deadline_ms = 300;
	set_mapped_endpoints(ports, 3);
	start_proxy();
	t0 = test_now_ms();
	fd = client_connect();
	expect_reset(fd);
	ms = test_now_ms() - t0;
	cr_assert_geq(ms, 250, "reset after %llu ms", (unsigned long long)ms);
	cr_assert_lt(ms, 900, "reset after %llu ms, deadline 300", (unsigned long long)ms);
	close(fd);
	expect_stat(gave_up, 1);
	expect_stat(connect_failures, 1);
	end_test();
}

Test(proxy, no_endpoints_resets_at_once)
{
	int fd;

	svc.n_endpoints = 0;
	start_proxy();
	fd = client_connect();
	expect_reset(fd);
	close(fd);
	expect_stat(gave_up, 1);
	expect_stat(connect_failures, 0);
	end_test();
}

/*
 * Open connections count as pending in the balancer's cost (opaque TCP
 * balances on connect latency times open connections): 20 connections
 * held open spread over both healthy endpoints.
 */
Test(proxy, p2c_spreads_concurrent_connections)
{
	uint16_t ports[2] = {backend_start(BACKEND_ID, 'A'), backend_start(BACKEND_ID, 'B')};
	int fds[20], seen_a = 0, seen_b = 0;

	backends[0].concurrent = true;
	backends[1].concurrent = true;
	set_mapped_endpoints(ports, 2);
	start_proxy();
	for (int i = 0; i < 20; i++) {
		char id = 0;

		fds[i] = client_connect();
		cr_assert_eq(read(fds[i], &id, 1), 1);
		seen_a += id == 'A';
		seen_b += id == 'B';
	}
	for (int i = 0; i < 20; i++)
		close(fds[i]);
	cr_expect_gt(seen_a, 2, "A served %d of 20", seen_a);
	cr_expect_gt(seen_b, 2, "B served %d of 20", seen_b);
	expect_stat(accepted, 20);
	end_test();
}

/*
 * Connections while each of errs in turn is the proxy's own shortage,
 * from socket() or, late, from SO_ERROR once the non-blocking connect
 * ended (the connect_error seam): each client is reset at once, counted
 * as local_refused, and the balancer hears nothing: no failure against
 * either endpoint (one would eject it here), no failover (one socket
 * asked for), no retry from the budget. Once the shortage is over, both
 * endpoints serve.
 */
static void expect_local_errors_blame_no_endpoint(const int *errs, size_t n_errs, bool late)
{
	uint16_t ports[2] = {backend_start(BACKEND_ID, 'A'), backend_start(BACKEND_ID, 'B')};
	int sockets_left = late ? 0 : 1000; /* socket() calls to fail */
	struct proxy_service_stats ss;
	const struct es_svc_view *sv;
	uint64_t failed = 0, now;
	char id;
	int fd;

	config_resilience_default(&svc.resilience);
	svc.resilience.consecutive_failures = 1;
	svc.resilience.max_ejection_pct = 100;
	cfg.workers = 1;
	set_mapped_endpoints(ports, 2);
	start_proxy();
	for (size_t i = 0; i < n_errs; i++) {
		atomic_store(&fail_errno, errs[i]);
		atomic_store(&test_connect_errno, errs[i]);
		atomic_store(&sockets_to_fail, sockets_left);
		atomic_store(&test_connects_to_fail, late ? 1 : 0);
		fd = client_connect();
		expect_reset(fd);
		close(fd);
		cr_expect_eq(sockets_left - atomic_load(&sockets_to_fail), 1,
			     "%s: %d sockets tried, want 1 (no failover)", strerror(errs[i]),
			     sockets_left - atomic_load(&sockets_to_fail));
	}
	atomic_store(&sockets_to_fail, 0);
	atomic_store(&test_connects_to_fail, 0);
	expect_stat(local_refused, n_errs);
	expect_stat(active, 0);
	cr_expect_eq(stats_now().connect_failures, 0);
	sv = es_view_service(proxy_es_view(px), &cfg, &svc);
	cr_assert_not_null(sv);
	now = test_now_ms() * 1000000;
	es_service_read(sv, now, &ss);
	for (uint32_t i = 0; i < 2; i++) {
		struct proxy_endpoint_stats es;

		es_endpoint_read(sv, i, now, &es);
		failed += es.failed;
	}
	cr_expect_eq(failed, 0, "%llu failures recorded against the endpoints",
		     (unsigned long long)failed);
	cr_expect_eq(ss.ejected, 0, "%u endpoints ejected", ss.ejected);
	cr_expect_eq(ss.retries, 0, "%llu retries", (unsigned long long)ss.retries);
	cr_expect_eq(ss.retries_refused, 0);
	for (int i = 0; i < 6; i++) {
		fd = client_connect();
		cr_assert_eq(read(fd, &id, 1), 1, "connection %d after the shortage", i);
		cr_expect(id == 'A' || id == 'B');
		close(fd);
	}
	end_test();
}

/* Out of fds or buffers (EMFILE, ENFILE, ENOBUFS from socket()). */
Test(proxy, local_socket_errors_reset_the_client_and_never_blame_an_endpoint)
{
	static const int errs[] = {EMFILE, ENFILE, ENOBUFS};

	expect_local_errors_blame_no_endpoint(errs, sizeof(errs) / sizeof(errs[0]), false);
}

/*
 * The same shortages reported late, by SO_ERROR once a non-blocking
 * connect ended (ENOBUFS, EADDRNOTAVAIL, ENOMEM): still the proxy's. The
 * code before charged the endpoint a failure (ejecting it here) and
 * failed over to the other one, which served the client.
 */
Test(proxy, local_errors_reported_by_so_error_reset_the_client_and_never_blame_an_endpoint)
{
	static const int errs[] = {ENOBUFS, EADDRNOTAVAIL, ENOMEM};

	expect_local_errors_blame_no_endpoint(errs, sizeof(errs) / sizeof(errs[0]), true);
}
