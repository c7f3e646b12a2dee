/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * "What would the policy decide?" (shoalctl policy check, the admin
 * endpoint's /debug/policy/check; docs/policy.md, "Observability"): the
 * query's parameters parsed strictly into a caller, a destination and an
 * optional request. Pure: no I/O.
 *
 * Parameters (each at most once, percent-encoded, none other):
 *   src     unauthenticated, ns/sa (of the mesh's trust domain) or a SPIFFE ID
 *   dst     ns/service or ns/service:port
 *   port    1..65535 (instead of dst's :port)
 *   method, path   the request, both or neither (none: a connection)
 */
#ifndef SHOAL_POLICY_POLICY_CHECK_H
#define SHOAL_POLICY_POLICY_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/policy.h"

/* A query longer than this is refused: a SPIFFE ID and a path, encoded. */
#define POLICY_CHECK_MAX_QUERY 4096

struct policy_check {
	bool authenticated;
	char id[POLICY_MAX_ID + 1];
	char trust_domain[POLICY_MAX_ID + 1];
	char ns[POLICY_MAX_LABEL + 1], sa[POLICY_MAX_LABEL + 1]; /* "": not of that form */
	char dst_ns[POLICY_MAX_LABEL + 1], dst_service[POLICY_MAX_LABEL + 1];
	uint16_t port; /* 0: not given */
	bool request;
	char method[POLICY_MAX_METHOD + 1];
	char path[POLICY_MAX_PATH + 1];
};

/*
 * Parse query (without '?') for a mesh of trust_domain into out. 0, or
 * -EINVAL with err naming the parameter and what is wrong with it.
 */
int policy_check_parse(const char *query, const char *trust_domain, struct policy_check *out,
		       char *err, size_t errlen);

/* The caller of c, pointing into c. */
void policy_check_caller(const struct policy_check *c, struct policy_caller *out);

#endif
