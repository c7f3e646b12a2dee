/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * One proxy worker: a thread with its own epoll, its own SO_REUSEPORT
 * listeners, its own deadlines and its own connections. Nothing here is
 * shared between workers except the proxy's read-only config, the round
 * robin counters and the stats (read by other threads, atomically).
 */
#ifndef SHOAL_PROXY_WORKER_H
#define SHOAL_PROXY_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/addr.h"
#include "proxy/conn.h"
#include "proxy/proxy_int.h"
#include "proxy/timer.h"

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

/* Events fetched per epoll_wait: enough to amortise the syscall. */
#define WORKER_MAX_EVENTS 256
/* Connections accepted per listener wakeup, so a burst of new
 * connections cannot starve the established ones. */
#define WORKER_ACCEPT_BATCH 64
/* Idle connection objects (with their buffers) a worker keeps for reuse;
 * 256 x 2 x 16 KiB = 8 MiB per worker at the default buffer size. */
#define WORKER_FREE_CONNS_MAX 256

/*
 * Idle buffers, states and header slots a worker keeps for reuse; past this they
 * are freed. 64 buffers of the default 16 KiB are 1 MiB.
 */
#define WORKER_FREE_BUFS_MAX 64
/*
 * Replay slabs (docs/resilience.md, "Replay buffers"): a retry-eligible
 * request whose body does not fit the connection's buffer is copied into
 * one as it is forwarded, so a retry can send it again. Each holds a body
 * of up to WORKER_REPLAY_BODY_BYTES (the 64 KiB, the default
 * retries.max_body_bytes; a larger configured limit is capped here) plus
 * its head (at most proxy.buffer_bytes). At most WORKER_REPLAY_SLABS_MAX
 * per worker: 32 x (64 + 16) KiB = 2.5 MiB at the default buffer size,
 * a tenth of what WORKER_FREE_CONNS_MAX idle connections may hold. Past
 * that, mid-size bodies stream through unretried (http_replay_no_slab).
 * Slabs are allocated on first need and reused, never freed before
 * worker_fini: no allocation per request once warm.
 */
#define WORKER_REPLAY_BODY_BYTES (64 * 1024)
#define WORKER_REPLAY_SLABS_MAX 32
/* Back-off before accepting again after the process ran out of fds or
 * memory; a connection closing resumes earlier. */
#define WORKER_ACCEPT_RETRY_MS 100
/*
 * Draining (proxy_drain): every WORKER_DRAIN_SWEEP_MS a worker closes its
 * HTTP keep-alive connections idle for WORKER_DRAIN_IDLE_MS or more, so
 * that the drain ends when the work does, not at its deadline. A client
 * quiet for 1 s is not about to send (request/response clients send the
 * next request right after the last response); busier ones get
 * `connection: close` on their next response instead.
 */
#define WORKER_DRAIN_SWEEP_MS 100
#define WORKER_DRAIN_IDLE_MS 1000
/* At most one rate-limited warning per worker per this interval. */
#define WORKER_WARN_INTERVAL_NS 1000000000ull

struct worker;
struct conn;
struct pool;
struct metrics_http_shard;
struct callers_table;
struct trace_worker;

struct worker_listener {
	struct pollable pl;
	char name[ADDR_STR_MAX]; /* "10.0.1.1:15001", for messages */
};

/* Idle blocks of one size, kept for reuse (WORKER_FREE_BUFS_MAX at most). */
struct worker_freelist {
	void *items[WORKER_FREE_BUFS_MAX];
	uint32_t n;
	size_t size;
};

struct worker {
	struct proxy *p;
	const struct config *cfg;
	int id;
	pthread_t thread;
	bool started; /* thread is running and must be joined */

	int epfd;
	struct pollable stop; /* the proxy's stop eventfd, in this epoll */
	bool stopping;
	/*
	 * This worker's loop of the mTLS tunnel (tunnel_loop_fd), in this
	 * epoll from the first call it sends through the tunnel; fd -1
	 * before. The tunnel owns the fd.
	 */
	struct pollable tunnel_loop;
	struct tunnel *tunnel;
	uint64_t tunnel_epoch_seen; /* tunnel_retirements at the last check (worker_on_tunnel) */

	struct worker_listener listeners[2]; /* IPv4 and/or IPv6 */
	int n_listeners;
	bool accepting;			/* listeners are in the epoll */
	struct timer_node accept_retry; /* resumes accepting after EMFILE & co */
	struct timer_node drain_sweep;	/* draining: the next sweep of idle keep-alives */
	bool draining;			/* saw proxy_drain */

