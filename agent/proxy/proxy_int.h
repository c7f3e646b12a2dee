/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The proxy's insides, shared by its modules and its tests: the proxy
 * object and the seams a test may replace.
 */
#ifndef SHOAL_PROXY_INT_H
#define SHOAL_PROXY_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "proxy/endpoint_state.h"
#include "proxy/limits.h"
#include "proxy/proxy.h"

/*
 * Upper bound on worker threads. More than one per core buys nothing;
 * this only stops a typo ("workers: 10000") from exhausting the host.
 */
#define PROXY_MAX_WORKERS 256

struct worker;

/*
 * One published config (docs/discovery.md). Immutable once published.
 * References: the proxy's while it is the newest, each worker's while it
 * routes new connections with it (current or handed over), and each
 * connection's: until its worker moves it to a newer one
 * (worker_conn_follow), which happens between two HTTP requests and once
 * an opaque connection copies. The last reference frees it.
 */
struct proxy_snap {
	const struct config *cfg;
	atomic_uint refs;
	bool owned; /* cfg came from proxy_update: freed with the snapshot */
	/* cfg's endpoint-state view (endpoint_state.h), retired with it */
	struct es_view *es_view;
	struct es_table *es;
};

/*
 * Take a reference (any thread; the caller already holds one). The last
 * proxy_snap_put (proxy.h) frees s.
 */
void proxy_snap_get(struct proxy_snap *s);

/* Seams for tests; zeroed fields take the production behaviour. */
struct proxy_opts {
	/*
	 * Where to connect for endpoint ep on port_be; the default is
	 * addr_to_sockaddr. Tests map distinct endpoint addresses onto
	 * distinct ports of 127.0.0.1, as config endpoints carry no port.
	 */
	socklen_t (*endpoint_sockaddr)(const struct shoal_addr *ep, uint16_t port_be,
				       struct sockaddr_storage *out);
	/*
	 * Creates every upstream socket; the default is socket(2). Tests
	 * inject failures (EMFILE, ENOBUFS) through it.
	 */
	int (*open_socket)(int domain, int type, int protocol);
	/*
	 * Reads how a non-blocking upstream connect ended, once epoll
	 * reports it: 0 or the positive errno of SO_ERROR; the default is
	 * sock_error. Tests inject errors that the kernel reports only there
	 * (ENOBUFS, EADDRNOTAVAIL) through it.
	 */
	int (*connect_error)(int fd);
	/*
	 * Who the caller at addr is ("<ns>/<sa>", a string that outlives the
	 * proxy, or NULL), in place of attempt_src_ident, which needs mtls on
	 * and a running tunnel to intern it. Tests of what the proxy does with
	 * a known caller (x-shoal-peer-identity) name one through it.
	 */
	const char *(*src_ident)(const struct shoal_addr *addr);
	/*
	 * Hand-over (proxy_start_inherit): the listeners worker_init takes
	 * (each fd taken is set to -1), and whether the workers start held.
	 */
	struct proxy_listen_fds *inherit;
	bool hold;
};

_Static_assert(PROXY_MAX_LISTEN_FDS >= 2 * PROXY_MAX_WORKERS,
	       "a hand-over carries two listeners per worker");

struct series_ids;

struct proxy {
	const struct config *cfg; /* the start-up config: listeners, sizes */
	/* The newest config: proxy_update's thread writes it under snap_lock;
	 * other threads read it with proxy_snap_newest. */
	struct proxy_snap *snap;
	pthread_mutex_t snap_lock;
	/* Metric series ids of every service published (recording/series_ids.h). */
	struct series_ids *series;
	proxy_orig_dst_fn orig_dst;
	proxy_on_shortcut_fn on_shortcut;
	void *orig_ctx; /* both callbacks' */
	/* proxy_set_caller_fn's; caller_fn published last (release). */
	proxy_caller_fn caller_fn;
	void *caller_ctx;
	/* The encrypted hop (docs/mtls.md): proxy_set_tunnel's and
	 * proxy_set_identity_fn's, published with release. */
	struct tunnel *tunnel;
	proxy_identity_fn identity_fn;
	void *identity_ctx;
	struct proxy_opts opts;
	/*
	 * Balancer, breaker and budget state per service and endpoint, kept
	 * across config swaps, and the view of the config in use. Whoever
	 * swaps cfg publishes proxy_endpoints_sync()'s view with it; until
	 * then es_view_service() refuses the old view and picks are uniform.
	 */
	struct es_table es;
	bool es_ready; /* es initialised */
	struct es_view *_Atomic es_view;
	/*
	 * Node-wide budgets (limits.h), taken from the start-up config:
	 * proxy.max_buffer_memory_bytes and proxy.max_connections_per_client.
	 */
	struct limits_mem mem;
	struct limits_clients clients;
	bool clients_ready; /* clients initialised */
	int stop_fd; /* eventfd: readable once proxy_stop was called */
	atomic_bool draining; /* proxy_drain was called: close HTTP clients after their response */
	atomic_bool hold_accepts;	/* workers do not accept until proxy_accept_start */
	atomic_bool listeners_released; /* proxy_release_listeners was called */
	int n_workers;
	struct worker *workers;
};

/* proxy_start with seams; opts may be NULL. Same contract otherwise. */
int proxy_start_opts(const struct config *cfg, proxy_orig_dst_fn orig_dst,
		     proxy_on_shortcut_fn on_shortcut, void *orig_ctx, const struct proxy_opts *opts,
		     struct proxy **out, char *err, size_t errlen);

/*
 * Build the endpoint-state view of cfg (endpoint_state.h) and make it the
 * one workers use. Call it when cfg becomes p's config. 0 or -errno.
 */
int proxy_endpoints_sync(struct proxy *p, const struct config *cfg);

/* The endpoint-state view in use; any thread. */
static inline const struct es_view *proxy_es_view(struct proxy *p)
{
	return atomic_load_explicit(&p->es_view, memory_order_acquire);
}

#endif
