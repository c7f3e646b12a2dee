// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The proxy object: validates the knobs, builds the workers (whose
 * listeners bind here, so bind errors reach the caller), runs their
 * threads and tears them down.
 */
#include "proxy/proxy.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/addr.h"
#include "common/log.h"
#include "proxy/proxy_int.h"
#include "proxy/sock.h"
#include "proxy/worker.h"
#include "proxy/worker_loop.h"
#include "recording/callers.h"
#include "recording/policy_stats.h"
#include "recording/http_metrics.h"
#include "recording/series_ids.h"
#include "recording/trace.h"
#include "tunnel/tunnel.h"

/* A snapshot of cfg holding one reference, or NULL when memory is short. */
static struct proxy_snap *proxy_snap_new(const struct config *cfg, bool owned)
{
	struct proxy_snap *s = calloc(1, sizeof(*s));

	if (s) {
		s->cfg = cfg;
		s->owned = owned;
		atomic_init(&s->refs, 1);
	}
	return s;
}

/* Reject knobs the proxy cannot run with; config.c normally fills defaults. */
static int proxy_check_config(const struct config *cfg, char *err, size_t errlen)
{
	const char *bad = NULL;

	if (addr_is_zero(&cfg->proxy_v4) && addr_is_zero(&cfg->proxy_v6))
		bad = "neither node.address_v4 nor node.address_v6 is set";
	else if (cfg->proxy_port == 0)
		bad = "node.proxy_port is 0";
	else if (!addr_is_zero(&cfg->proxy_v4) && !addr_is_v4(&cfg->proxy_v4))
		bad = "node.address_v4 is not an IPv4 address";
	else if (!addr_is_zero(&cfg->proxy_v6) && addr_is_v4(&cfg->proxy_v6))
		bad = "node.address_v6 is not an IPv6 address";
	else if (cfg->connect_timeout_ms == 0)
		bad = "proxy.connect_timeout_ms is 0";
	else if (cfg->connect_deadline_ms == 0)
		bad = "proxy.connect_deadline_ms is 0";
	else if (cfg->buffer_bytes == 0 || cfg->buffer_bytes > (1u << 30))
		bad = "proxy.buffer_bytes is not in [1, 1 GiB]";
	else if (cfg->max_connections == 0)
		bad = "proxy.max_connections is 0";
	else if (cfg->n_services < 0 || (cfg->n_services && !cfg->services))
		bad = "the service table is malformed";
	if (!bad)
		return 0;
	snprintf(err, errlen, "cannot start the proxy: %s", bad);
	return -EINVAL;
}

/* cfg->workers, or one per online CPU; capped at PROXY_MAX_WORKERS. */
static int proxy_worker_count(const struct config *cfg)
{
	long n = cfg->workers;

	if (n <= 0)
		n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n <= 0)
		n = 1;
	if (n > PROXY_MAX_WORKERS) {
		pr_warn("proxy: %ld workers requested; using %d", n, PROXY_MAX_WORKERS);
		n = PROXY_MAX_WORKERS;
	}
	return (int)n;
}

/* Wake every worker; they exit on their own. */
static void proxy_signal_stop(struct proxy *p)
{
	uint64_t one = 1;

	/* Cannot fail short of a bug: the counter is far from overflow. */
	if (write(p->stop_fd, &one, sizeof(one)) != sizeof(one))
		pr_warn("proxy: cannot signal the workers to stop: %s", strerror(errno));
}

/* Join the started workers and free everything p holds. */
static void proxy_free(struct proxy *p)
{
	if (p->workers) {
		for (int i = 0; i < p->n_workers; i++) {
			if (p->workers[i].started)
				pthread_join(p->workers[i].thread, NULL);
			worker_fini(&p->workers[i]);
		}
		free(p->workers);
	}
	if (p->stop_fd >= 0)
		close(p->stop_fd);
	if (p->clients_ready)
		limits_clients_fini(&p->clients);
	proxy_snap_put(p->snap); /* after the workers: they held references */
	if (p->es_ready)
		es_table_free(&p->es); /* after the snapshots: they retire views into it */
	series_ids_free(p->series);
	pthread_mutex_destroy(&p->snap_lock);
	free(p);
}

