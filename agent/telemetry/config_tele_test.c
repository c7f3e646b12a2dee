// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The tracing: and admin: config sections (docs/config.md). */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "config/config.h"
#include "recording/trace.h"
#include "telemetry/admin.h"
#include "telemetry/otlp.h"

static struct config *cfg;
static char err[512];

static void teardown(void)
{
	config_free(cfg);
	cfg = NULL;
}

TestSuite(config_tele, .fini = teardown);

#define NODE "node: {address_v4: 10.0.0.1}\n"

static int parse(const char *text)
{
	err[0] = '\0';
	return config_parse("t.yaml", text, strlen(text), &cfg, err, sizeof(err));
}

Test(config_tele, defaults_are_the_libraries_own)
{
	cr_assert_eq(parse(NODE), 0, "%s", err);
	cr_assert_not(cfg->tracing.enabled);
	cr_assert_str_eq(cfg->tracing.collector_url, CONFIG_DEFAULT_TRACE_URL);
	cr_assert_float_eq(cfg->tracing.sample_rate, 0.01, 1e-9);
	cr_assert_eq(cfg->tracing.span_kind, TRACE_KIND_CLIENT);
	cr_assert_str_eq(cfg->tracing.service_name, "shoal");
	cr_assert_eq(cfg->tracing.ring_size, CONFIG_DEFAULT_TRACE_RING);
	cr_assert_eq(cfg->tracing.batch_size, CONFIG_DEFAULT_TRACE_BATCH);
	cr_assert_eq(cfg->tracing.batch_delay_ms, CONFIG_DEFAULT_TRACE_BATCH_DELAY_MS);
	cr_assert_eq(cfg->tracing.timeout_ms, CONFIG_DEFAULT_TRACE_TIMEOUT_MS);
	cr_assert_str_eq(cfg->admin.listen, CONFIG_DEFAULT_ADMIN_LISTEN);
}

Test(config_tele, every_field)
{
	cr_assert_eq(parse(NODE "tracing:\n"
				"  enabled: true\n"
				"  collector_url: https://otel.example:4318/v1/traces\n"
				"  sample_rate: 0.25\n"
				"  span_kind: server\n"
				"  service_name: mesh\n"
				"  ring_size: 64\n"
				"  batch_size: 100\n"
				"  batch_delay_ms: 200\n"
				"  timeout_ms: 300\n"
				"admin: {listen: \"[::1]:9901\"}\n"),
		     0, "%s", err);
	cr_assert(cfg->tracing.enabled);
	cr_assert_str_eq(cfg->tracing.collector_url, "https://otel.example:4318/v1/traces");
	cr_assert_float_eq(cfg->tracing.sample_rate, 0.25, 1e-9);
	cr_assert_eq(cfg->tracing.span_kind, TRACE_KIND_SERVER);
	cr_assert_str_eq(cfg->tracing.service_name, "mesh");
	cr_assert_eq(cfg->tracing.ring_size, 64);
	cr_assert_eq(cfg->tracing.batch_size, 100);
	cr_assert_eq(cfg->tracing.batch_delay_ms, 200);
	cr_assert_eq(cfg->tracing.timeout_ms, 300);
	cr_assert_str_eq(cfg->admin.listen, "[::1]:9901");
	config_free(cfg);
	cr_assert_eq(parse(NODE "admin: {listen: \"off\"}\n"), 0, "%s", err);
	cr_assert_str_eq(cfg->admin.listen, "off");
}

/* Each bad value is refused with its file:line and field path. */
Test(config_tele, bad_values_name_line_and_field)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
	    {NODE "tracing:\n  sample_rate: 1.5\n",
	     "t.yaml:3: tracing.sample_rate: must be a number from 0.0 to 1.0, got \"1.5\""},
	    {NODE "tracing:\n  sample_rate: half\n",
	     "t.yaml:3: tracing.sample_rate: must be a number from 0.0 to 1.0, got \"half\""},
	    {NODE "tracing:\n  collector_url: ftp://x/\n",
	     "t.yaml:3: tracing.collector_url: must start with http:// or https://"},
	    {NODE "tracing:\n  span_kind: internal\n",
	     "t.yaml:3: tracing.span_kind: must be client or server, got \"internal\""},
	    {NODE "tracing:\n  enabled: true\n  ring_size: 100\n",
	     "t.yaml:4: tracing.ring_size: must be a power of two, got 100"},
	    {NODE "tracing:\n  ring_size: 4\n", "t.yaml:3: tracing.ring_size:"},
	    {NODE "tracing:\n  batch_size: 0\n", "t.yaml:3: tracing.batch_size:"},
	    {NODE "tracing:\n  service_name: \"\"\n",
	     "t.yaml:3: tracing.service_name: must not be empty"},
	    {NODE "tracing:\n  bogus: 1\n", "t.yaml:3: tracing"},
	    {NODE "admin:\n  listen: localhost\n",
	     "t.yaml:3: admin.listen: must be ADDR:PORT, [ADDR]:PORT or off, got \"localhost\""},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_assert_eq(parse(cases[i].text), -EINVAL, "case %zu parsed", i);
		cr_assert_null(cfg);
		cr_assert(!strncmp(err, cases[i].want, strlen(cases[i].want)),
			  "case %zu: got \"%s\", want \"%s...\"", i, err, cases[i].want);
	}
}