	struct timer_heap timers;

	struct conn *active; /* every open connection (doubly linked) */
	uint32_t n_active;
	struct conn *pending; /* need a turn outside epoll (retry, pump) */
	struct conn *closed;  /* released this loop turn, reaped at its end */
	struct conn *free;    /* reusable objects */
	uint32_t n_free;

	/*
	 * Buffers (cfg->buffer_bytes), a kind's per-connection state (HTTP/1's
	 * struct http1_conn) and its header slots live apart from the
	 * connections: a connection holds a buffer only while bytes wait in
	 * it, a state only if its kind keeps one, and slots only while a head
	 * is parsed or in use, so an idle connection costs its few hundred
	 * bytes (docs/proxy.md). The kinds size the state and slot caches
	 * (accept_size_caches); the worker only keeps them.
	 */
	struct worker_freelist bufs;
	uint32_t n_buf_held;	 /* by connections */
	uint32_t n_headers_held; /* slot arrays held by connections */
	struct worker_freelist states;
	struct worker_freelist slots;
	struct pool *pool; /* idle upstream HTTP connections per endpoint */

	void *replay_free[WORKER_REPLAY_SLABS_MAX]; /* idle replay slabs */
	uint32_t n_replay_free;
	uint32_t n_replay_slabs;  /* allocated so far, idle or in use */
	size_t replay_slab_bytes; /* WORKER_REPLAY_BODY_BYTES + buffer_bytes */

	uint64_t warn_last_ns;
	uint64_t warn_suppressed;

	/*
	 * Config snapshots (docs/discovery.md). cfg == snap->cfg routes new
	 * connections; proxy_update drops a newer one into next_snap and
	 * rings update, and the worker swaps it in between two events. Each
	 * connection keeps a reference to its snapshot (conn.snap) until
	 * it is reaped, or, for HTTP, until its next request moves it to the
	 * newest (worker_conn_follow).
	 */
	struct proxy_snap *snap;
	_Atomic(struct proxy_snap *) next_snap;
	struct pollable update; /* eventfd */

	/*
	 * Liveness, read by proxy_stalled_worker (docs/proxy.md, "A wedged
	 * worker fails the node open"): when the loop turn in progress
	 * started (timer_now_ns), 0 while the worker waits in epoll_wait;
	 * exited once the loop is left.
	 */
	_Atomic uint64_t busy_since_ns;
	atomic_bool exited;
	_Atomic uint32_t test_stall_ms; /* proxy_test_stall: sleep this long on the next turn */

	struct proxy_stats stats; /* written by this worker, read by anyone: atomics */
	struct metrics_http_shard *metrics; /* golden metrics; NULL: not recorded */
	struct callers_table *callers;	    /* who calls which service; NULL: not recorded */
	struct policy_stats *authz;	    /* policy decisions (authz.c); NULL: not recorded */
	struct trace_worker *trace; /* this worker's span ring; NULL: no tracing (atomic) */
	/* HTTP/2 bytes charged to the buffer budget, not yet handed out (h2_session.c). */
	size_t h2_mem_credit;
	/* Blocks its HTTP/2 sessions and streams freed, kept for reuse (h2_session.c). */
	struct h2_mem_cache *h2_cache;
};

/*
 * A buffer of cfg->buffer_bytes for a connection about to read, and back once
 * empty. NULL when memory is short (the caller fails the connection).
 */
char *worker_buf_get(struct worker *w);
void worker_buf_put(struct worker *w, char *buf);

/* Socket fd is not on the sockmap shortcut (proxy_on_shortcut_fn). */
bool worker_plain_tcp(const struct worker *w, int fd);

/*
 * A kind's per-connection state (uninitialized; states.size bytes), and
 * back (NULL is ignored; whatever it held given back already).
 */
void *worker_state_get(struct worker *w);
void worker_state_put(struct worker *w, void *state);

/* Header slots for a state (uninitialized; slots.size bytes), and back. */
void *worker_slots_get(struct worker *w);
void worker_slots_put(struct worker *w, void *slots);

/* The config connection c was routed with (it outlives later updates). */
const struct config *worker_conn_config(const struct worker *w, const struct conn *c);