/*
 * Start the worker threads with every signal blocked, so that process
 * signals (SIGTERM, SIGHUP) go to the daemon's main thread, never to a
 * worker. Returns 0 or -errno with a message in err.
 */
static int proxy_run_workers(struct proxy *p, char *err, size_t errlen)
{
	sigset_t all, old;
	int ret = 0;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (int i = 0; i < p->n_workers; i++) {
		struct worker *w = &p->workers[i];
		char name[32];

		ret = -pthread_create(&w->thread, NULL, worker_main, w);
		if (ret) {
			snprintf(err, errlen, "cannot start proxy worker %d: %s", i,
				 strerror(-ret));
			break;
		}
		w->started = true;
		snprintf(name, sizeof(name), "shoal-proxy/%d", i);
		name[15] = '\0'; /* the kernel's limit; i < PROXY_MAX_WORKERS fits */
		pthread_setname_np(w->thread, name);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return ret;
}

/*
 * Close the inherited listeners no worker took: the old proxy had more
 * workers. Connections queued in them are reset when the old process
 * lets go of them too (docs/upgrade.md, "Worker counts").
 */
static void proxy_inherit_close_unused(struct proxy *p)
{
	struct proxy_listen_fds *in = p->opts.inherit;
	int n = 0;

	if (!in)
		return;
	for (int i = 0; i < in->n; i++) {
		if (in->fd[i] >= 0) {
			close(in->fd[i]);
			in->fd[i] = -1;
			n++;
		}
	}
	if (n)
		pr_warn("proxy: %d of the %d inherited listeners are not used (not a listener on "
			"this proxy's address and port, or more than its %d workers take): closed",
			n, in->n, p->n_workers);
	p->opts.inherit = NULL;
}

int proxy_start_opts(const struct config *cfg, proxy_orig_dst_fn orig_dst,
		     proxy_on_shortcut_fn on_shortcut, void *orig_ctx, const struct proxy_opts *opts,
		     struct proxy **out, char *err, size_t errlen)
{
	struct proxy *p;
	int ret;

	ret = proxy_check_config(cfg, err, errlen);
	if (ret)
		return ret;
	p = calloc(1, sizeof(*p));
	if (!p) {
		snprintf(err, errlen, "cannot start the proxy: out of memory");
		return -ENOMEM;
	}
	p->stop_fd = -1;
	p->cfg = cfg;
	pthread_mutex_init(&p->snap_lock, NULL);
	p->snap = proxy_snap_new(cfg, false); /* the caller keeps owning cfg */
	p->series = series_ids_new();
	if (!p->snap || !p->series) {
		ret = -ENOMEM;
		snprintf(err, errlen, "cannot start the proxy: out of memory");
		goto err;
	}
	p->orig_dst = orig_dst;
	p->on_shortcut = on_shortcut;
	p->orig_ctx = orig_ctx;
	if (opts)
		p->opts = *opts;
	if (!p->opts.endpoint_sockaddr)
		p->opts.endpoint_sockaddr = addr_to_sockaddr;
	if (!p->opts.open_socket)
		p->opts.open_socket = socket;
	if (!p->opts.connect_error)
		p->opts.connect_error = sock_error;
	p->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p->stop_fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot create the proxy's stop eventfd: %s", strerror(-ret));
		goto err;
	}
	ret = es_table_init(&p->es);
	if (ret) {
		snprintf(err, errlen, "cannot start the proxy: %s", strerror(-ret));
		goto err;
	}
	p->es_ready = true;
	p->mem.budget = (uint64_t)cfg->max_buffer_memory_mib << 20;
	ret = limits_clients_init(&p->clients, cfg->max_connections_per_client);
	if (ret) {
		snprintf(err, errlen, "cannot start the proxy: client table: %s", strerror(-ret));
		goto err;
	}
	p->clients_ready = true;
	ret = proxy_endpoints_sync(p, cfg);
	if (ret) {
		snprintf(err, errlen, "cannot start the proxy: resilience state: %s",
			 strerror(-ret));
		goto err;
	}
	p->snap->es_view = (struct es_view *)proxy_es_view(p);
	p->snap->es = &p->es;
	/* Before any worker runs: the only write to the caller's config. */
	series_ids_publish(p->series, (struct config *)cfg, timer_now_ns());
	p->n_workers = proxy_worker_count(cfg);
	p->workers = calloc(p->n_workers, sizeof(*p->workers));
	if (!p->workers) {
		ret = -ENOMEM;
		snprintf(err, errlen, "cannot start the proxy: out of memory");
		goto err;
	}
	atomic_store(&p->hold_accepts, p->opts.hold);
	for (int i = 0; i < p->n_workers; i++) {
		ret = worker_init(&p->workers[i], p, i, err, errlen);
		if (ret) {
			p->n_workers = i; /* worker_init cleaned up worker i itself */
			goto err;
		}
	}
	proxy_inherit_close_unused(p);
	ret = proxy_run_workers(p, err, errlen);
	if (ret) {
		proxy_signal_stop(p);
		goto err;
	}
	pr_info("proxy: %d workers listening on port %u", p->n_workers, cfg->proxy_port);
	*out = p;
	return 0;

err:
	proxy_inherit_close_unused(p);
	proxy_free(p);
	return ret;
}

