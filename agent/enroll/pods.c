// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "enroll/pods.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/addr.h"

const char *enroll_state_name(enum enroll_state s)
{
	switch (s) {
	case ENROLL_STATE_UNMESHED:
		return "unmeshed";
	case ENROLL_STATE_HOST_NETWORK:
		return "host-network";
	case ENROLL_STATE_PENDING:
		return "pending";
	case ENROLL_STATE_ENROLLED:
		return "enrolled";
	}
	return "?";
}

int enroll_table_init(struct enroll_table *t)
{
	memset(t, 0, sizeof(*t));
	t->pods = calloc(ENROLL_MAX_PODS, sizeof(*t->pods));
	t->nss = calloc(ENROLL_MAX_NAMESPACES, sizeof(*t->nss));
	if (!t->pods || !t->nss) {
		enroll_table_fini(t);
		return -ENOMEM;
	}
	return 0;
}

void enroll_table_fini(struct enroll_table *t)
{
	free(t->pods);
	free(t->nss);
	memset(t, 0, sizeof(*t));
}

static int __attribute__((format(printf, 3, 4)))
dec_err(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/*
 * obj[key] as a string into out: absent or null gives "" (0) unless
 * required; another type, or one too long for out, is an error.
 */
static int get_str(json_object *obj, const char *key, char *out, size_t len, bool required,
		   char *err, size_t errlen)
{
	json_object *v;
	const char *s;

	out[0] = '\0';
	if (!json_object_object_get_ex(obj, key, &v) || json_object_is_type(v, json_type_null))
		return required ? dec_err(err, errlen, "%s: is required", key) : 0;
	if (!json_object_is_type(v, json_type_string))
		return dec_err(err, errlen, "%s: must be a string", key);
	s = json_object_get_string(v);
	if (strlen(s) >= len)
		return dec_err(err, errlen, "%s: longer than %zu bytes", key, len - 1);
	if (required && !*s)
		return dec_err(err, errlen, "%s: is required", key);
	memcpy(out, s, strlen(s) + 1);
	return 0;
}

/* obj[key] as an object; absent or null gives NULL. */
static int get_obj(json_object *obj, const char *key, json_object **out, char *err, size_t errlen)
{
	json_object *v;

	*out = NULL;
	if (!obj || !json_object_object_get_ex(obj, key, &v) ||
	    json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_object))
		return dec_err(err, errlen, "%s: must be an object", key);
	*out = v;
	return 0;
}

/* The shoal.io/mesh label of metadata (NULL: no metadata). */
static int get_label(json_object *meta, enum enroll_label *out, char *err, size_t errlen)
{
	json_object *labels;
	char v[64];
	int ret;

	*out = ENROLL_LABEL_ABSENT;
	ret = get_obj(meta, "labels", &labels, err, errlen);
	if (ret || !labels)
		return ret;
	/* Label values are at most 63 characters: a longer one is not ours. */
	ret = get_str(labels, ENROLL_LABEL, v, sizeof(v), false, err, errlen);
	if (ret)
		return ret;
	if (!strcmp(v, "enabled"))
		*out = ENROLL_LABEL_ENABLED;
	else if (!strcmp(v, "disabled"))
		*out = ENROLL_LABEL_DISABLED;
	return 0;
}

static int add_ip(struct enroll_pod *p, const char *text, char *err, size_t errlen)
{
	struct shoal_addr a;

	if (!*text)
		return 0;
	if (addr_parse(text, &a))
		return dec_err(err, errlen, "status.podIPs: '%s' is not an address", text);
	if (enroll_pod_has_ip(p, &a) || p->n_ips >= ENROLL_MAX_POD_IPS)
		return 0;
	p->ips[p->n_ips++] = a;
	return 0;
}

