/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The Kubernetes source: lists, then watches, v1 Services and
 * discovery.k8s.io/v1 EndpointSlices, and keeps a model up to date. One
 * thread per resource, each with its own HTTP connection (libcurl),
 * so that a slow or broken stream of one kind never holds up the other.
 */
#ifndef SHOAL_DISCOVERY_K8S_H
#define SHOAL_DISCOVERY_K8S_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "discovery/model.h"

/* In-cluster defaults: where the kubelet mounts the service account. */
#define K8S_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define K8S_DEFAULT_CA_FILE K8S_SA_DIR "/ca.crt"
#define K8S_DEFAULT_TOKEN_FILE K8S_SA_DIR "/token"
/* An API server URL: scheme, host (an IPv6 literal at most), port. */
#define K8S_MAX_URL 256
/* Bound-service-account tokens are JWTs of about 1 KiB; room for claims. */
#define K8S_MAX_TOKEN 16384
/*
 * The kubelet rotates projected tokens well before they expire (at 80 %
 * of a one-hour lifetime at the latest); re-reading every minute always
 * catches the new one in time, and costs one small read.
 */
#define K8S_TOKEN_REREAD_MS 60000
/*
 * timeoutSeconds of each watch. The server ends the watch then and the
 * watcher renews it from the last resourceVersion: a silent broken
 * connection costs at most this long. client-go picks 5-10 min; shorter
 * here because an agent that misses a change misroutes traffic.
 */
#define K8S_WATCH_TIMEOUT_S 240
/* Added to the watch's own timeout for the client's hard deadline. */
#define K8S_WATCH_SLACK_S 30
/* Connect (TCP + TLS) deadline; an API server takes milliseconds. */
#define K8S_CONNECT_TIMEOUT_S 10
/* Longest list request (all pages of one kind take a request each). */
#define K8S_LIST_TIMEOUT_S 120
/* Objects per list page: the API server's own guidance is 500. */
#define K8S_LIST_PAGE_LIMIT 500
/*
 * Back-off after an error, with full jitter (sleep uniform in [0, d],
 * d doubling from MIN to MAX), so that a thousand agents do not stampede
 * a recovering API server in step. client-go's defaults are 0.8 s..30 s.
 */
#define K8S_BACKOFF_MIN_MS 500
#define K8S_BACKOFF_MAX_MS 30000
/* Status bodies of failed requests kept for the log. */
#define K8S_MAX_ERROR_BODY 4096
/*
 * Refused EndpointSlice addresses are logged one line each, at most
 * K8S_REFUSED_LOG_BURST lines per K8S_REFUSED_LOG_WINDOW_MS: a slice of a
 * thousand bad addresses, rewritten every second, must not flood the
 * log. The first line of the next window says how many went unlogged;
 * the counter k8s_refused_endpoints has them all.
 */
#define K8S_REFUSED_LOG_BURST 5
#define K8S_REFUSED_LOG_WINDOW_MS 60000

struct k8s_opts {
	char api_server[K8S_MAX_URL]; /* "https://host:port" */
	char ca_file[PATH_MAX];
	char token_file[PATH_MAX];
	/*
	 * The proxy to reach the API server through (kubernetes.proxy_url);
	 * "": none. Either way the proxy variables of the environment
	 * (HTTPS_PROXY, ALL_PROXY, NO_PROXY, ...) are never read: an agent
	 * on every node must not follow what a node's shell profile says.
	 */
	char proxy_url[K8S_MAX_URL];
	uint32_t watch_timeout_s; /* 0: K8S_WATCH_TIMEOUT_S */
	uint32_t backoff_min_ms;  /* 0: K8S_BACKOFF_MIN_MS (tests shorten it) */
	uint32_t backoff_max_ms;  /* 0: K8S_BACKOFF_MAX_MS */
	/* The node's own addresses (node.address_v4/v6; zero: none), which
	 * no EndpointSlice endpoint may have (model_slice_refuse). */
	struct shoal_addr node_v4, node_v6;
};