int proxy_start(const struct config *cfg, proxy_orig_dst_fn orig_dst,
		proxy_on_shortcut_fn on_shortcut, void *orig_ctx, struct proxy **out, char *err,
		size_t errlen)
{
	return proxy_start_opts(cfg, orig_dst, on_shortcut, orig_ctx, NULL, out, err, errlen);
}

int proxy_start_inherit(const struct config *cfg, proxy_orig_dst_fn orig_dst,
			proxy_on_shortcut_fn on_shortcut, void *orig_ctx,
			struct proxy_listen_fds *inherit, bool hold, struct proxy **out, char *err,
			size_t errlen)
{
	struct proxy_opts opts = {.inherit = inherit, .hold = hold};
	int ret = proxy_start_opts(cfg, orig_dst, on_shortcut, orig_ctx, &opts, out, err, errlen);

	/* An early refusal (proxy_check_config) returns before any worker ran. */
	for (int i = 0; inherit && i < inherit->n; i++) {
		if (inherit->fd[i] >= 0) {
			close(inherit->fd[i]);
			inherit->fd[i] = -1;
		}
	}
	return ret;
}

/* Wake every worker through its update eventfd (what stays to do is in p). */
static void proxy_wake_workers(struct proxy *p, const char *why)
{
	uint64_t one = 1;

	for (int i = 0; i < p->n_workers; i++)
		if (write(p->workers[i].update.fd, &one, sizeof(one)) != sizeof(one))
			pr_warn("proxy: cannot wake worker %d to %s: %s", i, why, strerror(errno));
}

void proxy_accept_start(struct proxy *p)
{
	if (p && atomic_exchange(&p->hold_accepts, false))
		proxy_wake_workers(p, "accept");
}

int proxy_listen_fds(const struct proxy *p, struct proxy_listen_fds *out)
{
	out->n = 0;
	for (int i = 0; i < p->n_workers; i++)
		for (int j = 0; j < p->workers[i].n_listeners; j++)
			if (p->workers[i].listeners[j].pl.fd >= 0 && out->n < PROXY_MAX_LISTEN_FDS)
				out->fd[out->n++] = p->workers[i].listeners[j].pl.fd;
	return out->n;
}

void proxy_release_listeners(struct proxy *p)
{
	if (p && !atomic_exchange(&p->listeners_released, true))
		proxy_wake_workers(p, "release its listeners");
}

