// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * libcurl on demand: not mapped until asked for, loaded once however many
 * threads ask, and failures that say what is missing and who needed it.
 * Criterion runs each test in its own process, so each starts unloaded.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "common/curl_api.h"

/* Whether a file named like @name is mapped into this process. */
static bool mapped(const char *name)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	bool found = false;

	cr_assert_not_null(f);
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, name) != NULL;
	fclose(f);
	return found;
}

Test(curl_api, not_mapped_until_loaded)
{
	char err[512] = "";
	char *escaped;
	CURL *c;

	/* The agent and its tests link no libcurl: this is what keeps idle RSS low. */
	cr_assert_not(mapped("libcurl"), "libcurl is mapped before anyone asked for it");
	cr_assert_null(curl_api.easy_init);

	cr_assert_eq(curl_api_load("the unit test", err, sizeof(err)), 0, "%s", err);
	cr_assert(mapped("libcurl"));
	c = curl_easy_init();
	cr_assert_not_null(c);
	cr_expect_eq(curl_easy_setopt(c, CURLOPT_URL, "http://127.0.0.1:1/"), CURLE_OK);
	escaped = curl_easy_escape(c, "a b/c", 0);
	cr_expect_str_eq(escaped, "a%20b%2Fc");
	curl_free(escaped);
	cr_expect_str_eq(curl_easy_strerror(CURLE_OK), "No error");
	curl_easy_cleanup(c);
}

static void *load_from_thread(void *arg)
{
	char err[512];

	*(int *)arg = curl_api_load("a thread of the unit test", err, sizeof(err));
	return NULL;
}

Test(curl_api, loads_once_from_many_threads)
{
	pthread_t th[8];
	int rc[8];
	struct curl_api first;

	for (int i = 0; i < 8; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, load_from_thread, &rc[i]), 0);
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		cr_expect_eq(rc[i], 0);
	}
	first = curl_api;
	cr_assert_eq(curl_api_load("the unit test", NULL, 0), 0);
	cr_expect_eq(memcmp(&first, &curl_api, sizeof(first)), 0);
}

Test(curl_api, missing_library_is_named_with_its_user)
{
	struct curl_api api = {0}, untouched = {0};
	char err[512] = "";

	cr_assert_eq(
	    curl_api_open(&api, "libshoal-no-such-curl.so.4", "the unit test", err, sizeof(err)),
	    -ENOENT);
	cr_expect_not_null(strstr(err, "cannot load libshoal-no-such-curl.so.4"), "%s", err);
	cr_expect_not_null(strstr(err, "needed by the unit test"), "%s", err);
	cr_expect_not_null(strstr(err, "libcurl4"), "the package to install: %s", err);
	cr_expect_not_null(strstr(err, "No such file"), "dlerror's reason: %s", err);
	cr_expect_eq(memcmp(&api, &untouched, sizeof(api)), 0);
	cr_expect_not(mapped("libcurl"));
}

Test(curl_api, library_without_curl_names_the_missing_function)
{
	struct curl_api api = {0};
	char err[512] = "";

	/* A library that loads but is not libcurl. */
	cr_assert_eq(curl_api_open(&api, "libc.so.6", "the unit test", err, sizeof(err)), -ENOENT);
	cr_expect_not_null(strstr(err, "cannot load libc.so.6"), "%s", err);
	cr_expect_not_null(strstr(err, "curl_global_init"), "%s", err);
	cr_expect_null(api.global_init);
}
