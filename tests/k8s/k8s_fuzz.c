// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * libFuzzer harness for the Kubernetes decoder: the input is a watch
 * stream, fed through the framer in chunks whose sizes the input's first
 * byte picks, each complete value decoded as an event of the kind the
 * second byte picks (mod 3: Service, EndpointSlice, or enrollment's Pods
 * and Namespaces), and applied to a model that is then built into a
 * config, or to enrollment's tables. Checks the decoder's contract on every input (a decoded event
 * is well-formed, a refused one owns nothing) and the model's (a built
 * config has ids equal to indices and endpoints only on live services).
 * ASan finds leaks and overflows. Built by scripts/fuzz-k8s.sh.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/addr.h"
#include "discovery/k8s_decode.h"
#include "discovery/model.h"
#include "enroll/pods.h"

/* Small bound, so that the size check is reached too. */
#define FUZZ_MAX_EVENT 4096

struct fuzz_ctx {
	enum k8s_kind kind;
	struct model *m;
	struct enroll_table t; /* kind K8S_KIND_RAW: Pods and Namespaces */
};

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "k8s_fuzz: broken invariant: %s\n", what);
		abort();
	}
}

/* A Pod or Namespace event into enrollment's tables, and their contract. */
static void on_enroll_object(struct fuzz_ctx *ctx, enum k8s_event_type type, json_object *obj)
{
	json_object *kind = json_object_object_get(obj, "kind");
	char err[256] = "";

	if (kind && json_object_is_type(kind, json_type_string) &&
	    !strcmp(json_object_get_string(kind), "Namespace")) {
		struct enroll_ns n;
		char nsname[64], note[192];
		uint8_t mode;

		/* The mtls side (discovery/k8s_pods.c): its annotation into the model. */
		if (k8s_decode_namespace_mode(obj, nsname, sizeof(nsname), &mode, note,
					      sizeof(note)) == 0) {
			check(mode <= 1 + CONFIG_MTLS_STRICT, "a mode or none");
			if (type == K8S_EV_DELETED)
				model_del_ns(ctx->m, nsname);
			else
				model_put_ns_mode(ctx->m, nsname, mode);
		} else {
			check(note[0] != '\0', "a refused namespace says why");
		}

		if (enroll_decode_ns(obj, &n, err, sizeof(err))) {
			check(err[0] != '\0', "a refused namespace says why");
			return;
		}
		check(n.name[0] != '\0', "namespace named");
		if (type == K8S_EV_DELETED)
			enroll_del_ns(&ctx->t, n.name);
		else
			enroll_put_ns(&ctx->t, &n);
		check(ctx->t.n_nss <= ENROLL_MAX_NAMESPACES, "namespaces bounded");
		return;
	}
	{
		/* The identity side (discovery/k8s_pods.c): the same object into the model. */
		struct model_pod mp;

		if (k8s_decode_pod(obj, &mp, err, sizeof(err)) == 0) {
			check(mp.service_account[0] != '\0', "a service account, default at least");
			if (type == K8S_EV_DELETED)
				model_del_pod(ctx->m, mp.ns, mp.name);
			else
				model_put_pod(ctx->m, &mp);
			check(model_n_pods(ctx->m) <= MODEL_MAX_PODS, "model pods bounded");
			/* A node is kept only by a pod that reports it. */
			check(model_n_nodes(ctx->m) <= model_n_pods(ctx->m),
			      "nodes bounded by pods");
			check(mp.n_host >= 0 && mp.n_host <= 2, "host addresses bounded");
		} else {
			check(err[0] != '\0', "a refused pod says why");
		}
	}
	{
		struct enroll_pod p;

		if (enroll_decode_pod(obj, &p, err, sizeof(err))) {
			check(err[0] != '\0', "a refused pod says why");
			return;
		}
		check(p.uid[0] && p.name[0] && p.ns[0], "pod named");
		check(p.service_account[0] != '\0', "a service account, default at least");
		check(p.n_ips >= 0 && p.n_ips <= ENROLL_MAX_POD_IPS, "pod IPs bounded");
		check(!p.host_network || !enroll_wanted(&ctx->t, &p), "host network never meshed");
		if (type == K8S_EV_DELETED)
			enroll_del_pod(&ctx->t, p.uid, NULL);
		else
			enroll_put_pod(&ctx->t, &p);
		check(ctx->t.n_pods <= ENROLL_MAX_PODS, "pods bounded");
	}
}

