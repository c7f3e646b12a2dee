/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A workload's identity: a SPIFFE ID of the Kubernetes shape
 *
 *   spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>
 *
 * carried as the one URI SAN of an X.509 certificate (docs/identity.md).
 * Parsing is strict: what it accepts, spiffe_id_format prints back byte
 * for byte, so two parties that compare IDs as strings or as structs agree.
 * No allocation, no locking, no I/O.
 */
#ifndef SHOAL_IDENTITY_SPIFFE_H
#define SHOAL_IDENTITY_SPIFFE_H

#include <stdbool.h>
#include <stddef.h>

#define SPIFFE_SCHEME "spiffe://"
/* The SPIFFE ID spec: a trust domain name is at most 255 bytes. */
#define SPIFFE_TD_MAX 255
/* A namespace is a DNS label (63); a service account a DNS subdomain (253). */
#define SPIFFE_NS_MAX 63
#define SPIFFE_SA_MAX 253
/* The SPIFFE ID spec: an ID (the whole URI) is at most 2048 bytes. */
#define SPIFFE_URI_MAX 2048
/* The longest ID of our shape, with its NUL: scheme, td, /ns/, ns, /sa/, sa. */
#define SPIFFE_ID_STR_MAX                                                                          \
	(sizeof(SPIFFE_SCHEME) - 1 + SPIFFE_TD_MAX + 4 + SPIFFE_NS_MAX + 4 + SPIFFE_SA_MAX + 1)

struct spiffe_id {
	char trust_domain[SPIFFE_TD_MAX + 1];
	char ns[SPIFFE_NS_MAX + 1];
	char sa[SPIFFE_SA_MAX + 1];
};

/*
 * Parse uri (NUL-terminated) into out. 0, or -EINVAL (malformed: wrong
 * scheme, bad trust domain, not /ns/<ns>/sa/<sa>, empty, "." or ".."
 * segments, percent-encoding, query or fragment, characters outside
 * Kubernetes names) or -ENAMETOOLONG (a part or the URI over its limit).
 * out is zeroed on failure.
 */
int spiffe_id_parse(const char *uri, struct spiffe_id *out);
/* The same, and *why (if why) points at a static string naming the cause. */
int spiffe_id_parse_why(const char *uri, struct spiffe_id *out, const char **why);
/*
 * Print id into buf (n bytes, NUL-terminated). 0, -EINVAL if a part of id
 * would not parse back, or -ENOSPC if buf is too small (SPIFFE_ID_STR_MAX
 * always suffices).
 */
int spiffe_id_format(const struct spiffe_id *id, char *buf, size_t n);
/* Fill id from its parts, checked as spiffe_id_parse checks them: 0 or -EINVAL/-ENAMETOOLONG. */
int spiffe_id_make(struct spiffe_id *id, const char *trust_domain, const char *ns, const char *sa);
/* A trust domain name as the SPIFFE spec allows it: [a-z0-9._-], 1..255. */
bool spiffe_trust_domain_valid(const char *td);
bool spiffe_id_equal(const struct spiffe_id *a, const struct spiffe_id *b);

#endif
