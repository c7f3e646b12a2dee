/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The Pods behind endpoints (docs/discovery.md, "Identities"): a
 * cluster-wide list and watch of v1 Pods into the model's pod table, so
 * that model_build gives each EndpointSlice endpoint whose targetRef is a
 * Pod the identity "<namespace>/<service account>" the encrypted hop
 * needs (docs/mtls.md), and each node the address its pods report
 * (status.hostIP), where the hop dials it; and every Namespace, for the mtls mode its
 * shoal.io/mtls-mode annotation asks for. Watched only when mtls is on
 * (mtls.on).
 */
#ifndef SHOAL_DISCOVERY_K8S_PODS_H
#define SHOAL_DISCOVERY_K8S_PODS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "discovery/k8s.h"
#include "discovery/model.h"

/* The collections: every namespace's Pods, and the Namespaces. */
#define K8S_PODS_PATH "/api/v1/pods"
#define K8S_NAMESPACES_PATH "/api/v1/namespaces"

/* At most one warning about pods' host addresses per this interval. */
#define K8S_PODS_HOST_WARN_NS (10ull * 1000 * 1000 * 1000)

struct k8s_pods {
	struct model *m;	      /* the model's lock is the watcher's */
	atomic_uint_fast64_t over;    /* pods not kept: MODEL_MAX_PODS reached */
	atomic_uint_fast64_t refused; /* pods that did not decode (logged) */
	/* pods whose node or host address was refused (logged; kept otherwise) */
	atomic_uint_fast64_t hosts_refused;
	/*
	 * A pod's bad host address is logged at most once per
	 * K8S_PODS_HOST_WARN_NS (every status update of the pod repeats
	 * it); the ones held back meanwhile are counted into the next.
	 */
	uint64_t host_warned_ns;
	uint64_t host_warns_held;
	bool over_logged;    /* the bound was logged once */
	bool ns_over_logged; /* MODEL_MAX_NAMESPACES was logged once */
};

/*
 * The sink (k8s_collection.sink) that keeps p->m's pods. A put that
 * changes no identity (a status update: same uid and service account)
 * returns 1, so that the watcher does not wake discovery for it. A pod
 * that does not decode is logged, counted and forgotten, with no relist.
 */
struct k8s_sink k8s_pods_sink(struct k8s_pods *p);

/*
 * The sink that keeps the annotated Namespaces' modes in p->m (the same
 * rules: a change that sets no other mode returns 1; a bad annotation is
 * logged and ignored).
 */
struct k8s_sink k8s_namespaces_sink(struct k8s_pods *p);

#endif