int proxy_update(struct proxy *p, const struct config *cfg)
{
	struct proxy_snap *s, *old;
	int err;

	/* Connection memory and listeners were sized from the start-up config. */
	if (cfg->buffer_bytes != p->cfg->buffer_bytes || cfg->n_services < 0 ||
	    cfg->n_services > CONFIG_MAX_SERVICES || (cfg->n_services && !cfg->services))
		return -EINVAL;
	s = proxy_snap_new(cfg, false);
	if (!s)
		return -ENOMEM;
	/* The balancer and breaker state of cfg's services, kept from the old one. */
	err = proxy_endpoints_sync(p, cfg);
	if (err) {
		proxy_snap_put(s); /* not owned yet: cfg stays the caller's */
		return err;
	}
	s->es_view = (struct es_view *)proxy_es_view(p); /* lives as long as s */
	s->es = &p->es;
	s->owned = true;
	/* The proxy owns cfg now, and no worker has seen it yet. */
	series_ids_publish(p->series, (struct config *)cfg, timer_now_ns());
	/* One reference for the proxy (it is the newest) and one per worker. */
	atomic_store(&s->refs, 1u + (unsigned int)p->n_workers);
	for (int i = 0; i < p->n_workers; i++) {
		struct worker *w = &p->workers[i];
		uint64_t one = 1;

		/* A worker that has not taken the previous one yet skips it. */
		proxy_snap_put(atomic_exchange(&w->next_snap, s));
		if (write(w->update.fd, &one, sizeof(one)) != sizeof(one))
			pr_warn("proxy: cannot wake worker %d for a new config: %s", i,
				strerror(errno));
	}
	pthread_mutex_lock(&p->snap_lock);
	old = p->snap;
	p->snap = s;
	pthread_mutex_unlock(&p->snap_lock);
	proxy_snap_put(old);
	return 0;
}

int proxy_stalled_worker(struct proxy *p, uint64_t bound_ms, uint64_t *stalled_ms)
{
	uint64_t now = timer_now_ns();

	for (int i = 0; p && i < p->n_workers; i++) {
		struct worker *w = &p->workers[i];
		uint64_t since;

		if (!w->started)
			continue;
		if (atomic_load(&w->exited)) {
			*stalled_ms = UINT64_MAX;
			return i;
		}
		since = atomic_load_explicit(&w->busy_since_ns, memory_order_relaxed);
		if (since && now > since && now - since > bound_ms * 1000000) {
			*stalled_ms = (now - since) / 1000000;
			return i;
		}
	}
	return -1;
}

void proxy_test_stall(struct proxy *p, int id, uint32_t ms)
{
	uint64_t one = 1;

	if (!p || id < 0 || id >= p->n_workers)
		return;
	atomic_store(&p->workers[id].test_stall_ms, ms);
	/* Wake it: an idle worker would otherwise only stall at its next event. */
	if (write(p->workers[id].update.fd, &one, sizeof(one)) != sizeof(one))
		pr_warn("proxy: cannot wake worker %d for a test stall: %s", id, strerror(errno));
}

void proxy_drain(struct proxy *p)
{
	uint64_t one = 1;

	if (!p || atomic_exchange(&p->draining, true))
		return;
	/* Each worker starts sweeping its idle keep-alive connections. */
	for (int i = 0; i < p->n_workers; i++)
		if (write(p->workers[i].update.fd, &one, sizeof(one)) != sizeof(one))
			pr_warn("proxy: cannot wake worker %d to drain: %s", i, strerror(errno));
}

struct proxy_snap *proxy_snap_newest(struct proxy *p)
{
	struct proxy_snap *s;

	pthread_mutex_lock(&p->snap_lock);
	s = p->snap;
	proxy_snap_get(s);
	pthread_mutex_unlock(&p->snap_lock);
	return s;
}

void proxy_stop(struct proxy *p)
{
	if (!p)
		return;
	proxy_signal_stop(p);
	proxy_free(p);
}

int proxy_endpoints_sync(struct proxy *p, const struct config *cfg)
{
	struct es_view *v = es_table_sync(&p->es, cfg);

	if (!v)
		return -errno;
	atomic_store_explicit(&p->es_view, v, memory_order_release);
	return 0;
}

void proxy_stats(struct proxy *p, struct proxy_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (int i = 0; i < p->n_workers; i++)
		worker_stats_add(&p->workers[i], out);
}

const struct config *proxy_snap_config(const struct proxy_snap *s)
{
	return s->cfg;
}

