// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * TokenReview and the node's pods (authz.h), over libcurl and json-c.
 * Each call lists the node's pods afresh rather than keeping a watch:
 * a request comes once per service account per half lifetime from each
 * node, and a fresh list can never grant from a stale view of a pod
 * that is gone.
 */
#include <curl/curl.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authz.h"

#define EXTRA_POD_NAME "authentication.kubernetes.io/pod-name"
#define EXTRA_POD_UID "authentication.kubernetes.io/pod-uid"
#define EXTRA_NODE_NAME "authentication.kubernetes.io/node-name"
#define SA_PREFIX "system:serviceaccount:"

static int say(char *why, size_t why_len, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int say(char *why, size_t why_len, int err, const char *fmt, ...)
{
	va_list ap;

	if (why && why_len) {
		va_start(ap, fmt);
		vsnprintf(why, why_len, fmt, ap);
		va_end(ap);
	}
	return err;
}

struct body {
	char *data;
	size_t len;
	bool over;
};

static size_t body_write(char *p, size_t size, size_t n, void *arg)
{
	struct body *b = arg;
	size_t add = size * n;
	char *d;

	if (b->len + add > AUTHZ_BODY_MAX) {
		b->over = true;
		return 0;
	}
	d = realloc(b->data, b->len + add + 1);
	if (!d)
		return 0;
	memcpy(d + b->len, p, add);
	b->data = d;
	b->len += add;
	b->data[b->len] = '\0';
	return add;
}

/* Our own token, trimmed. */
static int read_token(const char *path, char *buf, size_t n, char *why, size_t why_len)
{
	FILE *f = fopen(path, "re");
	size_t len;

	if (!f)
		return say(why, why_len, -EIO, "cannot open our token %s: %s", path,
			   strerror(errno));
	len = fread(buf, 1, n - 1, f);
	fclose(f);
	buf[len] = '\0';
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
		buf[--len] = '\0';
	if (!len)
		return say(why, why_len, -EIO, "our token %s is empty", path);
	return 0;
}

/*
 * One call to the API server: method GET or POST (with body), path from
 * the server's root. 0 and the parsed JSON in *out (json_object_put),
 * with *code the HTTP status; -EIO with why.
 */
static int api_call(const struct authz_api *api, const char *path, const char *post,
		    json_object **out, long *code, char *why, size_t why_len)
{
	char token[AUTHZ_TOKEN_MAX], auth[AUTHZ_TOKEN_MAX + 32], url[2048];
	struct curl_slist *hdrs = NULL;
	struct body b = {0};
	CURL *c;
	CURLcode rc;
	int err;

	*out = NULL;
	err = read_token(api->token_file, token, sizeof(token), why, why_len);
	if (err)
		return err;
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
	snprintf(url, sizeof(url), "%s%s", api->url, path);
	c = curl_easy_init();
	if (!c)
		return say(why, why_len, -ENOMEM, "cannot allocate an HTTP client");
	hdrs = curl_slist_append(hdrs, auth);
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	if (post)
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_CAINFO, api->ca_file);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, api->timeout_ms);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	if (post)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, post);
	rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, code);
	curl_easy_cleanup(c);
	curl_slist_free_all(hdrs);
	explicit_bzero(token, sizeof(token));
	explicit_bzero(auth, sizeof(auth));
	if (rc != CURLE_OK) {
		free(b.data);
		return say(why, why_len, -EIO, "API server %s: %s", path,
			   b.over ? "response over the size limit" : curl_easy_strerror(rc));
	}
	*out = b.data ? json_tokener_parse(b.data) : NULL;
	free(b.data);
	if (!*out)
		return say(why, why_len, -EIO, "API server %s: HTTP %ld, no JSON body", path,
			   *code);
	return 0;
}

static const char *jstr(json_object *o, const char *key)
{
	json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static json_object *jobj(json_object *o, const char *key)
{
	json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v))
		return NULL;
	return v;
}

/* extra[key] is a list of strings: its one value, copied, or false. */
static bool extra_one(json_object *extra, const char *key, char *buf, size_t n)
{
	json_object *list = jobj(extra, key), *v;

	if (!list || !json_object_is_type(list, json_type_array) ||
	    json_object_array_length(list) != 1)
		return false;
	v = json_object_array_get_idx(list, 0);
	if (!json_object_is_type(v, json_type_string) ||
	    (size_t)json_object_get_string_len(v) >= n || json_object_get_string_len(v) == 0)
		return false;
	memcpy(buf, json_object_get_string(v), (size_t)json_object_get_string_len(v) + 1);
	return true;
}

