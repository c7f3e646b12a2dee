// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * libcurl on demand: see curl_api.h for why. The library is never
 * unloaded: libcurl and OpenSSL keep process-wide state (curl_global_init,
 * atexit handlers, thread-locals) that does not survive a dlclose.
 */
#include "common/curl_api.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

struct curl_api curl_api;

/* What the one load of CURL_API_SONAME gave; read after pthread_once. */
static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int load_rc;
static char load_why[256];

static const struct {
	const char *name;
	size_t offset;
} curl_symbols[] = {
    {"curl_global_init", offsetof(struct curl_api, global_init)},
    {"curl_easy_init", offsetof(struct curl_api, easy_init)},
    {"curl_easy_setopt", offsetof(struct curl_api, easy_setopt)},
    {"curl_easy_perform", offsetof(struct curl_api, easy_perform)},
    {"curl_easy_getinfo", offsetof(struct curl_api, easy_getinfo)},
    {"curl_easy_reset", offsetof(struct curl_api, easy_reset)},
    {"curl_easy_cleanup", offsetof(struct curl_api, easy_cleanup)},
    {"curl_easy_strerror", offsetof(struct curl_api, easy_strerror)},
    {"curl_easy_escape", offsetof(struct curl_api, easy_escape)},
    {"curl_free", offsetof(struct curl_api, free)},
    {"curl_slist_append", offsetof(struct curl_api, slist_append)},
    {"curl_slist_free_all", offsetof(struct curl_api, slist_free_all)},
};
_Static_assert(sizeof(curl_symbols) / sizeof(curl_symbols[0]) * sizeof(void (*)(void)) ==
		   sizeof(struct curl_api),
	       "every function of struct curl_api has a symbol to look up");

/*
 * dlopen @soname and look up every function into @api; on failure @api
 * is left untouched and @why holds dlerror()'s text, which names the
 * file or the missing symbol.
 */
static int open_library(struct curl_api *api, const char *soname, char *why, size_t whylen)
{
	struct curl_api found;
	void *lib, *fn;

	/* RTLD_NOW: an unresolvable libcurl fails here, not in a watcher thread. */
	lib = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		snprintf(why, whylen, "%s", dlerror());
		return -ENOENT;
	}
	for (size_t i = 0; i < sizeof(curl_symbols) / sizeof(curl_symbols[0]); i++) {
		fn = dlsym(lib, curl_symbols[i].name);
		if (!fn) {
			snprintf(why, whylen, "%s", dlerror());
			dlclose(lib);
			return -ENOENT;
		}
		/* POSIX: dlsym's void * holds a function pointer of the same size. */
		memcpy((char *)&found + curl_symbols[i].offset, &fn, sizeof(fn));
	}
	*api = found;
	return 0;
}

static void explain(int rc, const char *soname, const char *user, const char *why, char *err,
		    size_t errlen)
{
	if (!err || !errlen)
		return;
	if (rc == -ENOENT)
		snprintf(err, errlen, "cannot load %s (needed by %s; Debian package libcurl4): %s",
			 soname, user, why);
	else
		snprintf(err, errlen, "cannot initialise libcurl (needed by %s): %s", user, why);
}

static void load(void)
{
	CURLcode rc;

	load_rc = open_library(&curl_api, CURL_API_SONAME, load_why, sizeof(load_why));
	if (load_rc)
		return;
	/* Once per process, before any handle exists; the features share it. */
	rc = curl_api.global_init(CURL_GLOBAL_DEFAULT);
	if (rc != CURLE_OK) {
		snprintf(load_why, sizeof(load_why), "%s", curl_api.easy_strerror(rc));
		load_rc = -EIO;
	}
}

int curl_api_load(const char *user, char *err, size_t errlen)
{
	pthread_once(&load_once, load);
	if (load_rc)
		explain(load_rc, CURL_API_SONAME, user, load_why, err, errlen);
	return load_rc;
}

int curl_api_open(struct curl_api *api, const char *soname, const char *user, char *err,
		  size_t errlen)
{
	char why[256];
	int rc = open_library(api, soname, why, sizeof(why));

	if (rc)
		explain(rc, soname, user, why, err, errlen);
	return rc;
}
