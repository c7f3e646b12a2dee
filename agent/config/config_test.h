/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What the config parser's unit tests share: the fixture, parse() into
 * cfg and assert_refused(). Each test file that includes it is its own
 * executable (config_test.c: the file, YAML, node and proxy sections;
 * config_services_test.c: services, routes, resilience).
 */
#ifndef SHOAL_CONFIG_TEST_H
#define SHOAL_CONFIG_TEST_H

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/addr.h"
#include "config/config.h"

/* Each test parses into cfg and builds text in buf; the fixture frees both. */
static struct config *cfg;
static char err[512];
static char *buf;
static char tmp_path[64];

static void setup(void)
{
	cfg = NULL;
	buf = NULL;
	err[0] = '\0';
	tmp_path[0] = '\0';
}

static void teardown(void)
{
	config_free(cfg);
	cfg = NULL;
	free(buf);
	buf = NULL;
	if (tmp_path[0])
		unlink(tmp_path);
}

TestSuite(config, .init = setup, .fini = teardown);

/* Parses into cfg, freeing the config an earlier parse of the test left there. */
static inline int parse_len(const char *text, size_t len)
{
	config_free(cfg);
	cfg = NULL;
	return config_parse("t.yaml", text, len, &cfg, err, sizeof(err));
}

static inline int parse(const char *text)
{
	return parse_len(text, strlen(text));
}

/* A node section, so that a test's lines start at 3. */
#define NODE "node:\n  address_v4: 10.0.1.1\n"

/* text must be refused with -EINVAL, no config, and a message starting with want. */
#define assert_refused(text, want)                                                                 \
	do {                                                                                       \
		int ret_ = parse(text);                                                            \
		cr_assert_eq(ret_, -EINVAL, "ret %d, err \"%s\"", ret_, err);                      \
		cr_assert_null(cfg);                                                               \
		cr_assert(!strncmp(err, want, strlen(want)), "got \"%s\"\nwant \"%s...\"", err,    \
			  want);                                                                   \
	} while (0)

static inline struct shoal_addr ip(const char *text)
{
	struct shoal_addr a;

	cr_assert_eq(addr_parse(text, &a), 0, "bad test address %s", text);
	return a;
}

#endif