int enroll_decode_pod(json_object *obj, struct enroll_pod *out, char *err, size_t errlen)
{
	json_object *meta, *spec, *status, *v;
	char ip[64];
	int ret;

	memset(out, 0, sizeof(*out));
	if (!obj || !json_object_is_type(obj, json_type_object))
		return dec_err(err, errlen, "pod: must be a JSON object");
	ret = get_obj(obj, "metadata", &meta, err, errlen);
	if (ret)
		return ret;
	if (!meta)
		return dec_err(err, errlen, "metadata: is required");
	if ((ret = get_str(meta, "uid", out->uid, sizeof(out->uid), true, err, errlen)) ||
	    (ret = get_str(meta, "name", out->name, sizeof(out->name), true, err, errlen)) ||
	    (ret = get_str(meta, "namespace", out->ns, sizeof(out->ns), true, err, errlen)) ||
	    (ret = get_label(meta, &out->label, err, errlen)))
		return ret;
	if ((ret = get_obj(obj, "spec", &spec, err, errlen)) ||
	    (ret = get_obj(obj, "status", &status, err, errlen)))
		return ret;
	if (spec) {
		ret = get_str(spec, "serviceAccountName", out->service_account,
			      sizeof(out->service_account), false, err, errlen);
		if (ret)
			return ret;
		if (json_object_object_get_ex(spec, "hostNetwork", &v) &&
		    !json_object_is_type(v, json_type_null)) {
			if (!json_object_is_type(v, json_type_boolean))
				return dec_err(err, errlen, "spec.hostNetwork: must be a boolean");
			out->host_network = json_object_get_boolean(v);
		}
	}
	/* The API server defaults it; an object without one ran as "default". */
	if (!out->service_account[0])
		snprintf(out->service_account, sizeof(out->service_account), "default");
	if (!status)
		return 0;
	ret = get_str(status, "phase", out->phase, sizeof(out->phase), false, err, errlen);
	if (ret)
		return ret;
	if (json_object_object_get_ex(status, "podIPs", &v) &&
	    !json_object_is_type(v, json_type_null)) {
		if (!json_object_is_type(v, json_type_array))
			return dec_err(err, errlen, "status.podIPs: must be an array");
		for (size_t i = 0; i < json_object_array_length(v); i++) {
			json_object *e = json_object_array_get_idx(v, i);

			if (!json_object_is_type(e, json_type_object))
				return dec_err(err, errlen, "status.podIPs[%zu]: must be an object",
					       i);
			ret = get_str(e, "ip", ip, sizeof(ip), false, err, errlen);
			if (!ret)
				ret = add_ip(out, ip, err, errlen);
			if (ret)
				return ret;
		}
	}
	/* podIP is podIPs[0]; older servers send only podIP. */
	ret = get_str(status, "podIP", ip, sizeof(ip), false, err, errlen);
	if (!ret)
		ret = add_ip(out, ip, err, errlen);
	return ret;
}

int enroll_decode_ns(json_object *obj, struct enroll_ns *out, char *err, size_t errlen)
{
	json_object *meta;
	int ret;

	memset(out, 0, sizeof(*out));
	if (!obj || !json_object_is_type(obj, json_type_object))
		return dec_err(err, errlen, "namespace: must be a JSON object");
	ret = get_obj(obj, "metadata", &meta, err, errlen);
	if (ret)
		return ret;
	if (!meta)
		return dec_err(err, errlen, "metadata: is required");
	ret = get_str(meta, "name", out->name, sizeof(out->name), true, err, errlen);
	if (!ret)
		ret = get_label(meta, &out->label, err, errlen);
	return ret;
}

struct enroll_pod *enroll_find_pod(struct enroll_table *t, const char *uid)
{
	for (int i = 0; i < t->n_pods; i++)
		if (!strcmp(t->pods[i].uid, uid))
			return &t->pods[i];
	return NULL;
}

struct enroll_pod *enroll_find_pod_name(struct enroll_table *t, const char *ns, const char *name)
{
	for (int i = 0; i < t->n_pods; i++)
		if (!strcmp(t->pods[i].ns, ns) && !strcmp(t->pods[i].name, name))
			return &t->pods[i];
	return NULL;
}

