// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The pod table's sink (k8s_pods.h): decoded Pods into the model, under the watcher's lock. */
#include "discovery/k8s_pods.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>

#include "common/log.h"
#include "discovery/k8s_decode.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * A pod whose host address was refused: a warning naming it, unless one
 * went out less than K8S_PODS_HOST_WARN_NS ago (a bad pod repeats with
 * each of its status updates); the next warning says how many were held.
 */
static void host_warn(struct k8s_pods *p, const struct model_pod *pod)
{
	uint64_t now = now_ns();

	if (p->host_warned_ns && now - p->host_warned_ns < K8S_PODS_HOST_WARN_NS) {
		p->host_warns_held++;
		return;
	}
	if (p->host_warns_held)
		pr_warn("kubernetes: pod %s/%s: %s; its node's address is not learned from it "
			"(and %llu more such warnings in the last %llu s, "
			"shoal_discovery_k8s_host_refused_total)",
			pod->ns, pod->name, pod->note, (unsigned long long)p->host_warns_held,
			(unsigned long long)((now - p->host_warned_ns) / 1000000000ull));
	else
		pr_warn("kubernetes: pod %s/%s: %s; its node's address is not learned from it",
			pod->ns, pod->name, pod->note);
	p->host_warned_ns = now;
	p->host_warns_held = 0;
}

static int sink_put(void *ctx, json_object *obj, char *err, size_t errlen)
{
	struct k8s_pods *p = ctx;
	struct model_pod pod;
	int ret = k8s_decode_pod(obj, &pod, err, errlen);

	if (ret == -EINVAL) {
		/*
		 * Forgotten rather than relisted: one bad pod must not make a
		 * list of every pod of the cluster run again and again.
		 */
		atomic_fetch_add(&p->refused, 1);
		pr_warn("kubernetes: pod %s/%s ignored: %s; its endpoints have no identity",
			pod.ns[0] ? pod.ns : "?", pod.name[0] ? pod.name : "?", err);
		if (pod.ns[0] && pod.name[0])
			return model_del_pod(p->m, pod.ns, pod.name) == 0 ? 0 : 1;
		return 1;
	}
	if (ret)
		return ret;
	if (pod.note[0]) {
		/* The pod keeps its identity; only its node's address is not taken. */
		atomic_fetch_add(&p->hosts_refused, 1);
		host_warn(p, &pod);
	}
	ret = model_put_pod(p->m, &pod);
	if (ret == -ENOSPC) {
		atomic_fetch_add(&p->over, 1);
		if (!p->over_logged)
			pr_warn("kubernetes: more than %d pods; pod %s/%s and others beyond the "
				"bound are not kept, and their endpoints have no identity",
				MODEL_MAX_PODS, pod.ns, pod.name);
		p->over_logged = true;
		return 1;
	}
	if (ret == -EINVAL) {
		atomic_fetch_add(&p->refused, 1);
		pr_warn("kubernetes: pod %s/%s ignored: its identity is too long", pod.ns,
			pod.name);
		return 1;
	}
	return ret;
}

static int sink_del(void *ctx, json_object *obj, char *err, size_t errlen)
{
	struct k8s_pods *p = ctx;
	struct model_pod pod;

	/* Only the name matters: what else it says no longer does. */
	k8s_decode_pod(obj, &pod, err, errlen);
	if (!pod.ns[0] || !pod.name[0])
		return 1;
	return model_del_pod(p->m, pod.ns, pod.name) == 0 ? 0 : 1;
}

static void sink_begin(void *ctx)
{
	struct k8s_pods *p = ctx;

	model_mark(p->m, 2);
}

static void sink_end(void *ctx)
{
	struct k8s_pods *p = ctx;
	size_t gone = model_sweep(p->m, 2);

	if (gone)
		pr_info("kubernetes: %zu pods gone since the last list", gone);
}

static int ns_put(void *ctx, json_object *obj, char *err, size_t errlen)
{
	struct k8s_pods *p = ctx;
	char name[MODEL_MAX_LABEL + 1], note[192];
	uint8_t mode;
	int ret = k8s_decode_namespace_mode(obj, name, sizeof(name), &mode, note, sizeof(note));

	if (ret) {
		snprintf(err, errlen, "%s", note);
		return ret;
	}
	if (note[0])
		pr_warn("kubernetes: namespace %s: %s", name, note);
	ret = model_put_ns_mode(p->m, name, mode);
	if (ret == -ENOSPC) {
		if (!p->ns_over_logged)
			pr_warn("kubernetes: more than %d namespaces with %s; namespace %s's is "
				"ignored",
				MODEL_MAX_NAMESPACES, K8S_MTLS_MODE_ANNOTATION, name);
		p->ns_over_logged = true;
		return 1;
	}
	return ret;
}

static int ns_del(void *ctx, json_object *obj, char *err, size_t errlen)
{
	struct k8s_pods *p = ctx;
	char name[MODEL_MAX_LABEL + 1];
	uint8_t mode;

	if (k8s_decode_namespace_mode(obj, name, sizeof(name), &mode, err, errlen))
		return 1;
	return model_del_ns(p->m, name);
}

static void ns_begin(void *ctx)
{
	struct k8s_pods *p = ctx;

	model_mark(p->m, 3);
}

static void ns_end(void *ctx)
{
	struct k8s_pods *p = ctx;

	model_sweep(p->m, 3);
}

struct k8s_sink k8s_namespaces_sink(struct k8s_pods *p)
{
	return (struct k8s_sink){
	    .begin = ns_begin, .end = ns_end, .put = ns_put, .del = ns_del, .ctx = p};
}

struct k8s_sink k8s_pods_sink(struct k8s_pods *p)
{
	return (struct k8s_sink){
	    .begin = sink_begin, .end = sink_end, .put = sink_put, .del = sink_del, .ctx = p};
}
