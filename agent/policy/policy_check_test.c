// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "policy/policy_check.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

static struct policy_check c;
static char err[256];

static int parse(const char *q)
{
	err[0] = '\0';
	return policy_check_parse(q, "cluster.local", &c, err, sizeof(err));
}

Test(policy_check, the_three_caller_forms)
{
	cr_assert_eq(parse("src=default/client&dst=default/api:80"), 0, "%s", err);
	cr_assert(c.authenticated);
	cr_assert_str_eq(c.id, "spiffe://cluster.local/ns/default/sa/client");
	cr_assert_str_eq(c.ns, "default");
	cr_assert_str_eq(c.dst_ns, "default");
	cr_assert_str_eq(c.dst_service, "api");
	cr_assert_eq(c.port, 80);
	cr_assert_not(c.request);

	cr_assert_eq(parse("src=spiffe%3A%2F%2Fpartner.org%2Fns%2Fweb%2Fsa%2Ffront&dst=shop/cart"
			   "&port=8080&method=GET&path=%2Fitems%2F3"),
		     0, "%s", err);
	cr_assert_str_eq(c.id, "spiffe://partner.org/ns/web/sa/front");
	cr_assert_str_eq(c.trust_domain, "partner.org");
	cr_assert_str_eq(c.ns, "web");
	cr_assert_str_eq(c.sa, "front");
	cr_assert_eq(c.port, 8080);
	cr_assert(c.request);
	cr_assert_str_eq(c.method, "GET");
	cr_assert_str_eq(c.path, "/items/3");

	/* Another shape of SPIFFE ID: matched whole only, no namespace. */
	cr_assert_eq(parse("src=spiffe://x.org/workload/a&dst=shop/cart:1"), 0, "%s", err);
	cr_assert_str_eq(c.ns, "");

	cr_assert_eq(parse("src=unauthenticated&dst=shop/cart:1"), 0, "%s", err);
	cr_assert_not(c.authenticated);
	struct policy_caller pc;

	policy_check_caller(&c, &pc);
	cr_assert_not(pc.authenticated);
}

Test(policy_check, strict_parameters)
{
	static const struct {
		const char *q, *why;
	} bad[] = {
	    {"dst=default/api:80", "required"},
	    {"src=default/client", "required"},
	    {"src=default/client&dst=default/api&color=red", "unknown parameter \"color\""},
	    {"src=a/b&src=a/b&dst=default/api", "src: given twice"},
	    {"src=&dst=default/api", "src: empty"},
	    {"src=Default/client&dst=default/api", "src:"},
	    {"src=nobody&dst=default/api", "src:"},
	    {"src=spiffe://Bad/x&dst=default/api", "src: trust domain"},
	    {"src=a/b&dst=default", "dst:"},
	    {"src=a/b&dst=default/api:0", "dst:"},
	    {"src=a/b&dst=default/api:65536", "dst:"},
	    {"src=a/b&dst=default/api:80&port=80", "port: given in dst"},
	    {"src=a/b&dst=default/api&port=8x", "port:"},
	    {"src=a/b&dst=default/api&method=GET", "go together"},
	    {"src=a/b&dst=default/api&method=G%20T&path=/", "method:"},
	    {"src=a/b&dst=default/api&method=GET&path=items", "path:"},
	    {"src=a/b&dst=default/api&method=GET&path=/a%3Fb", "path:"},
	    {"src=a/b&dst=default/api&method=GET&path=/a%0a", "path:"},
	    {"src=a/b&dst=default/api&method=GET&path=/a%2", "path:"},
	    {"src=a/b&dst=default/api&method=GET&path=/a%zz", "path:"},
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(parse(bad[i].q), -EINVAL, "%s: accepted", bad[i].q);
		cr_assert(strstr(err, bad[i].why), "%s: \"%s\" does not say \"%s\"", bad[i].q, err,
			  bad[i].why);
	}
	char big[POLICY_CHECK_MAX_QUERY + 64];

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "src=a/b&dst=x/y&path=/", 22);
	cr_assert_eq(parse(big), -EINVAL);
	cr_assert(strstr(err, "longer"), "%s", err);
}
