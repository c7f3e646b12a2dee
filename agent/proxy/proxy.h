/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The node proxy: one epoll worker thread per core, each with its own
 * SO_REUSEPORT listeners on the node address(es). A connection the
 * datapath redirected here is matched to its service by the original
 * destination, and carried as opaque TCP to one of its endpoints.
 */
#ifndef SHOAL_PROXY_H
#define SHOAL_PROXY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config/config.h"
#include "resilience/breaker.h"
#include "proxy/proxy_stats.h"
#include "shoal/abi.h"

/*
 * How the proxy learns where an accepted connection was going. Given the
 * accepted socket's peer (the application) and local (the proxy) address,
 * fill *orig and return 0, or return -ENOENT when the connection was not
 * redirected by the datapath. Called from worker threads concurrently.
 */
typedef int (*proxy_orig_dst_fn)(void *ctx, const struct sockaddr *peer,
				 const struct sockaddr *local, struct shoal_orig_dst *orig);

/*
 * Whether socket fd is in the datapath's sockmap shortcut. Its reads may
 * then come from two queues (the redirected bytes, then TCP's), so a
 * short read does not mean both are empty; on a plain TCP socket it does,
 * and the proxy saves the read that would return EAGAIN. Called from
 * worker threads concurrently; NULL: every socket may be a member.
 */
typedef bool (*proxy_on_shortcut_fn)(void *ctx, int fd);

/*
 * Who the client of an accepted connection is, for the call graph
 * (docs/dashboards.md, "Callers"): given its peer address, write a
 * NUL-terminated name ("namespace/name" of the pod) into name (len bytes)
 * and return 0, or return -ENOENT when unknown, or -EAGAIN when it cannot
 * tell without waiting. Called once per connection, at accept, from
 * worker threads concurrently: it must not block.
 */
typedef int (*proxy_caller_fn)(void *ctx, const struct sockaddr *peer, char *name, size_t len);

/*
 * Who the workload at addr is, for the encrypted hop (docs/mtls.md):
 * write "<namespace>/<service account>" into id (len bytes) and return
 * 0, or -ENOENT. Called once per accepted connection when mtls is on,
 * from worker threads concurrently; it must not wait long.
 */
typedef int (*proxy_identity_fn)(void *ctx, const struct shoal_addr *addr, char *id, size_t len);

struct proxy;
struct tunnel;

/*
 * Bind the listeners and start cfg->workers threads (0: one per CPU).
 * cfg must outlive the proxy. Every socket the proxy opens carries
 * SO_MARK cfg->socket_mark. Returns 0 and *out, or -errno with a message
 * in err ("cannot bind 10.0.0.1:15001: Address in use").
 */
int proxy_start(const struct config *cfg, proxy_orig_dst_fn orig_dst,
		proxy_on_shortcut_fn on_shortcut, void *orig_ctx, struct proxy **out, char *err,
		size_t errlen);

/*
 * ---- Hand-over (docs/upgrade.md) ----------------------------------------
 * A new shoald takes the running one's listening sockets over (SCM_RIGHTS)
 * instead of binding its own, so that the accept queues, and the
 * connections waiting in them, pass from one process to the other whole.
 */

/* Two families per worker, at most PROXY_MAX_WORKERS (proxy_int.h) workers. */
#define PROXY_MAX_LISTEN_FDS 512

/* Listening sockets, handed from one proxy to the next. */
struct proxy_listen_fds {
	int n;
	int fd[PROXY_MAX_LISTEN_FDS];
};

/*
 * proxy_start, but each worker's listener is one of inherit's fds bound to
 * the same address and port (a listening TCP socket; checked), and only a
 * listener inherit lacks (more workers than the old proxy had) is bound
 * anew. Every fd of inherit is consumed, used or closed (an unused one
 * with a warning: connections queued in it are reset), on error too. With
 * hold, the workers do not accept until proxy_accept_start: the old
 * process keeps accepting from the same sockets until it lets go.
 */
