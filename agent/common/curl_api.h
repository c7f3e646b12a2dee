/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * libcurl, loaded with dlopen when a feature that needs it starts (the
 * Kubernetes discovery source, the OTLP exporter). Linking it would make
 * every shoald map libcurl and what it pulls in (OpenSSL, GnuTLS via
 * libldap, krb5, p11-kit...), whose pages the loader and the libraries'
 * constructors touch: idle RSS 9.6 MiB instead of 4.0 (docs/discovery.md).
 *
 * A file that includes this header calls curl_easy_*() as usual: the
 * names below map onto the loaded function pointers. Every such call
 * must come after a successful curl_api_load().
 */
#ifndef SHOAL_CURL_API_H
#define SHOAL_CURL_API_H

#include <stddef.h>

/*
 * curl.h's type-checking wrappers (typecheck-gcc.h) are function-like
 * macros named like the functions; they would leave no room for the
 * mapping at the end of this file.
 */
#define CURL_DISABLE_TYPECHECK
#include <curl/curl.h>

/* The soname of libcurl's ABI 4 (Debian package libcurl4). */
#define CURL_API_SONAME "libcurl.so.4"

/* The libcurl functions shoal calls, with curl.h's own prototypes. */
struct curl_api {
	__typeof__(curl_global_init) *global_init;
	__typeof__(curl_easy_init) *easy_init;
	__typeof__(curl_easy_setopt) *easy_setopt;
	__typeof__(curl_easy_perform) *easy_perform;
	__typeof__(curl_easy_getinfo) *easy_getinfo;
	__typeof__(curl_easy_reset) *easy_reset;
	__typeof__(curl_easy_cleanup) *easy_cleanup;
	__typeof__(curl_easy_strerror) *easy_strerror;
	__typeof__(curl_easy_escape) *easy_escape;
	__typeof__(curl_free) *free;
	__typeof__(curl_slist_append) *slist_append;
	__typeof__(curl_slist_free_all) *slist_free_all;
};

/* Filled by the first curl_api_load(); all NULL until then. */
extern struct curl_api curl_api;

/*
 * Load libcurl and run curl_global_init, once per process however many
 * threads and features ask. @user names the feature for the message,
 * e.g. "the kubernetes discovery source". Returns 0, or -ENOENT (the
 * library or one of its functions is missing) or -EIO (libcurl's global
 * init failed) with a sentence in @err saying which, for whom and why.
 * A failure is final: later calls return it again.
 */
int curl_api_load(const char *user, char *err, size_t errlen);

/*
 * dlopen @soname and fill @api from it, without curl_global_init and
 * without the once: the unit test's way to see the failure messages.
 * Same returns and messages as curl_api_load.
 */
int curl_api_open(struct curl_api *api, const char *soname, const char *user, char *err,
		  size_t errlen);

/*
 * The mapping. curl_global_init is left out: curl_api_load calls it,
 * once, and nothing else should.
 */
#define curl_easy_init curl_api.easy_init
#define curl_easy_perform curl_api.easy_perform
#define curl_easy_reset curl_api.easy_reset
#define curl_easy_cleanup curl_api.easy_cleanup
#define curl_easy_strerror curl_api.easy_strerror
#define curl_easy_escape curl_api.easy_escape
#define curl_free curl_api.free
#define curl_slist_append curl_api.slist_append
#define curl_slist_free_all curl_api.slist_free_all
/*
 * Without the type checker curl.h still wraps these two in macros, to
 * insist on exactly three arguments; the mapping keeps that.
 */
#undef curl_easy_setopt
#undef curl_easy_getinfo
#define curl_easy_setopt(handle, option, param) curl_api.easy_setopt(handle, option, param)
#define curl_easy_getinfo(handle, info, arg) curl_api.easy_getinfo(handle, info, arg)

#endif