/* The endpoint-state view of service svc of s's config, or NULL. */
static const struct es_svc_view *snap_service(const struct proxy_snap *s,
					      const struct config_service *svc)
{
	return s->es_view ? es_view_service(s->es_view, s->cfg, svc) : NULL;
}

bool proxy_snap_service_stats(const struct proxy_snap *s, const struct config_service *svc,
			      uint64_t now_ns, struct proxy_service_stats *out)
{
	const struct es_svc_view *sv = snap_service(s, svc);

	memset(out, 0, sizeof(*out));
	if (!sv)
		return false;
	es_service_read(sv, now_ns, out);
	return true;
}

bool proxy_snap_endpoint_stats(const struct proxy_snap *s, const struct config_service *svc,
			       uint32_t idx, uint64_t now_ns, struct proxy_endpoint_stats *out)
{
	const struct es_svc_view *sv = snap_service(s, svc);

	memset(out, 0, sizeof(*out));
	if (!sv || idx >= sv->n_endpoints)
		return false;
	es_endpoint_read(sv, idx, now_ns, out);
	return true;
}

struct series_ids *proxy_series_ids(struct proxy *p)
{
	return p->series;
}

int proxy_series_snapshot(struct proxy *p, const struct metrics_resolver *res,
			  struct metrics_http_snapshot *out)
{
	struct metrics_http_shard *shards[PROXY_MAX_WORKERS];
	size_t n = 0;

	for (int i = 0; i < p->n_workers && i < PROXY_MAX_WORKERS; i++)
		shards[n++] = p->workers[i].metrics;
	return metrics_http_snapshot(shards, n, res, out);
}

int proxy_callers_snapshot(struct proxy *p, struct callers_snapshot *out)
{
	struct callers_table *t[PROXY_MAX_WORKERS];
	size_t n = 0;

	for (int i = 0; i < p->n_workers && i < PROXY_MAX_WORKERS; i++)
		t[n++] = p->workers[i].callers;
	return callers_snapshot(t, n, out);
}

int proxy_policy_snapshot(struct proxy *p, struct policy_stats_snapshot *out)
{
	struct policy_stats *t[PROXY_MAX_WORKERS + 1];
	size_t n = 0;

	for (int i = 0; p && i < p->n_workers && i < PROXY_MAX_WORKERS; i++)
		t[n++] = p->workers[i].authz;
	/* The destination's decisions of tunneled calls (docs/policy.md, "Cross-node calls"). */
	if (p && tunnel_policy_stats(__atomic_load_n(&p->tunnel, __ATOMIC_ACQUIRE)))
		t[n++] = tunnel_policy_stats(p->tunnel);
	return policy_stats_snapshot(t, n, out);
}

void proxy_set_tunnel(struct proxy *p, struct tunnel *t)
{
	__atomic_store_n(&p->tunnel, t, __ATOMIC_RELEASE);
}

void proxy_set_identity_fn(struct proxy *p, proxy_identity_fn fn, void *ctx)
{
	__atomic_store_n(&p->identity_fn, NULL, __ATOMIC_RELEASE);
	p->identity_ctx = ctx;
	__atomic_store_n(&p->identity_fn, fn, __ATOMIC_RELEASE);
}

void proxy_set_caller_fn(struct proxy *p, proxy_caller_fn fn, void *ctx)
{
	__atomic_store_n(&p->caller_fn, NULL, __ATOMIC_RELEASE);
	__atomic_store_n(&p->caller_ctx, ctx, __ATOMIC_RELAXED);
	__atomic_store_n(&p->caller_fn, fn, __ATOMIC_RELEASE);
}

int proxy_attach_tracer(struct proxy *p, struct tracer *t)
{
	if (t && tracer_workers(t) < (unsigned int)p->n_workers)
		return -EINVAL;
	for (int i = 0; i < p->n_workers; i++)
		__atomic_store_n(&p->workers[i].trace, t ? tracer_worker(t, (unsigned int)i) : NULL,
				 __ATOMIC_RELEASE);
	return 0;
}

unsigned int proxy_workers(const struct proxy *p)
{
	return (unsigned int)p->n_workers;
}
