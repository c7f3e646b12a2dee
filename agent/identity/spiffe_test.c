// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* SPIFFE IDs of the Kubernetes shape: what parses, what does not and why. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "identity/spiffe.h"

Test(identity_spiffe, parses_and_formats_back)
{
	static const char *const good[] = {
	    "spiffe://cluster.local/ns/default/sa/web",
	    "spiffe://example.org/ns/shoal-system/sa/shoald", "spiffe://td_1-x.example/ns/a/sa/b",
	    "spiffe://cluster.local/ns/prod-7/sa/my.dotted.sa", /* a DNS subdomain */
	};
	struct spiffe_id id;
	char buf[SPIFFE_ID_STR_MAX];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		cr_assert_eq(spiffe_id_parse(good[i], &id), 0, "%s", good[i]);
		cr_assert_eq(spiffe_id_format(&id, buf, sizeof(buf)), 0);
		cr_assert_str_eq(buf, good[i]);
	}
	cr_assert_eq(spiffe_id_parse("spiffe://cluster.local/ns/default/sa/web", &id), 0);
	cr_assert_str_eq(id.trust_domain, "cluster.local");
	cr_assert_str_eq(id.ns, "default");
	cr_assert_str_eq(id.sa, "web");
}

static void refused(const char *uri, int want_err, const char *want_why)
{
	struct spiffe_id id;
	const char *why = NULL;
	int err;

	memset(&id, 0x55, sizeof(id));
	err = spiffe_id_parse_why(uri, &id, &why);
	cr_assert_eq(err, want_err, "%s: got %d (%s), want %d", uri, err, why ? why : "-",
		     want_err);
	cr_assert_not_null(why, "%s: no reason", uri);
	cr_assert(strstr(why, want_why), "%s: reason \"%s\" lacks \"%s\"", uri, why, want_why);
	cr_assert_eq(id.trust_domain[0], 0, "out zeroed on failure");
	cr_assert_eq(spiffe_id_parse(uri, &id), want_err);
}

Test(identity_spiffe, malformed)
{
	refused("", -EINVAL, "empty");
	refused("https://cluster.local/ns/a/sa/b", -EINVAL, "scheme");
	refused("SPIFFE://cluster.local/ns/a/sa/b", -EINVAL, "lowercase");
	refused("Spiffe://cluster.local/ns/a/sa/b", -EINVAL, "lowercase");
	refused("spiffe:/cluster.local/ns/a/sa/b", -EINVAL, "scheme");
	refused("spiffe://cluster.local", -EINVAL, "no path");
	refused("spiffe://cluster.local/", -EINVAL, "/ns/");
	refused("spiffe:///ns/a/sa/b", -EINVAL, "empty trust domain");
	refused("spiffe://Cluster.local/ns/a/sa/b", -EINVAL, "uppercase");
	refused("spiffe://cluster.local:8443/ns/a/sa/b", -EINVAL, "port");
	refused("spiffe://u@cluster.local/ns/a/sa/b", -EINVAL, "userinfo");
	refused("spiffe://clu%73ter.local/ns/a/sa/b", -EINVAL, "percent");
	/* empty segments */
	refused("spiffe://cluster.local/ns//sa/b", -EINVAL, "empty segment");
	refused("spiffe://cluster.local/ns/a/sa/", -EINVAL, "empty segment");
	refused("spiffe://cluster.local//ns/a/sa/b", -EINVAL, "/ns/");
	refused("spiffe://cluster.local/ns/a//sa/b", -EINVAL, "/sa/");
	refused("spiffe://cluster.local/ns/a/sa/b/", -EINVAL, "after the service account");
	/* dots */
	refused("spiffe://cluster.local/ns/./sa/b", -EINVAL, "\".\" segment");
	refused("spiffe://cluster.local/ns/../sa/b", -EINVAL, "\"..\" segment");
	refused("spiffe://cluster.local/ns/a/sa/..", -EINVAL, "\"..\" segment");
	refused("spiffe://cluster.local/ns/a/sa/.", -EINVAL, "\".\" segment");
	refused("spiffe://cluster.local/ns/a.b/sa/c", -EINVAL, "DNS label");
	refused("spiffe://cluster.local/ns/a/sa/b..c", -EINVAL, "empty label");
	refused("spiffe://cluster.local/ns/a/sa/.b", -EINVAL, "empty label");
	/* percent-encoding in the path */
	refused("spiffe://cluster.local/ns/a%2Fb/sa/c", -EINVAL, "percent");
	refused("spiffe://cluster.local/ns/a/sa/%41", -EINVAL, "percent");
	/* other shapes */
	refused("spiffe://cluster.local/ns/a/sa/b?x=1", -EINVAL, "query");
	refused("spiffe://cluster.local/ns/a/sa/b#f", -EINVAL, "fragment");
	refused("spiffe://cluster.local/sa/b/ns/a", -EINVAL, "/ns/");
	refused("spiffe://cluster.local/ns/a/sa/b/extra", -EINVAL, "after the service account");
	refused("spiffe://cluster.local/ns/A/sa/b", -EINVAL, "[a-z0-9-]");
	refused("spiffe://cluster.local/ns/a/sa/B", -EINVAL, "[a-z0-9-]");
	refused("spiffe://cluster.local/ns/-a/sa/b", -EINVAL, "'-'");
	refused("spiffe://cluster.local/ns/a/sa/b_c", -EINVAL, "[a-z0-9-]");
}