int proxy_start_inherit(const struct config *cfg, proxy_orig_dst_fn orig_dst,
			proxy_on_shortcut_fn on_shortcut, void *orig_ctx,
			struct proxy_listen_fds *inherit, bool hold, struct proxy **out,
			char *err, size_t errlen);

/*
 * Name the callers of connections accepted from now on with fn (NULL:
 * stop). A connection whose caller fn does not know is named by its
 * client's address. Call from one thread; ctx must outlive the proxy.
 */
void proxy_set_caller_fn(struct proxy *p, proxy_caller_fn fn, void *ctx);
/* Calls to other nodes' endpoints go through t from now on (NULL: none). */
void proxy_set_tunnel(struct proxy *p, struct tunnel *t);
/* Set the identity function (NULL: none), before or while the proxy runs. */
void proxy_set_identity_fn(struct proxy *p, proxy_identity_fn fn, void *ctx);

/* Let the workers of a proxy started with hold accept. Any thread; idempotent. */
void proxy_accept_start(struct proxy *p);

/*
 * The listeners' fds, to pass to a new shoald (they stay p's: the caller
 * must not close them). Call before proxy_release_listeners. Returns n.
 */
int proxy_listen_fds(const struct proxy *p, struct proxy_listen_fds *out);

/*
 * Stop accepting for good: each worker takes its listeners out of its
 * epoll and closes its fds on its next turn. For a proxy whose listeners
 * another process now holds; the connections open keep being served.
 * Any thread; idempotent.
 */
void proxy_release_listeners(struct proxy *p);

/*
 * Publish a new config (discovery: new services or endpoints). New
 * connections are routed with it from the workers' next round on, and so
 * is each later request of an open HTTP connection (it finds its service
 * again by its original VIP and port; a service gone is answered 503
 * service-gone). Requests in flight keep the config they were routed
 * with, and opaque TCP connections their endpoint, so they drain instead
 * of being cut (docs/discovery.md, "Snapshots"). No
 * worker takes a lock for it. On
 * success the proxy owns cfg and frees it once no connection uses it; on
 * failure (-EINVAL: cfg changes a field the running proxy cannot, such
 * as buffer_bytes; -ENOMEM) the caller keeps it. Call from one thread.
 */
int proxy_update(struct proxy *p, const struct config *cfg);

/*
 * Start draining (SIGTERM; docs/proxy.md, "Stopping"): connections keep
 * being served, but every HTTP response forwarded from now on carries
 * `connection: close` and its client connection closes after it, so that
 * keep-alive clients reconnect (through the datapath, failed open by
 * then) instead of being cut. Any thread; idempotent. Then wait for
 * proxy_stats().active to fall, and proxy_stop.
 */
void proxy_drain(struct proxy *p);

/* Stop accepting, close every connection, join the workers, free. */
void proxy_stop(struct proxy *p);

/*
 * A worker whose event loop has not turned for longer than bound_ms (one
 * turn runs that long, or the worker exited): its id, with how long in
 * *stalled_ms (UINT64_MAX: exited); -1 when every worker turns. A worker
 * waiting for events is turning. Any thread; shoald stops the fail-open
 * heartbeat while one is wedged (docs/proxy.md).
 */
int proxy_stalled_worker(struct proxy *p, uint64_t bound_ms, uint64_t *stalled_ms);

/*
 * Test only: worker id sleeps ms on its next loop turn, as a wedged one
 * would. shoald calls it on SIGUSR1 only when SHOALD_TEST_STALL_MS is set.
 */
void proxy_test_stall(struct proxy *p, int id, uint32_t ms);

/* Sum the counters of every worker into *out: a snapshot, callable from
 * any thread while the proxy runs. */
void proxy_stats(struct proxy *p, struct proxy_stats *out);

