// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The gRPC rules of the HTTP/2 kind (h2_grpc.h). */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "proxy/h2_grpc.h"

static int timeout_of(const char *v, uint64_t *ns)
{
	return grpc_timeout_parse(v, strlen(v), ns);
}

Test(h2_grpc, content_type)
{
	cr_assert(grpc_is_content_type("application/grpc", 16));
	cr_assert(grpc_is_content_type("application/grpc+proto", 22));
	cr_assert(grpc_is_content_type("Application/GRPC;charset=x", 26));
	cr_assert_not(grpc_is_content_type("application/grpc-web", 20));
	cr_assert_not(grpc_is_content_type("application/json", 16));
	cr_assert_not(grpc_is_content_type("application/grp", 15));
}

Test(h2_grpc, timeout_units)
{
	uint64_t ns = 0;

	cr_assert_eq(timeout_of("300m", &ns), 0);
	cr_assert_eq(ns, 300000000ull);
	cr_assert_eq(timeout_of("1H", &ns), 0);
	cr_assert_eq(ns, 3600ull * 1000000000);
	cr_assert_eq(timeout_of("2M", &ns), 0);
	cr_assert_eq(ns, 120ull * 1000000000);
	cr_assert_eq(timeout_of("5S", &ns), 0);
	cr_assert_eq(ns, 5000000000ull);
	cr_assert_eq(timeout_of("250u", &ns), 0);
	cr_assert_eq(ns, 250000ull);
	cr_assert_eq(timeout_of("99999999n", &ns), 0);
	cr_assert_eq(ns, 99999999ull);
	cr_assert_eq(timeout_of("0m", &ns), 0);
	cr_assert_eq(ns, 0);
	/* 99999999 hours do not fit in 64 bits of ns: saturated, "no hurry". */
	cr_assert_eq(timeout_of("99999999H", &ns), 0);
	cr_assert_eq(ns, UINT64_MAX);
}

Test(h2_grpc, timeout_malformed)
{
	uint64_t ns = 7;
	static const char *const bad[] = {"",		"m",   "300", "300x",
					  "123456789m", "-1m", "1 m", "3.5S"};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(timeout_of(bad[i], &ns), -EINVAL, "\"%s\"", bad[i]);
	cr_assert_eq(ns, 7, "a refused value leaves the result alone");
}

Test(h2_grpc, status)
{
	cr_assert_eq(grpc_status_parse("0", 1), 0);
	cr_assert_eq(grpc_status_parse("14", 2), 14);
	cr_assert_eq(grpc_status_parse("", 0), GRPC_STATUS_NONE);
	cr_assert_eq(grpc_status_parse("140", 3), GRPC_STATUS_NONE);
	cr_assert_eq(grpc_status_parse("1a", 2), GRPC_STATUS_NONE);
	/* Server trouble counts against the endpoint, the caller's answers do not. */
	for (int code = 0; code <= 16; code++) {
		bool want =
		    code == 2 || code == 4 || code == 8 || code == 13 || code == 14 || code == 15;

		cr_assert_eq(grpc_status_is_failure(code), want, "code %d", code);
	}
}

Test(h2_grpc, status_from_http)
{
	static const struct {
		int http, grpc;
	} map[] = {
	    {400, GRPC_STATUS_INTERNAL},
	    {401, GRPC_STATUS_UNAUTHENTICATED},
	    {403, GRPC_STATUS_PERMISSION_DENIED},
	    {404, GRPC_STATUS_UNIMPLEMENTED},
	    {429, GRPC_STATUS_UNAVAILABLE},
	    {502, GRPC_STATUS_UNAVAILABLE},
	    {503, GRPC_STATUS_UNAVAILABLE},
	    {504, GRPC_STATUS_UNAVAILABLE},
	    /* Any other status a gRPC client reads as UNKNOWN. */
	    {500, GRPC_STATUS_UNKNOWN},
	    {501, GRPC_STATUS_UNKNOWN},
	    {505, GRPC_STATUS_UNKNOWN},
	    {201, GRPC_STATUS_UNKNOWN},
	    {204, GRPC_STATUS_UNKNOWN},
	    {301, GRPC_STATUS_UNKNOWN},
	    {402, GRPC_STATUS_UNKNOWN},
	    {405, GRPC_STATUS_UNKNOWN},
	    {408, GRPC_STATUS_UNKNOWN},
	    {431, GRPC_STATUS_UNKNOWN},
	    {599, GRPC_STATUS_UNKNOWN},
	    /* 200 leaves it to the trailers; below 200 is no final answer. */
	    {200, GRPC_STATUS_NONE},
	    {100, GRPC_STATUS_NONE},
	    {103, GRPC_STATUS_NONE},
	    {0, GRPC_STATUS_NONE},
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		cr_assert_eq(grpc_status_from_http(map[i].http), map[i].grpc, "%d: %d, want %d",
			     map[i].http, grpc_status_from_http(map[i].http), map[i].grpc);
}
