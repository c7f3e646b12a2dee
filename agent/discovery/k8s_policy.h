/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The Kubernetes source of authorization policy (docs/policy.md, "In
 * Kubernetes"): AuthorizationPolicy objects (shoal.io/v1alpha1), listed and
 * watched by a k8s watcher into this store, merged with the config file's
 * policy into the set in force.
 *
 * An object that does not decode is refused with its name and field logged;
 * the last good version of that object stays in force (and a new object that
 * never decoded is left out), so that a typo in one edit never opens or
 * closes more than the edit meant to.
 */
#ifndef SHOAL_DISCOVERY_K8S_POLICY_H
#define SHOAL_DISCOVERY_K8S_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include "discovery/k8s.h"
#include "policy/policy.h"

/* The collection's path: cluster-wide, as Services are watched. */
#define K8S_POLICY_PATH "/apis/shoal.io/v1alpha1/authorizationpolicies"
/* Objects held at most: the engine's own bound on rules. */
#define K8S_POLICY_MAX_OBJECTS POLICY_MAX_RULES

struct k8s_policy_store;

struct k8s_policy_store *k8s_policy_store_new(void);
void k8s_policy_store_free(struct k8s_policy_store *s);
/* The sink (k8s_collection.sink) that fills s; its calls run under the watcher's lock. */
struct k8s_sink k8s_policy_sink(struct k8s_policy_store *s);

/* Bumped by every change of what is held (under the watcher's lock). */
uint64_t k8s_policy_generation(const struct k8s_policy_store *s);
/* Objects refused since start (decoding or bounds); any thread. */
uint64_t k8s_policy_rejects(const struct k8s_policy_store *s);

/*
 * Append the rules and defaults held to out, in a stable order (by
 * namespace and name). 0, -E2BIG past out's bounds, or -ENOMEM. Caller
 * holds the watcher's lock.
 */
int k8s_policy_written(const struct k8s_policy_store *s, struct policy_doc *out);

#endif