/*
 * Fill opts for running inside a cluster: the API server from
 * KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT, and the service
 * account's CA and token. Fields already set (non-empty) are kept, so the
 * config file can override any of them. Returns 0, or -ENOENT when no
 * API server is set and the environment does not name one.
 */
int k8s_opts_in_cluster(struct k8s_opts *opts);

/* Counters of the watcher, for telemetry; read with k8s_stats. */
struct k8s_stats {
	uint64_t lists;	       /* list requests completed (all pages) */
	uint64_t watches;      /* watch streams opened */
	uint64_t events;       /* watch events applied */
	uint64_t relists_410;  /* relists forced by 410 Gone / Expired */
	uint64_t errors;       /* failed requests (connect, TLS, HTTP, decode) */
	uint64_t unauthorized; /* 401s (each re-reads the token) */
	uint64_t bad_objects;  /* objects that could not be decoded */
	uint64_t refused_endpoints; /* EndpointSlice addresses refused (model_slice_refuse) */
};

struct k8s_watcher;

/*
 * Other collections than discovery's, watched by the same loop (list,
 * watch, 410 relist, back-off, token): enrollment's Pods and Namespaces
 * (docs/enrollment.md). The objects go to a sink, undecoded; the
 * watcher's lock is held around every call.
 */
struct k8s_sink {
	/* A full list starts / ended: the sink drops what begin..end did not put. */
	void (*begin)(void *ctx);
	void (*end)(void *ctx);
	/*
	 * An object added or modified (list item or watch event), or
	 * deleted. Returns 0; 1 when nothing that matters changed (the
	 * agent is not woken for it); or -EINVAL with the reason in err for an
	 * object it cannot decode (counted in bad_objects, logged; a watch
	 * then lists again so that no object is silently skipped).
	 */
	int (*put)(void *ctx, json_object *obj, char *err, size_t errlen);
	int (*del)(void *ctx, json_object *obj, char *err, size_t errlen);
	void *ctx;
};

/* A selector query, URL-escaped: "fieldSelector=spec.nodeName%3Dnode-1". */
#define K8S_MAX_SELECTOR 512
/* Collections one watcher runs: one thread and connection each. */
#define K8S_MAX_COLLECTIONS 4

struct k8s_collection {
	const char *what;		 /* "pods": names the thread and log lines (static) */
	const char *path;		 /* "/api/v1/pods" (static) */
	char selector[K8S_MAX_SELECTOR]; /* "" for none */
	struct k8s_sink sink;
};

/*
 * Start watching n collections (1..K8S_MAX_COLLECTIONS), as k8s_start
 * does for discovery's two, each change signalled on notify_fd. cols is
 * copied. k8s_synced, k8s_get_stats and k8s_stop work on the result.
 * Returns 0 and *out, or -errno (logged).
 */
int k8s_start_collections(const struct k8s_opts *opts, const struct k8s_collection *cols, int n,
			  pthread_mutex_t *lock, int notify_fd, struct k8s_watcher **out);

/*
 * Start watching. Every change is applied to m under *lock (the caller
 * takes the same lock to read m), then signalled by an 8-byte write of 1
 * to notify_fd (an eventfd), so that bursts coalesce. Returns 0 and
 * *out, or -errno (with the reason logged).
 */
int k8s_start(const struct k8s_opts *opts, struct model *m, pthread_mutex_t *lock, int notify_fd,
	      struct k8s_watcher **out);

/* Stop both threads (within about a second) and free. NULL is fine. */
void k8s_stop(struct k8s_watcher *w);

/*
 * True once both kinds were listed and both watches are connected; false
 * again while either is failing (the model then holds the last state
 * that was known). Any thread.
 */
bool k8s_synced(struct k8s_watcher *w);

void k8s_get_stats(struct k8s_watcher *w, struct k8s_stats *out);

#endif
