/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Who is asking, and may they have what they ask for (docs/identity.md,
 * "Node authorization"): the caller's bound service-account token goes to
 * the API server's TokenReview, which names its service account, pod and
 * node; then the node's pods (a list with fieldSelector spec.nodeName)
 * say whether the caller's pod is current there and whether a pod of the
 * requested service account runs there. Blocking HTTPS calls (libcurl),
 * one easy handle per call: safe from any thread once curl_global_init
 * has run.
 */
#ifndef SHOAL_IDENTITY_AUTHZ_H
#define SHOAL_IDENTITY_AUTHZ_H

#include <stddef.h>

#include "identity/spiffe.h"

/* Kubernetes' own limits: names are DNS subdomains (253), UIDs 36 bytes. */
#define AUTHZ_NAME_MAX 254
/* A bearer token: bound tokens are JWTs of about 1 KiB; room for large claims. */
#define AUTHZ_TOKEN_MAX 8192
/*
 * An API response: a node's pod list is ~110 pods of a few KiB each (the
 * kubelet's default max-pods); 16 MiB also holds 250 pods with big specs.
 */
#define AUTHZ_BODY_MAX (16u << 20)

struct authz_api {
	const char *url;	/* https://host:port of the API server */
	const char *ca_file;	/* its CA */
	const char *token_file; /* our own token, re-read on every call (projected tokens rotate) */
	const char *audience;	/* spec.audiences of the TokenReview, or NULL (the API server's) */
	long timeout_ms;
};

/* The caller, as TokenReview names it. */
struct authz_caller {
	char ns[SPIFFE_NS_MAX + 1];
	char sa[SPIFFE_SA_MAX + 1];
	char pod[AUTHZ_NAME_MAX];     /* user.extra authentication.kubernetes.io/pod-name */
	char pod_uid[AUTHZ_NAME_MAX]; /* .../pod-uid */
	char node[AUTHZ_NAME_MAX];    /* .../node-name */
};

/*
 * TokenReview of token. 0 and *out; -EACCES (the token does not
 * authenticate, or is not a service account's token bound to a pod on a
 * node) or -EIO (the API server could not answer), with why.
 */
int authz_token_review(const struct authz_api *api, const char *token, struct authz_caller *out,
		       char *why, size_t why_len);

/*
 * On caller->node: is the caller's pod there (name, UID, not finished),
 * and does a running pod of want's namespace and service account run
 * there? 0, -EPERM (no) or -EIO, with why.
 */
int authz_node_pods(const struct authz_api *api, const struct authz_caller *caller,
		    const struct spiffe_id *want, char *why, size_t why_len);

#endif