int authz_token_review(const struct authz_api *api, const char *token, struct authz_caller *out,
		       char *why, size_t why_len)
{
	json_object *req, *spec, *resp = NULL, *status, *user, *extra, *auth;
	const char *user_name, *colon, *err_text;
	long code = 0;
	int err;

	memset(out, 0, sizeof(*out));
	req = json_object_new_object();
	spec = json_object_new_object();
	json_object_object_add(req, "apiVersion",
			       json_object_new_string("authentication.k8s.io/v1"));
	json_object_object_add(req, "kind", json_object_new_string("TokenReview"));
	json_object_object_add(spec, "token", json_object_new_string(token));
	if (api->audience) {
		json_object *aud = json_object_new_array();

		json_object_array_add(aud, json_object_new_string(api->audience));
		json_object_object_add(spec, "audiences", aud);
	}
	json_object_object_add(req, "spec", spec);
	err = api_call(api, "/apis/authentication.k8s.io/v1/tokenreviews",
		       json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN), &resp, &code,
		       why, why_len);
	json_object_put(req);
	if (err)
		return err;
	if (code != 201 && code != 200) {
		err = say(why, why_len, -EIO, "TokenReview: HTTP %ld from the API server: %s", code,
			  jstr(resp, "message") ?: "no message");
		goto out;
	}
	status = jobj(resp, "status");
	auth = jobj(status, "authenticated");
	if (!auth || !json_object_get_boolean(auth)) {
		err_text = jstr(status, "error");
		err = say(why, why_len, -EACCES, "token not authenticated: %s",
			  err_text ?: "TokenReview says authenticated false");
		goto out;
	}
	user = jobj(status, "user");
	user_name = jstr(user, "username");
	if (!user_name || strncmp(user_name, SA_PREFIX, strlen(SA_PREFIX)) != 0 ||
	    !(colon = strchr(user_name + strlen(SA_PREFIX), ':')) ||
	    (size_t)(colon - user_name - strlen(SA_PREFIX)) > SPIFFE_NS_MAX ||
	    strlen(colon + 1) > SPIFFE_SA_MAX || colon == user_name + strlen(SA_PREFIX) ||
	    !colon[1]) {
		err = say(why, why_len, -EACCES, "token of \"%.200s\", not of a service account",
			  user_name ?: "");
		goto out;
	}
	memcpy(out->ns, user_name + strlen(SA_PREFIX),
	       (size_t)(colon - user_name - strlen(SA_PREFIX)));
	snprintf(out->sa, sizeof(out->sa), "%s", colon + 1);
	extra = jobj(user, "extra");
	if (!extra_one(extra, EXTRA_POD_NAME, out->pod, sizeof(out->pod)) ||
	    !extra_one(extra, EXTRA_NODE_NAME, out->node, sizeof(out->node))) {
		err = say(why, why_len, -EACCES,
			  "token of %s/%s is not bound to a pod on a node (no %s and %s in its "
			  "TokenReview: use a projected service-account token)",
			  out->ns, out->sa, EXTRA_POD_NAME, EXTRA_NODE_NAME);
		goto out;
	}
	extra_one(extra, EXTRA_POD_UID, out->pod_uid, sizeof(out->pod_uid));
	err = 0;
out:
	json_object_put(resp);
	if (err && err != -EIO)
		memset(out, 0, sizeof(*out));
	return err;
}

static bool pod_finished(json_object *pod)
{
	const char *phase = jstr(jobj(pod, "status"), "phase");

	return phase && (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0);
}

static bool dns_name(const char *s)
{
	return *s && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789.-") == strlen(s);
}

int authz_node_pods(const struct authz_api *api, const struct authz_caller *caller,
		    const struct spiffe_id *want, char *why, size_t why_len)
{
	json_object *resp = NULL, *items;
	bool caller_ok = false, want_ok = false;
	char path[512];
	long code = 0;
	int err;

	/* The node's name goes into a URL: a DNS subdomain needs no escaping. */
	if (!dns_name(caller->node))
		return say(why, why_len, -EPERM, "node name \"%.100s\" is not a DNS name",
			   caller->node);
	snprintf(path, sizeof(path), "/api/v1/pods?fieldSelector=spec.nodeName%%3D%s",
		 caller->node);
	err = api_call(api, path, NULL, &resp, &code, why, why_len);
	if (err)
		return err;
	items = jobj(resp, "items");
	if (code != 200 || !items || !json_object_is_type(items, json_type_array)) {
		err = say(why, why_len, -EIO, "pods on %s: HTTP %ld from the API server: %s",
			  caller->node, code, jstr(resp, "message") ?: "no pod list");
		goto out;
	}
	for (size_t i = 0; i < json_object_array_length(items); i++) {
		json_object *pod = json_object_array_get_idx(items, i);
		json_object *meta = jobj(pod, "metadata"), *spec = jobj(pod, "spec");
		const char *ns = jstr(meta, "namespace"), *name = jstr(meta, "name");
		const char *uid = jstr(meta, "uid"), *node = jstr(spec, "nodeName");
		/* The API server defaults it; an absent one is "default". */
		const char *sa = jstr(spec, "serviceAccountName") ?: "default";

		if (!ns || !name || !node || strcmp(node, caller->node) != 0 || pod_finished(pod))
			continue;
		if (strcmp(ns, caller->ns) == 0 && strcmp(name, caller->pod) == 0 &&
		    (!caller->pod_uid[0] || (uid && strcmp(uid, caller->pod_uid) == 0)))
			caller_ok = true;
		if (strcmp(ns, want->ns) == 0 && strcmp(sa, want->sa) == 0)
			want_ok = true;
	}
	if (!caller_ok)
		err = say(why, why_len, -EPERM,
			  "the caller's pod %s/%s%s%s is not current on node %s", caller->ns,
			  caller->pod, caller->pod_uid[0] ? " uid " : "", caller->pod_uid,
			  caller->node);
	else if (!want_ok)
		err = say(why, why_len, -EPERM, "no pod with service account %s/%s runs on node %s",
			  want->ns, want->sa, caller->node);
	else
		err = 0;
out:
	json_object_put(resp);
	return err;
}