static int on_value(void *vctx, json_object *obj)
{
	struct fuzz_ctx *ctx = vctx;
	struct k8s_event ev;
	char err[256];
	int ret = k8s_decode_event(obj, ctx->kind, &ev, err, sizeof(err));

	if (!ret && ctx->kind == K8S_KIND_RAW) {
		if (ev.type <= K8S_EV_DELETED)
			on_enroll_object(ctx, ev.type, json_object_object_get(obj, "object"));
		json_object_put(obj);
		return 0;
	}

	json_object_put(obj);
	if (ret) {
		check(err[0] != '\0', "a refusal says why");
		k8s_event_clear(&ev); /* must be harmless */
		return 0;
	}
	check(memchr(ev.rv, '\0', sizeof(ev.rv)) != NULL, "rv terminated");
	if (ev.type == K8S_EV_ERROR || ev.type == K8S_EV_BOOKMARK)
		return 0;
	if (ctx->kind == K8S_KIND_SERVICE) {
		check(ev.svc.ns[0] && ev.svc.name[0], "service named");
		check(ev.svc.n_vips >= 0 && ev.svc.n_vips <= MODEL_MAX_VIPS, "vips bounded");
		check(ev.svc.headless || ev.svc.n_vips > 0, "a non-headless service has a VIP");
		if (ev.type == K8S_EV_DELETED)
			model_del_service(ctx->m, ev.svc.ns, ev.svc.name);
		else
			model_put_service(ctx->m, &ev.svc);
	} else {
		check(ev.slice.n_eps <= MODEL_MAX_SLICE_ENDPOINTS, "endpoints bounded");
		for (int i = 0; i < ev.slice.n_eps; i++)
			check(addr_is_v4(&ev.slice.eps[i].addr) != ev.slice.ipv6, "family");
		if (ev.type == K8S_EV_DELETED)
			model_del_slice(ctx->m, ev.slice.ns, ev.slice.name);
		else
			model_put_slice(ctx->m, &ev.slice);
	}
	k8s_event_clear(&ev);
	return 0;
}

static void check_build(const struct model *m)
{
	static const char yaml[] = "node: {address_v4: 10.0.0.1}\n";
	struct config *base, *cfg;
	char err[256];

	check(config_parse("base", yaml, sizeof(yaml) - 1, &base, err, sizeof(err)) == 0, "base");
	if (model_build(m, base, &cfg, NULL) == 0) {
		for (int i = 0; i < cfg->n_services; i++) {
			const struct config_service *s = cfg->services[i];

			check(s->id == (uint32_t)i, "id == index");
			check(s->n_vips > 0 || s->n_endpoints == 0, "vacant ids have no endpoints");
			for (int p = 0; p < s->n_ports; p++)
				check(s->ports[p].port != 0, "ports nonzero");
			for (int e = 0; e < s->n_endpoints; e++)
				check(!s->endpoints[e].identity ||
					  config_identity_valid(s->endpoints[e].identity),
				      "an endpoint's identity is <namespace>/<service account>");
		}
		if (cfg->nodes_learned) {
			const struct config_nodes *ln = cfg->nodes_learned;

			check(ln->n > 0 && (size_t)ln->n == model_n_nodes(m), "one entry a node");
			for (int i = 0; i < ln->n; i++) {
				check(ln->nodes[i].name[0] && !addr_is_zero(&ln->nodes[i].addr),
				      "a learned node has a name and an address");
				check(i == 0 ||
					  strcmp(ln->nodes[i - 1].name, ln->nodes[i].name) < 0,
				      "learned nodes sorted, once each");
				check(config_mtls_node(cfg, ln->nodes[i].name) == &ln->nodes[i],
				      "config_mtls_node finds it");
			}
		} else {
			check(model_n_nodes(m) == 0, "no set: no node");
		}
		config_free(cfg);
	}
	config_free(base);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_ctx ctx;
	struct k8s_stream s;
	size_t chunk;

	if (size < 2)
		return 0;
	chunk = 1 + data[0] % 64;
	ctx.kind = data[1] % 3 == 2   ? K8S_KIND_RAW
		   : data[1] % 3 == 1 ? K8S_KIND_ENDPOINTSLICE
				      : K8S_KIND_SERVICE;
	data += 2;
	size -= 2;
	ctx.m = model_new();
	if (!ctx.m || enroll_table_init(&ctx.t)) {
		model_free(ctx.m);
		return 0;
	}
	if (k8s_stream_init(&s, FUZZ_MAX_EVENT)) {
		model_free(ctx.m);
		enroll_table_fini(&ctx.t);
		return 0;
	}
	for (size_t off = 0; off < size; off += chunk) {
		size_t n = size - off < chunk ? size - off : chunk;

		if (k8s_stream_feed(&s, (const char *)data + off, n, on_value, &ctx))
			break;
	}
	k8s_stream_fini(&s);
	check_build(ctx.m);
	model_free(ctx.m);
	enroll_table_fini(&ctx.t);
	return 0;
}
