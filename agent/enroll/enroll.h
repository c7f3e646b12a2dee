/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Automatic enrollment (docs/enrollment.md): watch the Pods on this node
 * and the labelled Namespaces, decide which pods are meshed, find each
 * one's network namespace from the kubelet's cgroups or the runtime's
 * netns mounts (or from the CNI plugin, before the pod's containers
 * start), check that it holds the pod's IP, and keep shoal_enrolled equal to that set. One
 * controller thread; the Kubernetes watch threads are discovery's (k8s.h).
 */
#ifndef SHOAL_ENROLL_ENROLL_H
#define SHOAL_ENROLL_ENROLL_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "discovery/k8s.h"
#include "enroll/pods.h"

/*
 * Full reconcile period, on top of the one after every watch event and
 * CNI request: pods whose netns appears without a CNI call (an agent
 * restart, no plugin installed) and dead namespaces are found within it.
 */
#define ENROLL_RESYNC_MS 5000
/*
 * An entry of shoal_enrolled whose netns is not seen alive is removed
 * only once it is older than this: a netns the CNI plugin reported may
 * be reachable only through a bind mount this agent does not see until
 * the sandbox's first process (pause) starts, a second or so later.
 */
#define ENROLL_STALE_GRACE_MS 10000

/* X(field, kind, help): exported as shoal_enroll_<field>[_total]. */
#define ENROLL_STATS(X)                                                                            \
	X(pods, gauge, "Pods on this node known from the API server.")                             \
	X(pods_enrolled, gauge, "Pods whose network namespace is enrolled (meshed).")              \
	X(pods_pending, gauge,                                                                     \
	  "Pods the rules mesh whose network namespace is not found or not verified yet.")         \
	X(pods_unmeshed, gauge, "Pods the rules leave out (labels).")                              \
	X(pods_host_network, gauge, "Host-network pods (never meshed).")                           \
	X(enrolls, counter, "Network namespaces enrolled.")                                        \
	X(unenrolls, counter, "Network namespaces unenrolled (pod deleted, labels changed).")      \
	X(stale_removed, counter, "shoal_enrolled entries removed because their netns is gone.")   \
	X(netns_mismatch, counter,                                                                 \
	  "Pod processes whose netns did not hold one of the pod's IPs (not enrolled).")           \
	X(cni_requests, counter, "Requests from the CNI plugin.")                                  \
	X(cni_errors, counter, "CNI requests that could not be served (the pod failed open).")     \
	X(reconciles, counter, "Reconciles of shoal_enrolled with the pods.")                      \
	X(k8s_events, counter, "Pod and Namespace watch events applied.")                          \
	X(k8s_errors, counter,                                                                     \
	  "Failed Pod and Namespace requests (connect, TLS, HTTP, decoding).")                     \
	X(k8s_relists_410, counter, "Pod and Namespace relists forced by 410 Expired.")

struct enroll_stats {
#define ENROLL_STATS_FIELD(name, kind, help) uint64_t name;
	ENROLL_STATS(ENROLL_STATS_FIELD)
#undef ENROLL_STATS_FIELD
};

struct enroll_opts {
	struct k8s_opts k8s;
	char node_name[ENROLL_MAX_NAME];
	char cgroup_root[PATH_MAX]; /* absolute: where the cgroup scan starts */
	char cni_socket[108];	    /* the plugin's socket (sun_path); "": none */
	char netns_dir[PATH_MAX];   /* the runtime's netns mounts, matched by IP; "": none */
	char pin_root[PATH_MAX];
	uint32_t resync_ms; /* 0: ENROLL_RESYNC_MS */
};

struct enroll;

/* Start the watches, the controller and the CNI socket. 0 and *out, or
 * -errno after logging. */
int enroll_start(const struct enroll_opts *opts, struct enroll **out);

/* Stop and free; the enrolled map stays as it is (pods stay meshed while
 * no agent runs). NULL is fine. */
void enroll_stop(struct enroll *e);

/* Both kinds listed and watched at least once. */
bool enroll_synced(struct enroll *e);

void enroll_get_stats(struct enroll *e, struct enroll_stats *out);

/* A copy of the pods (free it). Returns the count, or -ENOMEM. */
int enroll_pods_copy(struct enroll *e, struct enroll_pod **out);

/*
 * The pod -> service account map: the namespace and service account of
 * the pod whose netns cookie is cookie (when non-zero) or which has
 * address ip (when non-NULL). Returns 0, or -ENOENT.
 */
int enroll_pod_identity(struct enroll *e, uint64_t cookie, const struct shoal_addr *ip,
			char ns[ENROLL_MAX_NS], char sa[ENROLL_MAX_NAME]);

/*
 * The namespace and name of the (not host-network) pod that has address
 * ip, without waiting: -EAGAIN when the controller holds the pod table
 * now (for the proxy's workers, which must not block). 0, -ENOENT or -EAGAIN.
 */
int enroll_pod_name_try(struct enroll *e, const struct shoal_addr *ip, char ns[ENROLL_MAX_NS],
			char name[ENROLL_MAX_NAME]);

#endif
