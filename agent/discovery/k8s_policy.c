// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* AuthorizationPolicy objects from the API server, held by name (k8s_policy.h). */
#include "discovery/k8s_policy.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "policy/policy_crd.h"

struct held {
	struct policy_crd c; /* the last good version */
	bool seen;	     /* put during the list now running */
};

struct k8s_policy_store {
	struct held *objs; /* sorted by (ns, name) */
	int n, cap;
	bool listing;
	uint64_t generation;
	atomic_uint_fast64_t rejects;
};

struct k8s_policy_store *k8s_policy_store_new(void)
{
	return calloc(1, sizeof(struct k8s_policy_store));
}

void k8s_policy_store_free(struct k8s_policy_store *s)
{
	if (!s)
		return;
	for (int i = 0; i < s->n; i++)
		policy_crd_clear(&s->objs[i].c);
	free(s->objs);
	free(s);
}

uint64_t k8s_policy_generation(const struct k8s_policy_store *s)
{
	return s->generation;
}

uint64_t k8s_policy_rejects(const struct k8s_policy_store *s)
{
	return atomic_load(&((struct k8s_policy_store *)s)->rejects);
}

static int cmp_key(const struct held *h, const char *ns, const char *name)
{
	int c = strcmp(h->c.ns, ns);

	return c ? c : strcmp(h->c.name, name);
}

/* Index of (ns, name), or -(insertion point) - 1. */
static int find(const struct k8s_policy_store *s, const char *ns, const char *name)
{
	int lo = 0, hi = s->n - 1;

	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2, c = cmp_key(&s->objs[mid], ns, name);

		if (!c)
			return mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -lo - 1;
}

/* The namespace and name of obj, to find its held version when it does not decode. */
static void object_key(json_object *obj, char *ns, size_t nslen, char *name, size_t namelen)
{
	json_object *meta, *v;

	ns[0] = name[0] = '\0';
	if (!json_object_object_get_ex(obj, "metadata", &meta))
		return;
	if (json_object_object_get_ex(meta, "namespace", &v) &&
	    json_object_is_type(v, json_type_string))
		snprintf(ns, nslen, "%s", json_object_get_string(v));
	if (json_object_object_get_ex(meta, "name", &v) && json_object_is_type(v, json_type_string))
		snprintf(name, namelen, "%s", json_object_get_string(v));
}

static int sink_put(void *ctx, json_object *obj, char *err, size_t errlen)
{
	struct k8s_policy_store *s = ctx;
	struct policy_crd c;
	int i, ret = policy_crd_decode(obj, &c, err, errlen);

	if (ret) {
		char ns[POLICY_MAX_LABEL + 1], name[POLICY_MAX_NAME + 1];

		object_key(obj, ns, sizeof(ns), name, sizeof(name));
		i = find(s, ns, name);
		if (i >= 0)
			s->objs[i].seen = true; /* the list must not drop the last good one */
		atomic_fetch_add(&s->rejects, 1);
		pr_warn("policy: %s; %s", err,
			i >= 0 ? "its last good version stays in force" : "it is not in force");
		/* Refused here, not by the watcher: a relist would only refuse it again. */
		return ret == -ENOMEM ? -ENOMEM : 0;
	}
	i = find(s, c.ns, c.name);
	if (i >= 0) {
		policy_crd_clear(&s->objs[i].c);
		s->objs[i].c = c;
		s->objs[i].seen = true;
		s->generation++;
		return 0;
	}
	if (s->n >= K8S_POLICY_MAX_OBJECTS) {
		atomic_fetch_add(&s->rejects, 1);
		pr_warn("policy: AuthorizationPolicy %s/%s: more than %d objects; not in force",
			c.ns, c.name, K8S_POLICY_MAX_OBJECTS);
		policy_crd_clear(&c);
		return 0;
	}
	if (s->n == s->cap) {
		int cap = s->cap ? 2 * s->cap : 16;
		void *p = realloc(s->objs, (size_t)cap * sizeof(*s->objs));

		if (!p) {
			policy_crd_clear(&c);
			return -ENOMEM;
		}
		s->objs = p;
		s->cap = cap;
	}
	i = -i - 1;
	memmove(&s->objs[i + 1], &s->objs[i], (size_t)(s->n - i) * sizeof(*s->objs));
	s->objs[i].c = c;
	s->objs[i].seen = true;
	s->n++;
	s->generation++;
	return 0;
}

static void drop(struct k8s_policy_store *s, int i)
{
	policy_crd_clear(&s->objs[i].c);
	memmove(&s->objs[i], &s->objs[i + 1], (size_t)(s->n - i - 1) * sizeof(*s->objs));
	s->n--;
	s->generation++;
}

static int sink_del(void *ctx, json_object *obj, char *err, size_t errlen)
{
	struct k8s_policy_store *s = ctx;
	char ns[POLICY_MAX_LABEL + 1], name[POLICY_MAX_NAME + 1];
	int i;

	(void)err;
	(void)errlen;
	object_key(obj, ns, sizeof(ns), name, sizeof(name));
	i = find(s, ns, name);
	if (i >= 0)
		drop(s, i);
	return 0;
}

static void sink_begin(void *ctx)
{
	struct k8s_policy_store *s = ctx;

	for (int i = 0; i < s->n; i++)
		s->objs[i].seen = false;
	s->listing = true;
}

static void sink_end(void *ctx)
{
	struct k8s_policy_store *s = ctx;

	for (int i = s->n - 1; i >= 0; i--)
		if (!s->objs[i].seen)
			drop(s, i);
	s->listing = false;
}

struct k8s_sink k8s_policy_sink(struct k8s_policy_store *s)
{
	return (struct k8s_sink){
	    .begin = sink_begin, .end = sink_end, .put = sink_put, .del = sink_del, .ctx = s};
}

int k8s_policy_written(const struct k8s_policy_store *s, struct policy_doc *out)
{
	for (int i = 0; i < s->n; i++) {
		const struct policy_crd *c = &s->objs[i].c;

		if (c->is_default) {
			struct policy_default_rule *df = policy_doc_add_default(out);

			if (!df)
				return -E2BIG;
			*df = c->def;
			continue;
		}
		struct policy_rule *r = policy_doc_add_rule(out);

		if (!r)
			return -E2BIG;
		*r = c->rule;
		r->from = malloc((size_t)c->rule.n_from * sizeof(*r->from));
		r->to = c->rule.n_to ? malloc((size_t)c->rule.n_to * sizeof(*r->to)) : NULL;
		if (!r->from || (c->rule.n_to && !r->to))
			return -ENOMEM;
		memcpy(r->from, c->rule.from, (size_t)c->rule.n_from * sizeof(*r->from));
		if (c->rule.n_to)
			memcpy(r->to, c->rule.to, (size_t)c->rule.n_to * sizeof(*r->to));
	}
	return 0;
}