/*
 * The balancer state of service svc of cfg, where cfg is c's config or
 * the worker's current one: the view of that config's snapshot, alive as
 * long as the snapshot is. NULL when cfg is neither (the pick is then
 * stateless). Worker thread only.
 */
const struct es_svc_view *worker_es_service(const struct worker *w, const struct conn *c,
					    const struct config *cfg,
					    const struct config_service *svc);

/*
 * Move c to the worker's newest snapshot, at a request boundary (no
 * request of c in flight, no balancer ticket or service view held), or
 * an opaque connection once it copies (its endpoint stays): drop
 * c's old snapshot, take the newest, and find c's service in it again by
 * c->orig, the original VIP and port (docs/discovery.md, "Snapshots").
 * c->svc, svc_port, port_be and sv then all come from the newest config.
 * Returns 0 (also when c was on it already), or -ENOENT when that config
 * has no service at c->orig any more: c then keeps its snapshot and its
 * service, so that its answer can still name it. Worker thread only.
 */
int worker_conn_follow(struct worker *w, struct conn *c);

#define WORKER_STAT_ADD(w, name, v) __atomic_fetch_add(&(w)->stats.name, (v), __ATOMIC_RELAXED)
#define WORKER_STAT_INC(w, name) WORKER_STAT_ADD(w, name, 1)

/* Add stats of w into *sum; any thread. */
void worker_stats_add(struct worker *w, struct proxy_stats *sum);

/* Register pl->fd, edge-triggered for reads, writes and hang-ups. 0 or -errno. */
int worker_watch(struct worker *w, struct pollable *pl);
/* Point pl->fd's registration (made for another pollable) at pl. 0 or -errno. */
int worker_rewatch(struct worker *w, struct pollable *pl);
/* Deregister pl->fd; harmless when it was not registered. */
void worker_unwatch(struct worker *w, struct pollable *pl);

/*
 * A zeroed connection with its buffers, linked into w's active list, or
 * NULL when memory is short. Counts toward max_connections until
 * worker_conn_release, which also gives back its per-client count
 * (conn.client_counted).
 */
struct conn *worker_conn_get(struct worker *w);

/*
 * Unlink c (its sockets already closed). Its memory stays valid until the
 * end of the current loop turn, since events of this turn may still name
 * it; then it is reused or freed.
 */
void worker_conn_release(struct worker *w, struct conn *c);

/* Give c a turn after this round of events (opaque_resume), e.g. to retry a
 * connect or to finish copying once its budget ran out. Idempotent. */
void worker_conn_defer(struct worker *w, struct conn *c);

/*
 * A replay slab of w->replay_slab_bytes, or NULL when all
 * WORKER_REPLAY_SLABS_MAX are in use, memory is short or the buffer memory
 * budget (proxy.max_buffer_memory_mib) has no room for a new one. Worker thread.
 */
void *worker_replay_get(struct worker *w);

/* Give slab (from worker_replay_get; NULL is ignored) back to w. */
void worker_replay_put(struct worker *w, void *slab);

/*
 * A client is refused at cap (proxy.h, PROXY_CAPS): count it under
 * shoal_proxy_refused_total{cap} and say which cap, rate-limited. what
 * names what was refused ("a connection from 10.0.0.7:4711").
 */
void worker_refused(struct worker *w, enum proxy_cap cap, const char *what);

/*
 * Whether w can give a new connection its first buffer without passing
 * proxy.max_buffer_memory_mib: one idle in its free list, or room in the
 * budget for a new one.
 */
bool worker_mem_room(struct worker *w);

/* pr_warn, at most once per WORKER_WARN_INTERVAL_NS on this worker, so a
 * dead service cannot flood the log; the rest are counted and reported. */
void worker_warn_ratelimited(struct worker *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Register l's socket (level-triggered: a batch may leave connections queued). 0 or -errno. */
int worker_listener_add(struct worker *w, struct worker_listener *l);

/*
 * Resume accepting after a pause (EMFILE & co), unless stopping; also
 * when a connection closes. max_connections does not hold it back: a
 * connection past it is accepted and refused (conn_accept).
 */
void worker_accept_resume(struct worker *w);

/*
 * Take the snapshot proxy_update handed over, if any, and move the
 * connections whose kind says they are settled onto it
 * (conn_ops.settled, worker_conn_follow).
 */
void worker_snap_take(struct worker *w);

/* Free the connection objects, buffers, states and slabs w keeps for reuse. */
void worker_caches_free(struct worker *w);

#endif
