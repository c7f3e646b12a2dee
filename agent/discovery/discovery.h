/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Discovery: the desired set of services, from the config file (watched
 * with inotify) and, when configured, from the Kubernetes API. The agent's
 * main loop polls one fd; when it is readable, discovery_poll() hands
 * back a complete new `struct config` to publish to the datapath
 * (datapath_update_services) and the proxy (proxy_update).
 *
 * Not thread-safe: one thread (the main loop) calls everything here,
 * except discovery_synced and discovery_get_stats, which any thread may.
 */
#ifndef SHOAL_DISCOVERY_H
#define SHOAL_DISCOVERY_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "discovery/k8s.h"
#include "discovery/model.h"

/*
 * What discovery did, for telemetry, declared once: X(name, kind, help).
 * kind is counter (only grows) or gauge.
 */
#define DISCOVERY_STATS(X)                                                                         \
	X(file_reloads, counter, "Config file edits applied.")                                     \
	X(file_rejects, counter,                                                                   \
	  "Config file edits refused (file:line: field logged); the last good one stays.")         \
	X(file_restart_fields, counter,                                                            \
	  "Applied edits that also changed fields only a restart applies (kept as running).")      \
	X(snapshots, counter, "New configurations handed to the datapath and the proxy.")          \
	X(build_failures, counter, "Configurations that could not be built (out of memory).")      \
	X(k8s_events, counter, "Kubernetes watch events applied.")                                 \
	X(k8s_lists, counter, "Kubernetes full lists (start, relists).")                           \
	X(k8s_relists_410, counter, "Relists forced by 410 Expired.")                              \
	X(k8s_errors, counter, "Failed Kubernetes requests (connect, TLS, HTTP, decoding).")       \
	X(k8s_unauthorized, counter, "Kubernetes requests refused with 401 (token re-read).")      \
	X(k8s_bad_objects, counter, "Kubernetes objects that could not be decoded; left out.")     \
	X(k8s_refused_endpoints, counter,                                                          \
	  "EndpointSlice addresses refused: loopback, link-local, unspecified, multicast, "        \
	  "broadcast or the node's own; left out.")                                                \
	X(policy_rejects, counter,                                                                 \
	  "Merged authorization policies refused (file and AuthorizationPolicy objects clash, or " \
	  "exceed the bounds; logged); the last good policy stays in force.")                      \
	X(policy_object_rejects, counter,                                                          \
	  "AuthorizationPolicy objects refused (object and field logged); an object's last good "  \
	  "version stays in force.")                                                               \
	X(policy_rules, gauge, "Authorization rules in force (file and Kubernetes).")              \
	X(services, gauge, "Services in the last configuration built from the model.")             \
	X(endpoints, gauge, "Endpoints published in that configuration.")                          \
	X(skipped_headless, gauge, "Headless services (not intercepted) in the model.")            \
	X(skipped_conflict, gauge, "Services left out: (VIP, port) taken, or maps full.")          \
	X(endpoints_unresolved, gauge, "Endpoints left out: named target port unresolved.")        \
	X(endpoints_no_identity, gauge,                                                            \
	  "Endpoints of a Pod (targetRef) whose pod is not known: published with no identity "     \
	  "(mtls strict refuses them on other nodes).")                                            \
	X(k8s_pods, gauge, "Pods kept for the endpoints' identities (mtls on).")                   \
	X(k8s_nodes, gauge,                                                                        \
	  "Nodes whose address their pods report (status.hostIP), for the encrypted hop; "         \
	  "mtls.nodes wins where it names the node.")                                              \
	X(k8s_host_refused, counter,                                                               \
	  "Pod updates whose spec.nodeName or status.hostIP(s) was refused (logged with the "      \
	  "pod); the pod keeps its identity, its node's address is not learned from it.")          \
	X(k8s_pods_over, counter,                                                                  \
	  "Pods not kept: more than MODEL_MAX_PODS; their endpoints have no identity.")            \
	X(synced, gauge, "1 when every source is in sync (Kubernetes listed and watching).")

struct discovery_stats {
#define DISCOVERY_STATS_FIELD(name, kind, help) uint64_t name;
	DISCOVERY_STATS(DISCOVERY_STATS_FIELD)
#undef DISCOVERY_STATS_FIELD
};

struct discovery;

/*
 * Start watching running->path and, when k8s is not NULL, the Kubernetes
 * API. running is the config the agent started with (borrowed; it must
 * outlive discovery): fields outside services are compared with it on
 * every reload and kept as they run (a warning names what needs a
 * restart). Returns 0 and *out, or -errno after logging.
 */
int discovery_start(const struct config *running, const struct k8s_opts *k8s,
		    struct discovery **out);

/* An fd that polls readable when discovery_poll has work. */
int discovery_fd(const struct discovery *d);

/*
 * Drain the sources. When the desired state changed, returns 1 and a new
 * config in *out (the caller owns it: config_free, or hand it to
 * proxy_update). Returns 0 when nothing changed (a rejected edit, an
 * unchanged file), or -errno.
 */
int discovery_poll(struct discovery *d, struct config **out);

/* True when every source is in sync: always for the file alone; with
 * Kubernetes, once both kinds are listed and watched (k8s_synced). */
bool discovery_synced(struct discovery *d);

void discovery_get_stats(struct discovery *d, struct discovery_stats *out);

/* Stop the sources and free. NULL is fine. */
void discovery_stop(struct discovery *d);

#endif