struct enroll_pod *enroll_put_pod(struct enroll_table *t, const struct enroll_pod *p)
{
	struct enroll_pod *e = enroll_find_pod(t, p->uid);

	if (!e) {
		if (t->n_pods >= ENROLL_MAX_PODS)
			return NULL;
		e = &t->pods[t->n_pods++];
		*e = *p;
	} else {
		/* The API's fields are replaced; the controller's stay. */
		struct enroll_pod keep = *e;

		*e = *p;
		e->state = keep.state;
		e->cookie = keep.cookie;
		e->cni_cookie = keep.cni_cookie;
		memcpy(e->cni_netns, keep.cni_netns, sizeof(e->cni_netns));
	}
	e->mark = true;
	return e;
}

bool enroll_del_pod(struct enroll_table *t, const char *uid, struct enroll_pod *gone)
{
	struct enroll_pod *e = enroll_find_pod(t, uid);

	if (!e)
		return false;
	if (gone)
		*gone = *e;
	*e = t->pods[--t->n_pods];
	return true;
}

static struct enroll_ns *find_ns(const struct enroll_table *t, const char *name)
{
	for (int i = 0; i < t->n_nss; i++)
		if (!strcmp(t->nss[i].name, name))
			return &t->nss[i];
	return NULL;
}

int enroll_put_ns(struct enroll_table *t, const struct enroll_ns *n)
{
	struct enroll_ns *e = find_ns(t, n->name);

	if (!e) {
		if (t->n_nss >= ENROLL_MAX_NAMESPACES)
			return -ENOSPC;
		e = &t->nss[t->n_nss++];
	}
	*e = *n;
	e->mark = true;
	return 0;
}

bool enroll_del_ns(struct enroll_table *t, const char *name)
{
	struct enroll_ns *e = find_ns(t, name);

	if (!e)
		return false;
	*e = t->nss[--t->n_nss];
	return true;
}

enum enroll_label enroll_ns_label(const struct enroll_table *t, const char *name)
{
	const struct enroll_ns *e = find_ns(t, name);

	return e ? e->label : ENROLL_LABEL_ABSENT;
}

void enroll_mark(struct enroll_table *t, bool pods)
{
	if (pods)
		for (int i = 0; i < t->n_pods; i++)
			t->pods[i].mark = false;
	else
		for (int i = 0; i < t->n_nss; i++)
			t->nss[i].mark = false;
}

int enroll_sweep(struct enroll_table *t, bool pods, struct enroll_pod *gone, int max_gone)
{
	int n = 0;

	if (pods) {
		for (int i = 0; i < t->n_pods;) {
			if (t->pods[i].mark) {
				i++;
				continue;
			}
			if (gone && n < max_gone)
				gone[n] = t->pods[i];
			n++;
			t->pods[i] = t->pods[--t->n_pods];
		}
		return n;
	}
	for (int i = 0; i < t->n_nss;) {
		if (t->nss[i].mark) {
			i++;
			continue;
		}
		n++;
		t->nss[i] = t->nss[--t->n_nss];
	}
	return n;
}

bool enroll_wanted(const struct enroll_table *t, const struct enroll_pod *p)
{
	if (p->host_network)
		return false;
	/* A finished pod's sandbox is gone or going: nothing to mesh. */
	if (!strcmp(p->phase, "Succeeded") || !strcmp(p->phase, "Failed"))
		return false;
	if (p->label != ENROLL_LABEL_ABSENT)
		return p->label == ENROLL_LABEL_ENABLED;
	return enroll_ns_label(t, p->ns) == ENROLL_LABEL_ENABLED;
}

bool enroll_pod_has_ip(const struct enroll_pod *p, const struct shoal_addr *addr)
{
	for (int i = 0; i < p->n_ips; i++)
		if (addr_equal(&p->ips[i], addr))
			return true;
	return false;
}
