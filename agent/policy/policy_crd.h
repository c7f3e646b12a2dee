/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The AuthorizationPolicy custom resource (shoal.io/v1alpha1, its schema in
 * manifests/crd-authorizationpolicy.yaml; docs/policy.md, "In Kubernetes").
 * One object is either one rule of its namespace:
 *
 *   spec: {service: cart, ports: [8080], action: allow,
 *          from: [{namespace: web}, {serviceAccount: ops/admin},
 *                 {identity: "spiffe://..."}, "*", "unauthenticated"],
 *          to: [{methods: [GET], path: {prefix: /items}},
 *               {grpc: {service: shop.Cart, method: Get}}]}
 *
 * or the default of its namespace, or of one service of it:
 *
 *   spec: {default: same-namespace}            spec: {service: public, default: allow}
 *
 * The object's name is the rule's. Decoding is strict, as the config file's
 * parser is: unknown fields, wrong types and out-of-bounds values are refused
 * with the object and the field named, so that a typo is an error and not a
 * rule that silently allows or denies something else.
 */
#ifndef SHOAL_POLICY_POLICY_CRD_H
#define SHOAL_POLICY_POLICY_CRD_H

#include <stddef.h>

#include <json-c/json.h>

#include "policy/policy.h"

/* What one object decodes to. */
struct policy_crd {
	bool is_default;
	struct policy_rule rule;	/* !is_default; from/to are heap (policy_crd_clear) */
	struct policy_default_rule def; /* is_default */
	char ns[POLICY_MAX_LABEL + 1];	/* metadata.namespace */
	char name[POLICY_MAX_NAME + 1]; /* metadata.name */
	char resource_version[64];	/* metadata.resourceVersion, for shoalctl */
};

/*
 * Decode obj (an AuthorizationPolicy as the API server returns it) into
 * out. 0, or -EINVAL with err naming the object and field:
 * "AuthorizationPolicy shop/web-in: spec.from[1].serviceAccount: ...".
 * The rule is checked as the config file's are (policy_doc_check's rules).
 */
int policy_crd_decode(json_object *obj, struct policy_crd *out, char *err, size_t errlen);
void policy_crd_clear(struct policy_crd *c);

#endif