/*
 * ---- The read side ------------------------------------------------------
 * What the admin endpoint, /metrics and /debug read of a running proxy,
 * and all they read of it (docs/architecture.md, "Telemetry in two
 * layers"): the counters above, the live config with the balancer and
 * breaker state of its services and endpoints, and the workers'
 * golden-metric series; and where shoald hands the workers the tracer's
 * rings. Every call here is for any thread and stays off the request path.
 */

/*
 * One published config, held by reference (docs/discovery.md,
 * "Snapshots"). proxy_snap_newest takes a reference on the newest one,
 * which proxy_snap_put drops (NULL is fine); the config and the state
 * read through the snapshot stay valid until then.
 */
struct proxy_snap;
struct proxy_snap *proxy_snap_newest(struct proxy *p);
void proxy_snap_put(struct proxy_snap *s);
const struct config *proxy_snap_config(const struct proxy_snap *s);

/* The balancer's and breaker's state of one endpoint (docs/resilience.md). */
struct proxy_endpoint_stats {
	double estimate_ns;	    /* the PeakEWMA estimate aged to now (towards the peers') */
	uint32_t pending;	    /* requests in flight */
	bool penalised;		    /* a failure's penalty holds now */
	uint64_t explorations;	    /* picks made by exploration */
	uint64_t succeeded, failed; /* outcomes recorded */
	struct breaker_snapshot breaker;
};

/* The retry budget's and breakers' state of one service. */
struct proxy_service_stats {
	uint64_t budget_balance; /* whole retries the budget allows now */
	uint32_t ejected;	 /* endpoints out (open or half-open) */
	uint32_t ejection_cap;	 /* how many may be out at once */
	uint64_t ejections_refused;
	uint64_t requests, retries, retries_refused, deadline_exceeded, no_candidate;
	uint64_t ejections, readmissions;
};

/*
 * State at now_ns of service svc (one of proxy_snap_config(s)'s
 * services), and of its endpoint idx (an index into svc->endpoints).
 * False, with *out zeroed, when s has no state for it: a config published
 * without its endpoint-state view, or an index past the view's endpoints.
 */
bool proxy_snap_service_stats(const struct proxy_snap *s, const struct config_service *svc,
			      uint64_t now_ns, struct proxy_service_stats *out);
bool proxy_snap_endpoint_stats(const struct proxy_snap *s, const struct config_service *svc,
			       uint32_t idx, uint64_t now_ns, struct proxy_endpoint_stats *out);

/*
 * The golden metrics (recording/http_metrics.h): the series ids the proxy
 * gives each published service and route (the registry lives as long as
 * p), and every worker's series merged as res says (0 or -ENOMEM).
 */
struct series_ids;
struct metrics_resolver;
struct metrics_http_snapshot;
struct series_ids *proxy_series_ids(struct proxy *p);
int proxy_series_snapshot(struct proxy *p, const struct metrics_resolver *res,
			  struct metrics_http_snapshot *out);

/*
 * The call graph's callers (recording/callers.h): every worker's
 * (caller, addressed service) counts merged by caller name (0 or -ENOMEM).
 */
struct callers_snapshot;
int proxy_callers_snapshot(struct proxy *p, struct callers_snapshot *out);

/*
 * The authorization decisions (recording/policy_stats.h): every worker's
 * counters merged by series, and the newest decisions of all. Any thread;
 * 0 or -ENOMEM. Without a proxy (NULL), the empty snapshot.
 */
struct policy_stats_snapshot;
int proxy_policy_snapshot(struct proxy *p, struct policy_stats_snapshot *out);

/*
 * Tracing (recording/trace.h): t's rings serve p's workers, one each.
 * Attach before traffic is traced; detach (NULL) any time; t must outlive
 * p's workers. Returns 0, or -EINVAL when t has fewer rings than p has
 * workers (proxy_workers: size the tracer with it).
 */
struct tracer;
int proxy_attach_tracer(struct proxy *p, struct tracer *t);
unsigned int proxy_workers(const struct proxy *p);

#endif