Test(identity_spiffe, too_long)
{
	char uri[4096], part[400];

	memset(part, 'a', sizeof(part));
	/* trust domain of 256 */
	snprintf(uri, sizeof(uri), "spiffe://%.256s/ns/a/sa/b", part);
	refused(uri, -ENAMETOOLONG, "trust domain longer");
	snprintf(uri, sizeof(uri), "spiffe://%.255s/ns/a/sa/b", part);
	struct spiffe_id id;
	cr_assert_eq(spiffe_id_parse(uri, &id), 0, "255 is allowed");
	/* namespace of 64 */
	snprintf(uri, sizeof(uri), "spiffe://td/ns/%.64s/sa/b", part);
	refused(uri, -ENAMETOOLONG, "namespace longer");
	snprintf(uri, sizeof(uri), "spiffe://td/ns/%.63s/sa/b", part);
	cr_assert_eq(spiffe_id_parse(uri, &id), 0, "63 is allowed");
	/* service account of 254 */
	snprintf(uri, sizeof(uri), "spiffe://td/ns/a/sa/%.254s", part);
	refused(uri, -ENAMETOOLONG, "service account longer");
	/* the whole URI over 2048 */
	memset(uri, 'a', sizeof(uri));
	memcpy(uri, "spiffe://td/ns/a/sa/", 20);
	uri[2049] = '\0';
	refused(uri, -ENAMETOOLONG, "2048");
}

Test(identity_spiffe, make_and_format_limits)
{
	struct spiffe_id id, back;
	char buf[SPIFFE_ID_STR_MAX];

	cr_assert_eq(spiffe_id_make(&id, "cluster.local", "default", "web"), 0);
	cr_assert_eq(spiffe_id_format(&id, buf, sizeof(buf)), 0);
	cr_assert_eq(spiffe_id_parse(buf, &back), 0);
	cr_assert(spiffe_id_equal(&id, &back));
	cr_assert_eq(spiffe_id_format(&id, buf, 10), -ENOSPC);
	cr_assert_str_eq(buf, "", "no partial output");
	cr_assert_eq(spiffe_id_make(&id, "cluster.local", "de/fault", "web"), -EINVAL);
	cr_assert_eq(spiffe_id_make(&id, "Cluster", "default", "web"), -EINVAL);
	/* a struct whose parts would not parse back is refused */
	memset(&id, 0, sizeof(id));
	strcpy(id.trust_domain, "td");
	strcpy(id.ns, "a/sa/b");
	strcpy(id.sa, "c");
	cr_assert_eq(spiffe_id_format(&id, buf, sizeof(buf)), -EINVAL);
	cr_assert(spiffe_trust_domain_valid("cluster.local"));
	cr_assert_not(spiffe_trust_domain_valid(""));
	cr_assert_not(spiffe_trust_domain_valid("a/b"));
	cr_assert_not(spiffe_trust_domain_valid(NULL));
}
