// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The proxy end to end on 127.0.0.1: a hand-built config, an orig_dst
 * stand-in for the datapath, real backends on loopback ports.
 *
 * Config endpoints carry no port, so tests that need several distinct
 * endpoints name them 192.0.2.N (TEST-NET-1, never dialled) and map
 * them onto 127.0.0.1:ep_port[N] through the proxy's endpoint seam. The
 * fixture is proxy_fixture.h; the tries of a connection (failover,
 * giving up, local errors) are tested in proxy_attempt_test.c, in the
 * same binary (proxy).
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
#include "proxy/proxy_fixture.h"
#include "proxy/proxy_int.h"
#include "proxy/test_support.h"
#include "proxy/timer.h"
#include "recording/http_metrics.h"
#include "recording/series_ids.h"
#include "recording/trace.h"

struct bulk_writer {
	int fd;
	const unsigned char *data;
	size_t len;
};

static void *bulk_write(void *arg)
{
	struct bulk_writer *bw = arg;

	write_full(bw->fd, bw->data, bw->len);
	shutdown(bw->fd, SHUT_WR);
	return NULL;
}

static uint64_t fnv1a(const unsigned char *p, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

Test(proxy, copies_8mib_both_ways_intact)
{
	enum { LEN = 8 << 20 };
	unsigned char *out = malloc(LEN), *in = malloc(LEN);
	uint64_t seed = 0x2545f4914f6cdd1dull;
	struct bulk_writer bw;
	pthread_t th;
	char tail;
	int fd;

	cr_assert(out && in);
	for (size_t i = 0; i < LEN; i++) {
		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		out[i] = (unsigned char)seed;
	}
	set_loopback_endpoint(backend_start(BACKEND_ECHO, 'E'));
	start_proxy();

	fd = client_connect();
	bw = (struct bulk_writer){.fd = fd, .data = out, .len = LEN};
	cr_assert_eq(pthread_create(&th, NULL, bulk_write, &bw), 0);
	cr_assert_eq(read_full(fd, in, LEN), LEN, "short echo: %s", strerror(errno));
	pthread_join(th, NULL);
	/* The echo's FIN comes after the data, once our own FIN reached it. */
	cr_assert_eq(read(fd, &tail, 1), 0);
	cr_assert_eq(fnv1a(in, LEN), fnv1a(out, LEN));
	cr_assert_eq(memcmp(in, out, LEN), 0);
	close(fd);
	free(out);
	free(in);
	expect_stat(active, 0);
	expect_stat(accepted, 1);
	end_test();
}

struct echo_client {
	unsigned char *out, *in;
	size_t len;
	bool ok;
};

/* One client of the concurrency test: echo len bytes, check them, EOF. */
static void *echo_client_main(void *arg)
{
	struct echo_client *ec = arg;
	struct bulk_writer bw;
	pthread_t th;
	char tail;
	int fd = client_connect();

	bw = (struct bulk_writer){.fd = fd, .data = ec->out, .len = ec->len};
	if (pthread_create(&th, NULL, bulk_write, &bw) != 0) {
		close(fd);
		return NULL;
	}
	ec->ok = read_full(fd, ec->in, ec->len) == (ssize_t)ec->len &&
		 memcmp(ec->in, ec->out, ec->len) == 0;
	pthread_join(th, NULL);
	ec->ok = ec->ok && read(fd, &tail, 1) == 0;
	close(fd);
	return NULL;
}

Test(proxy, many_concurrent_connections_stay_intact)
{
	enum { N = 32, LEN = 256 << 10 };
	static struct echo_client clients[N];
	pthread_t th[N];

	/* Small buffers: many turns per connection, and deferred ones. */
	cfg.buffer_bytes = 4096;
	backends[0].concurrent = true;
	set_loopback_endpoint(backend_start(BACKEND_ECHO, 'E'));
	start_proxy();
	for (int i = 0; i < N; i++) {
		clients[i].len = LEN;
		clients[i].out = malloc(LEN);
		clients[i].in = malloc(LEN);
		cr_assert(clients[i].out && clients[i].in);
		for (size_t k = 0; k < LEN; k++)
			clients[i].out[k] = (unsigned char)(k * 31 + i);
		cr_assert_eq(pthread_create(&th[i], NULL, echo_client_main, &clients[i]), 0);
	}
	for (int i = 0; i < N; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < N; i++) {
		cr_expect(clients[i].ok, "client %d: echo broken", i);
		free(clients[i].out);
		free(clients[i].in);
	}
	expect_stat(accepted, N);
	expect_stat(active, 0);
	end_test();
}

Test(proxy, idle_connections_hold_no_buffers)
{
	enum { N = 40 };
	int fds[N];
	char c;

	backends[0].concurrent = true;
	set_loopback_endpoint(backend_start(BACKEND_ECHO, 'E'));
	start_proxy();
	expect_stat(buffers, 0);
	for (int i = 0; i < N; i++) {
		fds[i] = client_connect();
		write_full(fds[i], "x", 1);
		cr_assert_eq(read_full(fds[i], &c, 1), 1, "connection %d: no echo", i);
	}
	expect_stat(active, N);
	/* Each carried a byte both ways, then went quiet: buffers went back. */
	expect_stat(buffers, 0);
	for (int i = 0; i < N; i++)
		close(fds[i]);
	expect_stat(active, 0);
	expect_stat(buffers, 0);
	end_test();
}

Test(proxy, half_close_keeps_the_other_direction)
{
	char buf[8];
	int fd;

	set_loopback_endpoint(backend_start(BACKEND_PINGPONG, 'P'));
	start_proxy();
	fd = client_connect();
	write_full(fd, "ping", 4);
	cr_assert_eq(shutdown(fd, SHUT_WR), 0);
	cr_assert_eq(read_full(fd, buf, 4), 4);
	cr_assert_eq(memcmp(buf, "pong", 4), 0);
	cr_assert_eq(read(fd, buf, 1), 0, "want EOF after the reply");
	cr_assert(atomic_load(&backends[0].saw_eof_before_reply));
	close(fd);
	expect_stat(active, 0);
	end_test();
}

Test(proxy, not_redirected_is_closed)
{
	char c;
	int fd;

	set_loopback_endpoint(backend_start(BACKEND_ID, 'B'));
	dp.enoent = true;
	start_proxy();
	fd = client_connect();
	cr_assert_eq(read(fd, &c, 1), 0, "want EOF");
	close(fd);
	expect_stat(no_orig_dst, 1);
	cr_assert_eq(atomic_load(&dp.calls), 1);
	cr_assert_eq(atomic_load(&backends[0].accepted), 0);
	end_test();
}

Test(proxy, unknown_service_is_reset)
{
	int fd;

	set_loopback_endpoint(backend_start(BACKEND_ID, 'B'));
	dp.orig.port = htons(SVC_PORT + 1); /* svc 0 has no such port, nor anyone */
	start_proxy();
	fd = client_connect();
	expect_reset(fd);
	close(fd);
	expect_stat(no_service, 1);
	cr_assert_eq(atomic_load(&backends[0].accepted), 0);
	end_test();
}

Test(proxy, backend_reset_reaches_the_client)
{
	int fd;

	set_loopback_endpoint(backend_start(BACKEND_RESET, 'R'));
	start_proxy();
	fd = client_connect();
	write_full(fd, "x", 1);
	expect_reset(fd);
	close(fd);
	expect_stat(active, 0);
	end_test();
}

/*
 * At max_connections a new client is refused at once with a reset
 * (docs/proxy.md, "Budgets"), not left waiting unanswered in the accept
 * queue, and it is counted; once a connection closes, the next client
 * is served.
 */
Test(proxy, max_connections_resets_a_client_past_it_and_serves_one_after_a_close)
{
	char id;
	int a, b;

	cfg.workers = 1;
	cfg.max_connections = 1;
	set_loopback_endpoint(backend_start(BACKEND_ID, 'A'));
	start_proxy();
	a = client_connect();
	cr_assert_eq(read(a, &id, 1), 1);
	b = client_connect();
	expect_reset(b);
	close(b);
	expect_stat(refused[PROXY_CAP_connections], 1);
	expect_stat(active, 1);
	close(a);
	expect_stat(active, 0);
	b = client_connect();
	cr_assert_eq(read(b, &id, 1), 1, "a connection was not served after the first closed");
	cr_assert_eq(id, 'A');
	close(b);
	expect_stat(refused[PROXY_CAP_connections], 1);
	expect_stat(refused[PROXY_CAP_client], 0);
	end_test();
}

/*
 * Out of fds, accept4 fails with EMFILE: that is no cap the worker can
 * answer (it has no fd to answer with), so it backs off and tries again
 * (WORKER_ACCEPT_RETRY_MS), refusing nobody; once fds are back, the
 * waiting client is served.
 */
Test(proxy, emfile_on_accept_backs_off_then_serves)
{
	static int fill[4096];
	struct rlimit old, rl;
	int n = 0, a, fd;
	char id;

	cfg.workers = 1;
	set_loopback_endpoint(backend_start(BACKEND_ID, 'A'));
	start_proxy();
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	rl = old;
	rl.rlim_cur = 1024;
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	while (n < (int)(sizeof(fill) / sizeof(fill[0])) && (fd = dup(2)) >= 0)
		fill[n++] = fd;
	cr_assert_eq(errno, EMFILE, "filling the fd table: %s", strerror(errno));
	close(fill[--n]); /* the client's own socket */
	a = client_connect();
	usleep(300 * 1000); /* three back-off rounds */
	expect_stat(accepted, 0);
	while (n > 0)
		close(fill[--n]);
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
	cr_assert_eq(read(a, &id, 1), 1, "the waiting client was not served once fds were back");
	cr_assert_eq(id, 'A');
	close(a);
	expect_stat(accepted, 1);
	for (int i = 0; i < PROXY_CAP__COUNT; i++)
		cr_expect_eq(stats_now().refused[i], 0, "refused at cap %s", proxy_cap_name(i));
	end_test();
}

Test(proxy, bind_conflict_is_reported)
{
	struct sockaddr_in sin = test_loopback(cfg.proxy_port);
	char err[256] = "", want[128];
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int ret;

	/* No SO_REUSEPORT: the proxy cannot share the port. */
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(listen(fd, 1), 0);
	spare_fds[n_spare_fds++] = fd;
	ret = proxy_start(&cfg, test_orig_dst, test_plain_tcp, &dp, &px, err, sizeof(err));
	cr_assert_eq(ret, -EADDRINUSE);
	snprintf(want, sizeof(want), "cannot bind 127.0.0.1:%u: %s", cfg.proxy_port,
		 strerror(EADDRINUSE));
	cr_assert_str_eq(err, want);
	px = NULL;
	end_test();
}

Test(proxy, stop_resets_open_connections)
{
	char id;
	int fd;

	set_loopback_endpoint(backend_start(BACKEND_ID, 'A'));
	start_proxy();
	fd = client_connect();
	cr_assert_eq(read(fd, &id, 1), 1);
	expect_stat(active, 1);
	proxy_stop(px);
	px = NULL;
	expect_reset(fd);
	close(fd);
	end_test();
}

Test(proxy, rejects_a_config_it_cannot_run)
{
	char err[256] = "";

	cfg.buffer_bytes = 0;
	cr_assert_eq(proxy_start(&cfg, test_orig_dst, test_plain_tcp, &dp, &px, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "buffer_bytes"), "message: %s", err);
	px = NULL;
	end_test();
}

/* ---- budgets (docs/proxy.md, "Budgets") ------------------------------- */

Test(proxy, an_opaque_client_past_its_connection_cap_is_reset_and_others_are_served)
{
	char id;
	int a, b, c, d;

	cfg.max_connections_per_client = 2;
	set_loopback_endpoint(backend_start(BACKEND_ID, 'A'));
	backends[0].concurrent = true;
	start_proxy();
	a = client_connect();
	b = client_connect();
	cr_assert_eq(read(a, &id, 1), 1);
	cr_assert_eq(read(b, &id, 1), 1);
	c = client_connect();
	expect_reset(c);
	close(c);
	expect_stat(refused[PROXY_CAP_client], 1);
	/* Another address is served; the capped one again after a close. */
	d = test_client_connect_from("127.0.0.2", cfg.proxy_port, IO_TIMEOUT_MS);
	cr_assert_eq(read(d, &id, 1), 1, "another client was not served");
	close(d);
	close(a);
	expect_stat(active, 1);
	c = client_connect();
	cr_assert_eq(read(c, &id, 1), 1, "not served after one of its connections closed");
	cr_assert_eq(id, 'A');
	close(c);
	close(b);
	expect_stat(refused[PROXY_CAP_client], 1);
	expect_stat(active, 0);
	end_test();
}

Test(proxy, an_opaque_connection_past_the_memory_budget_is_reset)
{
	char id;
	int fd;

	cfg.max_buffer_memory_mib = 1;
	set_loopback_endpoint(backend_start(BACKEND_ID, 'A'));
	start_proxy();
	cr_assert(limits_mem_charge(&px->mem, 1u << 20));
	fd = client_connect();
	expect_reset(fd);
	close(fd);
	expect_stat(refused[PROXY_CAP_memory], 1);
	limits_mem_uncharge(&px->mem, 1u << 20);
	fd = client_connect();
	cr_assert_eq(read(fd, &id, 1), 1, "not served once memory was given back");
	close(fd);
	end_test();
}

/*
 * A worker whose loop stops turning is reported (shoald then stops the
 * fail-open heartbeat), idle workers are not, and a worker that turns
 * again is no longer reported.
 */
Test(proxy, a_stalled_worker_is_reported_and_idle_ones_are_not)
{
	uint64_t ms = 0, t0, seen_ms = 0;
	int id = -1;

	set_loopback_endpoint(backend_start(BACKEND_ID, 'A'));
	start_proxy();
	usleep(300 * 1000); /* idle: both workers wait in epoll_wait */
	cr_assert_eq(proxy_stalled_worker(px, 100, &ms), -1, "an idle worker was reported");
	proxy_test_stall(px, 1, 1500);
	t0 = test_now_ms();
	while (test_now_ms() - t0 < 1400 && (id = proxy_stalled_worker(px, 300, &ms)) < 0)
		usleep(10 * 1000);
	seen_ms = test_now_ms() - t0;
	cr_assert_eq(id, 1, "the stalled worker was not reported (got %d)", id);
	cr_expect(seen_ms >= 250 && ms >= 300, "reported after %llu ms (stalled %llu ms)",
		  (unsigned long long)seen_ms, (unsigned long long)ms);
	/* The stall ends: reported no more. */
	while (test_now_ms() - t0 < 4000 && proxy_stalled_worker(px, 300, &ms) >= 0)
		usleep(10 * 1000);
	cr_expect_eq(proxy_stalled_worker(px, 300, &ms), -1, "still reported after the stall");
	end_test();
}

/*
 * An opaque connection that is copying does not pin the config of its
 * accept: once its worker takes a newer snapshot the connection holds
 * that one (refs: the proxy, the worker, the connection), and it keeps
 * its endpoint even though the new config no longer lists it.
 */
Test(proxy, a_copying_opaque_connection_moves_to_the_newest_snapshot_and_keeps_its_endpoint)
{
	uint16_t port = backend_start(BACKEND_ECHO, 'E');
	struct config *next = NULL;
	unsigned int refs = 0;
	char c;
	int fd;

	cfg.workers = 1;
	set_mapped_endpoints(&port, 1);
	start_proxy();
	fd = client_connect();
	write_full(fd, "x", 1);
	cr_assert_eq(read_full(fd, &c, 1), 1, "no echo");
	/* Its only endpoint is replaced by one that refuses. */
	ep_port[2] = refused_port();
	cr_assert_eq(addr_parse("192.0.2.2", &eps[0].addr), 0);
	cr_assert_eq(test_config_snapshot(&cfg, 1, &next), 0);
	cr_assert_eq(proxy_update(px, next), 0);
	for (uint64_t until = test_now_ms() + 2000; test_now_ms() < until; usleep(1000)) {
		refs = atomic_load(&px->snap->refs);
		if (refs == 3)
			break;
	}
	cr_assert_eq(refs, 3, "the newest snapshot has %u references, not 3 (proxy, worker, "
		     "the opaque connection)", refs);
	write_full(fd, "y", 1);
	cr_assert_eq(read_full(fd, &c, 1), 1, "the connection broke after the change");
	cr_assert_eq(c, 'y');
	close(fd);
	expect_stat(active, 0);
	end_test();
}

/* Pending requests of endpoint idx of the newest config's service 0. */
static uint32_t newest_pending(uint32_t idx)
{
	const struct config *c = px->snap->cfg;
	const struct es_svc_view *sv = es_view_service(px->snap->es_view, c, c->services[0]);
	struct proxy_endpoint_stats st;

	cr_assert_not_null(sv);
	es_endpoint_read(sv, idx, timer_now_ns(), &st);
	return st.pending;
}

/*
 * A copying opaque connection counts in its endpoint's load for its whole
 * life; when it moves to a config that lists that endpoint at another
 * index, the load moves with it, and its close takes it off that one.
 */
Test(proxy, a_moved_opaque_connection_keeps_counting_on_its_endpoint)
{
	uint16_t port = backend_start(BACKEND_ECHO, 'E');
	struct config *next = NULL;
	uint32_t pending = 0;
	char c;
	int fd;

	cfg.workers = 1;
	set_mapped_endpoints(&port, 1);
	start_proxy();
	fd = client_connect();
	write_full(fd, "x", 1);
	cr_assert_eq(read_full(fd, &c, 1), 1, "no echo");
	cr_assert_eq(newest_pending(0), 1);
	/* 192.0.2.1 is now the second endpoint, after 192.0.2.2. */
	ep_port[2] = refused_port();
	eps[1] = eps[0];
	cr_assert_eq(addr_parse("192.0.2.2", &eps[0].addr), 0);
	svc.n_endpoints = 2;
	cr_assert_eq(test_config_snapshot(&cfg, 1, &next), 0);
	cr_assert_eq(proxy_update(px, next), 0);
	for (uint64_t until = test_now_ms() + 2000; test_now_ms() < until; usleep(1000))
		if (atomic_load(&px->snap->refs) == 3)
			break;
	cr_assert_eq(atomic_load(&px->snap->refs), 3, "the connection did not move");
	cr_assert_eq(newest_pending(1), 1, "192.0.2.1 lost the connection's load");
	cr_assert_eq(newest_pending(0), 0);
	close(fd);
	expect_stat(active, 0);
	for (uint64_t until = test_now_ms() + 2000; test_now_ms() < until; usleep(1000))
		if (!(pending = newest_pending(1)))
			break;
	cr_assert_eq(pending, 0, "the close did not take the load off 192.0.2.1");
	cr_assert_eq(newest_pending(0), 0, "the close took it off another endpoint");
	end_test();
}

static bool export_all(void *ctx, uint32_t id)
{
	(void)ctx;
	(void)id;
	return true;
}

static uint32_t endpoint_as_recorded(void *ctx, uint32_t id, const struct shoal_addr *addr,
				     uint32_t hint)
{
	(void)ctx;
	(void)id;
	(void)addr;
	return hint;
}

/*
 * The read side of proxy.h, all that telemetry/ sees of a running proxy:
 * the newest config, the balancer state of its endpoints (none past the
 * last), the workers' series merged, the series ids and the tracer's
 * rings, one a worker.
 */
Test(proxy, the_read_side_shows_the_live_config_its_endpoint_state_and_series)
{
	uint16_t port = backend_start(BACKEND_ECHO, 'E');
	struct metrics_resolver res = {.service = export_all, .endpoint = endpoint_as_recorded};
	struct trace_config tc = {.sample_rate = 1.0, .seed = 7};
	struct metrics_http_snapshot series = {};
	struct proxy_endpoint_stats es;
	struct proxy_service_stats ss;
	struct tracer *one = NULL, *two = NULL;
	const struct config *live;
	struct proxy_snap *snap;
	uint32_t id;
	char err[256], c;
	int fd;

	set_mapped_endpoints(&port, 1);
	start_proxy();
	fd = client_connect();
	write_full(fd, "x", 1);
	cr_assert_eq(read_full(fd, &c, 1), 1, "no echo");

	snap = proxy_snap_newest(px);
	live = proxy_snap_config(snap);
	cr_assert_eq(live->n_services, 1);
	cr_assert_str_eq(live->services[0]->name, "web");
	cr_assert(proxy_snap_service_stats(snap, live->services[0], timer_now_ns(), &ss));
	cr_assert(proxy_snap_endpoint_stats(snap, live->services[0], 0, timer_now_ns(), &es));
	cr_expect_eq(es.pending, 1, "the open connection is in flight on its endpoint");
	cr_expect_eq(es.breaker.state, BREAKER_CLOSED);
	cr_expect_not(proxy_snap_endpoint_stats(snap, live->services[0], 1, timer_now_ns(), &es),
		      "no endpoint past the last");
	cr_expect_eq(es.pending, 0, "zeroed when there is none");

	id = live->services[0]->metrics_id;
	cr_assert_neq(id, 0, "the published service has a series id");
	cr_expect_eq(series_ids_count(proxy_series_ids(px)), 1);
	cr_assert_eq(proxy_series_snapshot(px, &res, &series), 0);
	cr_assert_lt(id, series.n_services);
	cr_expect_eq(series.tcp[id].opened, 1, "the opaque connection's open, from its worker");
	metrics_http_snapshot_free(&series);
	proxy_snap_put(snap);

	cr_assert_eq(proxy_workers(px), 2);
	cr_assert_eq(tracer_create(&tc, 1, &one, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(tracer_create(&tc, 2, &two, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(proxy_attach_tracer(px, one), -EINVAL, "one ring for two workers");
	cr_expect_eq(proxy_attach_tracer(px, two), 0);
	cr_expect_eq(proxy_attach_tracer(px, NULL), 0);
	close(fd);
	expect_stat(active, 0);
	end_test();
	tracer_destroy(one);
	tracer_destroy(two);
}
