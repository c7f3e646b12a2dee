// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The model's store: two hash tables (json-c's linkhash, already linked
 * for the decoder) keyed by "namespace/name", and a bitmap of service
 * slots. model_build() is the one place where Kubernetes' rules
 * (endpoint conditions, named target ports, headless services) become
 * the proxy's flat config.
 */
#include "discovery/model.h"

#include <arpa/inet.h>
#include <errno.h>
#include <json-c/linkhash.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/addr.h"

/* Initial hash table sizes; the tables grow on their own. */
#define MODEL_TABLE_INIT 64
#define MODEL_SLOTS SHOAL_MAX_SERVICES /* a slot becomes a BPF service id */
#define MODEL_SLOT_WORDS (MODEL_SLOTS / 64)

struct svc_entry {
	char key[MODEL_MAX_KEY + 1];
	struct model_service svc;
};

struct slice_entry {
	char key[MODEL_MAX_KEY + 1];
	struct model_slice slice;
};

/*
 * A pod the model keeps: one allocation, "ns/name\0uid\0ns/sa\0" in
 * text (key, uid, identity), so that 150,000 of them stay small.
 */
struct pod_entry {
	bool stale;
	uint16_t uid_at, ident_at; /* offsets in text */
	struct node_entry *node;   /* the node it reports an address of, or NULL */
	char text[];
};

/* A node some kept pods report an address of (model_n_nodes). */
struct node_entry {
	int pods;		   /* pod entries pointing here; the node goes at 0 */
	struct shoal_addr host[2]; /* as the last pod put said (model_pod.host) */
	int n_host;
	char name[];
};

struct ns_entry {
	bool stale;
	uint8_t mode; /* 1 + enum config_mtls_mode */
	char name[];
};

struct model {
	struct lh_table *services; /* key -> struct svc_entry */
	struct lh_table *slices;   /* key -> struct slice_entry */
	struct lh_table *pods;	   /* key -> struct pod_entry */
	struct lh_table *nss;	   /* name -> struct ns_entry: annotated namespaces */
	struct lh_table *nodes;	   /* name -> struct node_entry */
	uint64_t nodes_gen;	   /* bumped by every change model_build would publish */
	/* The last published nodes (a reference), for the generation and
	 * the listener families it was built for; NULL: none yet or empty. */
	struct config_nodes *nodes_built;
	uint64_t nodes_built_gen;
	bool nodes_built_v4, nodes_built_v6, nodes_built_valid;
	uint64_t slot_used[MODEL_SLOT_WORDS];
	/* What the last model_build published for each id (a reference
	 * each), so that the next build shares what did not change. */
	struct config_service **built;
	int n_built;
};

static void model_built_drop(struct model *m)
{
	for (int i = 0; i < m->n_built; i++)
		config_service_put(m->built[i]);
	free(m->built);
	m->built = NULL;
	m->n_built = 0;
}

static void svc_entry_free(struct lh_entry *e)
{
	free(lh_entry_v(e));
}

static void slice_entry_free(struct lh_entry *e)
{
	struct slice_entry *se = lh_entry_v(e);

	model_slice_clear(&se->slice);
	free(se);
}

struct model *model_new(void)
{
	struct model *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->services = lh_kchar_table_new(MODEL_TABLE_INIT, svc_entry_free);
	m->slices = lh_kchar_table_new(MODEL_TABLE_INIT, slice_entry_free);
	m->pods = lh_kchar_table_new(MODEL_TABLE_INIT, svc_entry_free);
	m->nss = lh_kchar_table_new(MODEL_TABLE_INIT, svc_entry_free);
	m->nodes = lh_kchar_table_new(MODEL_TABLE_INIT, svc_entry_free);
	if (!m->services || !m->slices || !m->pods || !m->nss || !m->nodes) {
		model_free(m);
		return NULL;
	}
	return m;
}

void model_free(struct model *m)
{
	if (!m)
		return;
	if (m->services)
		lh_table_free(m->services);
	if (m->slices)
		lh_table_free(m->slices);
	if (m->pods)
		lh_table_free(m->pods);
	if (m->nss)
		lh_table_free(m->nss);
	/* After the pods, which point into it (their free touches nothing). */
	if (m->nodes)
		lh_table_free(m->nodes);
	config_nodes_put(m->nodes_built);
	model_built_drop(m);
	free(m);
}

static void make_key(char *key, const char *ns, const char *name)
{
	snprintf(key, MODEL_MAX_KEY + 1, "%s/%s", ns, name);
}

/* The lowest free slot, marked used; -ENOSPC when all are taken. */
static int slot_alloc(struct model *m)
{
	for (int w = 0; w < MODEL_SLOT_WORDS; w++) {
		if (m->slot_used[w] == UINT64_MAX)
			continue;
		int b = __builtin_ctzll(~m->slot_used[w]);

		m->slot_used[w] |= 1ull << b;
		return w * 64 + b;
	}
	return -ENOSPC;
}

static void slot_free(struct model *m, uint32_t slot)
{
	m->slot_used[slot / 64] &= ~(1ull << (slot % 64));
}

int model_put_service(struct model *m, const struct model_service *svc)
{
	char key[MODEL_MAX_KEY + 1];
	struct lh_entry *e;
	struct svc_entry *se;
	int slot;

	make_key(key, svc->ns, svc->name);
	e = lh_table_lookup_entry(m->services, key);
	if (e) {
		se = lh_entry_v(e);
		slot = (int)se->svc.slot; /* a service keeps its id while it lives */
		se->svc = *svc;
		se->svc.slot = (uint32_t)slot;
		se->svc.stale = false;
		return 0;
	}
	slot = slot_alloc(m);
	if (slot < 0)
		return slot;
	se = calloc(1, sizeof(*se));
	if (!se) {
		slot_free(m, (uint32_t)slot);
		return -ENOMEM;
	}
	memcpy(se->key, key, sizeof(key));
	se->svc = *svc;
	se->svc.slot = (uint32_t)slot;
	se->svc.stale = false;
	if (lh_table_insert(m->services, se->key, se) < 0) {
		slot_free(m, (uint32_t)slot);
		free(se);
		return -ENOMEM;
	}
	return 0;
}

int model_del_service(struct model *m, const char *ns, const char *name)
{
	char key[MODEL_MAX_KEY + 1];
	struct lh_entry *e;

	make_key(key, ns, name);
	e = lh_table_lookup_entry(m->services, key);
	if (!e)
		return -ENOENT;
	slot_free(m, ((struct svc_entry *)lh_entry_v(e))->svc.slot);
	lh_table_delete_entry(m->services, e);
	return 0;
}

int model_put_slice(struct model *m, struct model_slice *s)
{
	char key[MODEL_MAX_KEY + 1];
	struct lh_entry *e;
	struct slice_entry *se;

	make_key(key, s->ns, s->name);
	e = lh_table_lookup_entry(m->slices, key);
	if (e) {
		se = lh_entry_v(e);
		model_slice_clear(&se->slice);
		se->slice = *s;
		se->slice.stale = false;
		s->eps = NULL;
		s->n_eps = 0;
		return 0;
	}
	se = calloc(1, sizeof(*se));
	if (!se) {
		model_slice_clear(s);
		return -ENOMEM;
	}
	memcpy(se->key, key, sizeof(key));
	se->slice = *s;
	se->slice.stale = false;
	s->eps = NULL;
	s->n_eps = 0;
	if (lh_table_insert(m->slices, se->key, se) < 0) {
		model_slice_clear(&se->slice);
		free(se);
		return -ENOMEM;
	}
	return 0;
}

size_t model_slice_refuse(struct model_slice *s, const struct shoal_addr *own, int n_own,
			  model_refused_fn refused, void *ctx)
{
	size_t removed = 0;
	int kept = 0;

	for (int i = 0; i < s->n_eps; i++) {
		struct model_endpoint *ep = &s->eps[i];
		const char *why = addr_endpoint_refusal(&ep->addr);

		for (int j = 0; !why && j < n_own; j++)
			if (!addr_is_zero(&own[j]) && addr_equal(&ep->addr, &own[j]))
				why = "the node's own";
		if (!why) {
			s->eps[kept++] = *ep;
			continue;
		}
		if (refused)
			refused(ctx, s, ep, why);
		model_endpoint_clear(ep);
		removed++;
	}
	s->n_eps = kept;
	return removed;
}

int model_del_slice(struct model *m, const char *ns, const char *name)
{
	char key[MODEL_MAX_KEY + 1];

	make_key(key, ns, name);
	return lh_table_delete(m->slices, key) == 0 ? 0 : -ENOENT;
}

/* p reports a node and an address of it. */
static bool pod_has_node(const struct model_pod *p)
{
	return p->node[0] && p->n_host > 0;
}

static bool node_host_same(const struct node_entry *ne, const struct model_pod *p)
{
	if (ne->n_host != p->n_host)
		return false;
	for (int i = 0; i < p->n_host; i++)
		if (!addr_equal(&ne->host[i], &p->host[i]))
			return false;
	return true;
}

/* pe's share of a node is what p says: the same node, at the same addresses. */
static bool pod_node_same(const struct pod_entry *pe, const struct model_pod *p)
{
	if (!pe->node || !pod_has_node(p))
		return !pe->node && !pod_has_node(p);
	return !strcmp(pe->node->name, p->node) && node_host_same(pe->node, p);
}

/* Drop pe's share of its node; the node goes with its last pod. */
static void pod_node_detach(struct model *m, struct pod_entry *pe)
{
	struct node_entry *ne = pe->node;

	if (!ne)
		return;
	pe->node = NULL;
	if (--ne->pods > 0)
		return;
	lh_table_delete(m->nodes, ne->name); /* frees ne */
	m->nodes_gen++;
}

/*
 * Give pe (which has none) a share of p's node, which takes p's
 * addresses (the last pod put wins). 0, or -ENOMEM (pe keeps none).
 */
static int pod_node_attach(struct model *m, struct pod_entry *pe, const struct model_pod *p)
{
	struct node_entry *ne;
	struct lh_entry *e;

	if (!pod_has_node(p))
		return 0;
	e = lh_table_lookup_entry(m->nodes, p->node);
	if (e) {
		ne = lh_entry_v(e);
	} else {
		size_t n = strlen(p->node) + 1;

		ne = calloc(1, sizeof(*ne) + n);
		if (!ne)
			return -ENOMEM;
		memcpy(ne->name, p->node, n);
		if (lh_table_insert(m->nodes, ne->name, ne) < 0) {
			free(ne);
			return -ENOMEM;
		}
		m->nodes_gen++;
	}
	if (!node_host_same(ne, p)) {
		memcpy(ne->host, p->host, sizeof(ne->host));
		ne->n_host = p->n_host;
		m->nodes_gen++;
	}
	ne->pods++;
	pe->node = ne;
	return 0;
}

/* Remove pod entry e, and its share of a node. */
static void pod_remove(struct model *m, struct lh_entry *e)
{
	pod_node_detach(m, lh_entry_v(e));
	lh_table_delete_entry(m->pods, e);
}

int model_put_pod(struct model *m, const struct model_pod *p)
{
	char key[MODEL_MAX_KEY + 1], ident[CONFIG_MAX_IDENTITY];
	size_t kl, ul, il;
	struct pod_entry *pe;
	struct lh_entry *e;

	if (p->finished) {
		/* A finished pod's endpoints are gone or going: nothing to name. */
		return model_del_pod(m, p->ns, p->name) == 0 ? 0 : 1;
	}
	make_key(key, p->ns, p->name);
	if ((size_t)snprintf(ident, sizeof(ident), "%s/%s", p->ns, p->service_account) >=
	    sizeof(ident))
		return -EINVAL;
	e = lh_table_lookup_entry(m->pods, key);
	if (e) {
		pe = lh_entry_v(e);
		if (!strcmp(pe->text + pe->uid_at, p->uid) &&
		    !strcmp(pe->text + pe->ident_at, ident)) {
			uint64_t gen = m->nodes_gen;
			int ret;

			pe->stale = false;
			if (pod_node_same(pe, p))
				return 1;
			/* The same pod on another node or address: the node may move. */
			pod_node_detach(m, pe);
			ret = pod_node_attach(m, pe, p);
			if (ret)
				return ret;
			return m->nodes_gen != gen ? 0 : 1;
		}
		pod_remove(m, e);
	} else if (lh_table_length(m->pods) >= MODEL_MAX_PODS) {
		return -ENOSPC;
	}
	kl = strlen(key) + 1;
	ul = strlen(p->uid) + 1;
	il = strlen(ident) + 1;
	pe = malloc(sizeof(*pe) + kl + ul + il);
	if (!pe)
		return -ENOMEM;
	pe->stale = false;
	pe->node = NULL;
	pe->uid_at = (uint16_t)kl;
	pe->ident_at = (uint16_t)(kl + ul);
	memcpy(pe->text, key, kl);
	memcpy(pe->text + kl, p->uid, ul);
	memcpy(pe->text + kl + ul, ident, il);
	if (lh_table_insert(m->pods, pe->text, pe) < 0) {
		free(pe);
		return -ENOMEM;
	}
	return pod_node_attach(m, pe, p);
}

int model_del_pod(struct model *m, const char *ns, const char *name)
{
	char key[MODEL_MAX_KEY + 1];
	struct lh_entry *e;

	make_key(key, ns, name);
	e = lh_table_lookup_entry(m->pods, key);
	if (!e)
		return -ENOENT;
	pod_remove(m, e);
	return 0;
}

size_t model_n_pods(const struct model *m)
{
	return (size_t)lh_table_length(m->pods);
}

size_t model_n_nodes(const struct model *m)
{
	return (size_t)lh_table_length(m->nodes);
}

int model_put_ns_mode(struct model *m, const char *ns, uint8_t mode)
{
	struct lh_entry *e = lh_table_lookup_entry(m->nss, ns);
	struct ns_entry *ne;
	size_t n;

	if (!mode)
		return model_del_ns(m, ns);
	if (e) {
		ne = lh_entry_v(e);
		ne->stale = false;
		if (ne->mode == mode)
			return 1;
		ne->mode = mode;
		return 0;
	}
	if (lh_table_length(m->nss) >= MODEL_MAX_NAMESPACES)
		return -ENOSPC;
	n = strlen(ns) + 1;
	ne = malloc(sizeof(*ne) + n);
	if (!ne)
		return -ENOMEM;
	ne->stale = false;
	ne->mode = mode;
	memcpy(ne->name, ns, n);
	if (lh_table_insert(m->nss, ne->name, ne) < 0) {
		free(ne);
		return -ENOMEM;
	}
	return 0;
}

int model_del_ns(struct model *m, const char *ns)
{
	return lh_table_delete(m->nss, ns) == 0 ? 0 : 1;
}

/* The mode ns's annotation asks for, 0 for none. */
static uint8_t ns_mode(const struct model *m, const char *ns)
{
	struct lh_entry *e = lh_table_lookup_entry(m->nss, ns);

	return e ? ((const struct ns_entry *)lh_entry_v(e))->mode : 0;
}

/* The identity of the pod ep's targetRef names, or NULL. */
static const char *pod_identity(const struct model *m, const struct model_endpoint *ep)
{
	const struct pod_entry *pe;
	struct lh_entry *e;

	if (!ep->pod || !(e = lh_table_lookup_entry(m->pods, ep->pod)))
		return NULL;
	pe = lh_entry_v(e);
	/* Same name, another pod (a StatefulSet's replacement): not yet its identity. */
	if (ep->pod_uid && strcmp(ep->pod_uid, pe->text + pe->uid_at))
		return NULL;
	return pe->text + pe->ident_at;
}

size_t model_n_services(const struct model *m)
{
	return (size_t)lh_table_length(m->services);
}

size_t model_n_slices(const struct model *m)
{
	return (size_t)lh_table_length(m->slices);
}

void model_mark(struct model *m, int kind)
{
	struct lh_entry *e;

	if (kind == 2) {
		lh_foreach(m->pods, e)((struct pod_entry *)lh_entry_v(e))->stale = true;
		return;
	}
	if (kind == 3) {
		lh_foreach(m->nss, e)((struct ns_entry *)lh_entry_v(e))->stale = true;
		return;
	}
	lh_foreach(kind ? m->slices : m->services, e)
	{
		if (kind)
			((struct slice_entry *)lh_entry_v(e))->slice.stale = true;
		else
			((struct svc_entry *)lh_entry_v(e))->svc.stale = true;
	}
}

size_t model_sweep(struct model *m, int kind)
{
	struct lh_table *t = kind == 3	 ? m->nss
			     : kind == 2 ? m->pods
			     : kind	 ? m->slices
					 : m->services;
	struct lh_entry *e, *tmp;
	size_t n = 0;

	lh_foreach_safe(t, e, tmp)
	{
		if (kind == 3) {
			if (!((struct ns_entry *)lh_entry_v(e))->stale)
				continue;
		} else if (kind == 2) {
			if (!((struct pod_entry *)lh_entry_v(e))->stale)
				continue;
			pod_node_detach(m, lh_entry_v(e));
		} else if (kind) {
			if (!((struct slice_entry *)lh_entry_v(e))->slice.stale)
				continue;
		} else {
			struct svc_entry *se = lh_entry_v(e);

			if (!se->svc.stale)
				continue;
			slot_free(m, se->svc.slot);
		}
		lh_table_delete_entry(t, e);
		n++;
	}
	return n;
}

/* ---- model_build ---- */

/* Room for an endpoint's zone and node in its service's string table. */
static size_t ep_strings_len(const struct config_endpoint *ep)
{
	return (ep->zone ? strlen(ep->zone) + 1 : 0) + (ep->node ? strlen(ep->node) + 1 : 0) +
	       (ep->identity ? strlen(ep->identity) + 1 : 0);
}

/* Append s to svc's string table (sized by the caller); NULL stays NULL. */
static const char *strings_add(struct config_service *svc, const char *s)
{
	char *at;
	size_t n;

	if (!s)
		return NULL;
	n = strlen(s) + 1;
	at = svc->strings + svc->strings_len;
	memcpy(at, s, n);
	svc->strings_len += n;
	return at;
}

/*
 * What the proxy learns about one endpoint. Its strings stay the
 * model's until build_publish copies them into the service.
 */
static void model_endpoint_to_config(const struct model *m, const struct model_endpoint *ep,
				     struct config_endpoint *ce)
{
	memset(ce, 0, sizeof(*ce));
	ce->addr = ep->addr;
	ce->ready = ep->ready;
	ce->serving = ep->serving;
	ce->terminating = ep->terminating;
	ce->zone = ep->zone;
	ce->node = ep->node;
	ce->identity = pod_identity(m, ep);
}

static bool str_same(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

/*
 * a (being built) says what b (published earlier) says, field by field:
 * everything model_build fills. Metrics ids are not compared (the proxy
 * derives them from the name).
 */
static bool svc_same(const struct config_service *a, const struct config_service *b)
{
	if (a->id != b->id || strcmp(a->name, b->name) || strcmp(a->namespace, b->namespace) ||
	    a->n_vips != b->n_vips || a->n_ports != b->n_ports ||
	    a->n_endpoints != b->n_endpoints || a->n_routes || b->n_routes ||
	    a->mtls_mode != b->mtls_mode ||
	    memcmp(&a->resilience, &b->resilience, sizeof(a->resilience)))
		return false;
	for (int i = 0; i < a->n_vips; i++)
		if (!addr_equal(&a->vips[i], &b->vips[i]))
			return false;
	for (int i = 0; i < a->n_ports; i++) {
		const struct config_port *x = &a->ports[i], *y = &b->ports[i];

		if (x->port != y->port || x->target_port != y->target_port ||
		    x->protocol != y->protocol || x->declared != y->declared)
			return false;
	}
	for (int i = 0; i < a->n_endpoints; i++) {
		const struct config_endpoint *x = &a->endpoints[i], *y = &b->endpoints[i];

		if (!addr_equal(&x->addr, &y->addr) || x->ready != y->ready ||
		    x->serving != y->serving || x->terminating != y->terminating ||
		    !str_same(x->zone, y->zone) || !str_same(x->node, y->node) ||
		    !str_same(x->identity, y->identity))
			return false;
	}
	return true;
}

/*
 * The service for sc (built in scratch space): prev when it says the
 * same (another reference to it), else a new one owning copies of sc's
 * endpoints and strings. NULL when memory is short.
 */
static struct config_service *build_publish(const struct config_service *sc,
					    const struct config_service *prev)
{
	size_t strings = 0, n_eps = sc->n_endpoints > 0 ? (size_t)sc->n_endpoints : 0;
	struct config_service *d;

	if (prev && svc_same(sc, prev)) {
		config_service_get(prev);
		return (struct config_service *)prev;
	}
	d = config_service_new(sc->id);
	if (!d)
		return NULL;
	*d = *sc;
	atomic_init(&d->refs, 1);
	d->serial = config_service_serial();
	d->endpoints = NULL;
	d->strings = NULL;
	d->strings_len = 0;
	d->n_endpoints = 0;
	for (int i = 0; i < sc->n_endpoints; i++)
		strings += ep_strings_len(&sc->endpoints[i]);
	if ((strings && !(d->strings = malloc(strings))) ||
	    (n_eps && !(d->endpoints = malloc(n_eps * sizeof(*d->endpoints))))) {
		config_service_put(d);
		return NULL;
	}
	for (int i = 0; i < sc->n_endpoints; i++) {
		d->endpoints[i] = sc->endpoints[i];
		d->endpoints[i].zone = strings_add(d, sc->endpoints[i].zone);
		d->endpoints[i].node = strings_add(d, sc->endpoints[i].node);
		d->endpoints[i].identity = strings_add(d, sc->endpoints[i].identity);
	}
	d->n_endpoints = sc->n_endpoints;
	return d;
}

/*
 * The (VIP, port) pairs claimed so far: open addressing over twice the
 * BPF map's capacity, so the table never fills before the map does.
 */
#define CLAIMS_SLOTS (2 * SHOAL_MAX_SERVICE_KEYS)

struct claim {
	struct shoal_addr vip;
	uint16_t port;
	bool used;
};

struct claims {
	struct claim *t;
	uint32_t n;
};

static uint32_t claim_hash(const struct shoal_addr *vip, uint16_t port)
{
	/* FNV-1a over the 16 address bytes and the port. */
	const uint8_t *b = (const uint8_t *)vip;
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < sizeof(*vip); i++)
		h = (h ^ b[i]) * 16777619u;
	h = (h ^ (port & 0xff)) * 16777619u;
	h = (h ^ (port >> 8)) * 16777619u;
	return h;
}

static struct claim *claim_find(struct claims *c, const struct shoal_addr *vip, uint16_t port)
{
	uint32_t i = claim_hash(vip, port) % CLAIMS_SLOTS;

	while (c->t[i].used && !(c->t[i].port == port && addr_equal(&c->t[i].vip, vip)))
		i = (i + 1) % CLAIMS_SLOTS;
	return &c->t[i];
}

/* True when any (VIP, port) of svc is taken, or the map would overflow. */
static bool claims_conflict(struct claims *c, const struct config_service *svc)
{
	if (c->n + (uint32_t)(svc->n_vips * svc->n_ports) > SHOAL_MAX_SERVICE_KEYS)
		return true;
	for (int v = 0; v < svc->n_vips; v++)
		for (int p = 0; p < svc->n_ports; p++)
			if (claim_find(c, &svc->vips[v], svc->ports[p].port)->used)
				return true;
	return false;
}

static void claims_add(struct claims *c, const struct config_service *svc)
{
	for (int v = 0; v < svc->n_vips; v++) {
		for (int p = 0; p < svc->n_ports; p++) {
			struct claim *cl = claim_find(c, &svc->vips[v], svc->ports[p].port);

			if (cl->used)
				continue;
			cl->vip = svc->vips[v];
			cl->port = svc->ports[p].port;
			cl->used = true;
			c->n++;
		}
	}
}

/* Slices grouped by service slot: a singly linked list through next[]. */
struct slice_index {
	const struct model_slice **slices;
	int *next;
	int *head; /* per slot, -1 when none */
	int n;
};

static void slice_index_free(struct slice_index *ix)
{
	free(ix->slices);
	free(ix->next);
	free(ix->head);
}

static int slice_index_build(const struct model *m, struct slice_index *ix)
{
	size_t n = model_n_slices(m) + 1;
	struct lh_entry *e;

	ix->n = 0;
	ix->slices = calloc(n, sizeof(*ix->slices));
	ix->next = calloc(n, sizeof(*ix->next));
	ix->head = malloc(MODEL_SLOTS * sizeof(*ix->head));
	if (!ix->slices || !ix->next || !ix->head) {
		slice_index_free(ix);
		return -ENOMEM;
	}
	for (int i = 0; i < MODEL_SLOTS; i++)
		ix->head[i] = -1;
	lh_foreach(m->slices, e)
	{
		const struct model_slice *s = &((struct slice_entry *)lh_entry_v(e))->slice;
		char key[MODEL_MAX_KEY + 1];
		struct lh_entry *se;
		uint32_t slot;

		if (!s->service[0])
			continue; /* not managed for a service: nothing points at it */
		make_key(key, s->ns, s->service);
		se = lh_table_lookup_entry(m->services, key);
		if (!se)
			continue; /* the slice arrived before its service, or outlives it */
		slot = ((struct svc_entry *)lh_entry_v(se))->svc.slot;
		ix->slices[ix->n] = s;
		ix->next[ix->n] = ix->head[slot];
		ix->head[slot] = ix->n;
		ix->n++;
	}
	return 0;
}

/* The slice's TCP port named name, or 0. */
static uint16_t slice_port(const struct model_slice *s, const char *name)
{
	for (int i = 0; i < s->n_ports; i++)
		if (s->ports[i].l4 == MODEL_L4_TCP && !strcmp(s->ports[i].name, name))
			return s->ports[i].port;
	return 0;
}

/* Port or target port is one of cfg's proxy.opaque_ports. */
static bool port_opaque(const struct config *cfg, const struct config_port *cp)
{
	for (int k = 0; k < cfg->n_opaque_ports; k++)
		if (cfg->opaque_ports[k] == cp->port || cfg->opaque_ports[k] == cp->target_port)
			return true;
	return false;
}

/*
 * Fill dst's ports from svc's TCP ports. A named target port takes the
 * number of the first slice that names it (0 when none does; the
 * endpoints are then all unresolved). A port without a protocol
 * (appProtocol and name say nothing, k8s_app_protocol) is detected,
 * except on cfg's opaque ports, as for the file's services. Returns the
 * port count.
 */
static int build_ports(const struct config *cfg, const struct model_service *svc,
		       const struct slice_index *ix, struct config_service *dst)
{
	int n = 0;

	for (int i = 0; i < svc->n_ports; i++) {
		const struct model_port *mp = &svc->ports[i];
		struct config_port *cp = &dst->ports[n];

		if (mp->l4 != MODEL_L4_TCP)
			continue; /* the datapath intercepts TCP only */
		cp->port = mp->port;
		cp->protocol = mp->app;
		cp->target_port = mp->target_port;
		for (int k = ix->head[svc->slot]; !cp->target_port && k >= 0; k = ix->next[k])
			cp->target_port = slice_port(ix->slices[k], mp->target_name);
		cp->declared = mp->app != CONFIG_PROTO_DETECT;
		if (!cp->declared && port_opaque(cfg, cp))
			cp->protocol = CONFIG_PROTO_TCP;
		/* Kernel mode only where the file's parser allows it: opaque TCP. */
		cp->mode = mp->kernel && cp->protocol == CONFIG_PROTO_TCP ? CONFIG_MODE_KERNEL
									   : CONFIG_MODE_PROXY;
		/* Translation only where the file's parser allows it: HTTP/2 ports. */
		cp->upstream = mp->http1_upstream && (cp->protocol == CONFIG_PROTO_H2C ||
						      cp->protocol == CONFIG_PROTO_DETECT)
				   ? CONFIG_UPSTREAM_HTTP1
				   : CONFIG_UPSTREAM_SAME;
		n++;
	}
	return n;
}

/* Every named port of svc resolves, in slice s, to the number dst chose. */
static bool slice_ports_agree(const struct model_service *svc, const struct model_slice *s,
			      const struct config_service *dst)
{
	int n = 0;

	for (int i = 0; i < svc->n_ports; i++) {
		const struct model_port *mp = &svc->ports[i];

		if (mp->l4 != MODEL_L4_TCP)
			continue;
		if (!mp->target_port && slice_port(s, mp->target_name) != dst->ports[n].target_port)
			return false;
		n++;
	}
	return true;
}

/* An endpoint the proxy may use: ready, or (fallback) serving while terminating. */
static bool ep_wanted(const struct model_endpoint *ep, bool fallback)
{
	return fallback ? ep->serving && ep->terminating : ep->ready;
}

/* Scratch space of one build: a service and its endpoints, reused. */
struct build_scratch {
	struct config_service svc;
	struct config_endpoint *eps;
	size_t cap;
};

/*
 * Fill dst's endpoints (in sc's scratch array) from the slices of svc.
 * Returns 0 or -ENOMEM; counts dropped endpoints into st.
 */
static int build_endpoints(const struct model *m, const struct model_service *svc,
			   const struct slice_index *ix, struct build_scratch *sc,
			   struct model_build_stats *st)
{
	struct config_service *dst = &sc->svc;
	bool any_ready = false, fallback;
	size_t n = 0, cap = 0;
	int k;

	for (k = ix->head[svc->slot]; k >= 0 && !any_ready; k = ix->next[k])
		for (int i = 0; i < ix->slices[k]->n_eps && !any_ready; i++)
			any_ready = ix->slices[k]->eps[i].ready;
	fallback = !any_ready;

	for (k = ix->head[svc->slot]; k >= 0; k = ix->next[k]) {
		const struct model_slice *s = ix->slices[k];
		bool agree = slice_ports_agree(svc, s, dst);

		for (int i = 0; i < s->n_eps; i++)
			if (ep_wanted(&s->eps[i], fallback))
				cap += agree;
	}
	if (cap > MODEL_MAX_SERVICE_ENDPOINTS)
		cap = MODEL_MAX_SERVICE_ENDPOINTS;
	if (cap > sc->cap) {
		void *grown = realloc(sc->eps, cap * sizeof(*sc->eps));

		if (!grown)
			return -ENOMEM;
		sc->eps = grown;
		sc->cap = cap;
	}
	dst->endpoints = sc->eps;
	for (k = ix->head[svc->slot]; k >= 0; k = ix->next[k]) {
		const struct model_slice *s = ix->slices[k];
		bool agree = slice_ports_agree(svc, s, dst);

		for (int i = 0; i < s->n_eps; i++) {
			const struct model_endpoint *ep = &s->eps[i];

			if (!ep_wanted(ep, fallback))
				continue;
			if (!agree) {
				st->endpoints_unresolved++;
				continue;
			}
			if (n == cap)
				continue; /* over MODEL_MAX_SERVICE_ENDPOINTS */
			model_endpoint_to_config(m, ep, &sc->eps[n]);
			st->endpoints_no_identity += ep->pod && !sc->eps[n].identity;
			n++;
		}
	}
	dst->n_endpoints = (int)n;
	st->endpoints += (uint32_t)n;
	return 0;
}

/*
 * Translate one model service into sc->svc (zeroed, id set). Leaves it
 * vacant (no VIP) when the service is not to be intercepted. Returns 0
 * or -ENOMEM.
 */
static int build_service(const struct model *m, const struct config *cfg,
			 const struct model_service *svc, const struct slice_index *ix,
			 struct claims *claims, struct build_scratch *sc,
			 struct model_build_stats *st)
{
	struct config_service *dst = &sc->svc;

	if (svc->headless) {
		st->skipped_headless++;
		return 0;
	}
	dst->n_ports = build_ports(cfg, svc, ix, dst);
	if (!dst->n_ports)
		return 0; /* UDP/SCTP only: nothing the datapath intercepts */
	memcpy(dst->vips, svc->vips, sizeof(dst->vips));
	dst->n_vips = svc->n_vips;
	if (claims_conflict(claims, dst)) {
		uint32_t id = dst->id;

		st->skipped_conflict++;
		memset(dst, 0, sizeof(*dst));
		dst->id = id;
		return 0;
	}
	claims_add(claims, dst);
	snprintf(dst->name, sizeof(dst->name), "%s", svc->name);
	snprintf(dst->namespace, sizeof(dst->namespace), "%s", svc->ns);
	{
		uint8_t by_ns = ns_mode(m, svc->ns);

		/* Both annotations only raise the file's mode: the stricter one. */
		dst->mtls_mode = svc->mtls_mode > by_ns ? svc->mtls_mode : by_ns;
	}
	st->services++;
	return build_endpoints(m, svc, ix, sc, st);
}

/* Scratch service sc, reset to a vacant id. */
static void scratch_reset(struct build_scratch *sc, uint32_t id)
{
	memset(&sc->svc, 0, sizeof(sc->svc));
	sc->svc.id = id;
}

/*
 * Publish sc as cfg->services[id]: the model's previous one for that id
 * when it did not change. 0 or -ENOMEM.
 */
static int build_put(struct model *m, struct config *cfg, int id, const struct build_scratch *sc)
{
	cfg->services[id] = build_publish(&sc->svc, id < m->n_built ? m->built[id] : NULL);
	return cfg->services[id] ? 0 : -ENOMEM;
}

/* Remember cfg's model services (ids from n_base) for the next build. */
static int model_built_keep(struct model *m, const struct config *cfg, int n_base)
{
	struct config_service **keep = NULL;
	int n = cfg->n_services;

	if (n && !(keep = calloc((size_t)n, sizeof(*keep))))
		return -ENOMEM;
	for (int i = n_base; i < n; i++) {
		config_service_get(cfg->services[i]);
		keep[i] = cfg->services[i];
	}
	model_built_drop(m);
	m->built = keep;
	m->n_built = n;
	return 0;
}

static int node_cmp(const void *a, const void *b)
{
	return strcmp(((const struct config_mtls_node *)a)->name,
		      ((const struct config_mtls_node *)b)->name);
}

/*
 * The nodes to publish with base (model.h, model_n_nodes): the last set
 * when nothing changed since, else a new one, kept in m. Sets *out to
 * the model's reference (NULL: no node known). 0 or -ENOMEM.
 */
static int nodes_publish(struct model *m, const struct config *base, struct config_nodes **out)
{
	bool v4 = !addr_is_zero(&base->proxy_v4), v6 = !addr_is_zero(&base->proxy_v6);
	struct config_nodes *set = NULL;
	struct lh_entry *e;
	int n = 0;

	if (m->nodes_built_valid && m->nodes_built_gen == m->nodes_gen && m->nodes_built_v4 == v4 &&
	    m->nodes_built_v6 == v6) {
		*out = m->nodes_built;
		return 0;
	}
	if (lh_table_length(m->nodes) > 0) {
		set = config_nodes_new(lh_table_length(m->nodes));
		if (!set)
			return -ENOMEM;
		lh_foreach(m->nodes, e)
		{
			const struct node_entry *ne = lh_entry_v(e);
			const struct shoal_addr *a = &ne->host[0];
			struct config_mtls_node *cn = &set->nodes[n];

			/* The peers listen where this node does (one DaemonSet). */
			if (ne->n_host > 1 && !(addr_is_v4(a) ? v4 : v6) &&
			    (addr_is_v4(&ne->host[1]) ? v4 : v6))
				a = &ne->host[1];
			if ((size_t)snprintf(cn->name, sizeof(cn->name), "%s", ne->name) >=
			    sizeof(cn->name))
				continue; /* cannot be: the decoder bounds names */
			cn->addr = *a;
			n++;
		}
		set->n = n;
		qsort(set->nodes, (size_t)n, sizeof(set->nodes[0]), node_cmp);
	}
	config_nodes_put(m->nodes_built);
	m->nodes_built = set;
	m->nodes_built_gen = m->nodes_gen;
	m->nodes_built_v4 = v4;
	m->nodes_built_v6 = v6;
	m->nodes_built_valid = true;
	*out = set;
	return 0;
}

int model_build(struct model *m, const struct config *base, struct config **out,
		struct model_build_stats *st)
{
	struct config_nodes *nodes;
	struct model_build_stats dummy;
	struct build_scratch sc = {0};
	struct claims claims = {0};
	struct slice_index ix = {0};
	struct config *cfg;
	struct lh_entry *e;
	int n_base = base->n_services, max_slot = -1, n_total, ret;
	void *grown;

	if (!st)
		st = &dummy;
	memset(st, 0, sizeof(*st));
	lh_foreach(m->services, e)
	{
		int slot = (int)((struct svc_entry *)lh_entry_v(e))->svc.slot;

		if (slot > max_slot)
			max_slot = slot;
	}
	/* Ids index BPF arrays of SHOAL_MAX_SERVICES entries: none beyond. */
	n_total = n_base + max_slot + 1;
	if (n_total > SHOAL_MAX_SERVICES)
		n_total = n_base > SHOAL_MAX_SERVICES ? n_base : SHOAL_MAX_SERVICES;
	/* base's own services are shared with it; the model's come below. */
	ret = nodes_publish(m, base, &nodes);
	if (ret)
		return ret;
	ret = config_copy(base, n_base, &cfg);
	if (ret)
		return ret;
	/* Next to base's mtls.nodes, which config_mtls_node asks first. */
	config_nodes_put(cfg->nodes_learned);
	cfg->nodes_learned = config_nodes_get(nodes);
	grown = n_total ? realloc(cfg->services, (size_t)n_total * sizeof(*cfg->services)) : NULL;
	if (n_total && !grown) {
		config_free(cfg);
		return -ENOMEM;
	}
	cfg->services = grown;
	/* NULL until built (config_free skips them on an error). */
	for (int i = n_base; i < n_total; i++)
		cfg->services[i] = NULL;
	cfg->n_services = n_total;
	claims.t = calloc(CLAIMS_SLOTS, sizeof(*claims.t));
	ret = claims.t ? slice_index_build(m, &ix) : -ENOMEM;
	if (ret)
		goto out;
	for (int i = 0; i < n_base; i++)
		claims_add(&claims, cfg->services[i]);
	lh_foreach(m->services, e)
	{
		const struct model_service *svc = &((struct svc_entry *)lh_entry_v(e))->svc;
		int id = n_base + (int)svc->slot;

		if (id >= n_total) {
			st->skipped_conflict++; /* no id left for it */
			continue;
		}
		scratch_reset(&sc, (uint32_t)id);
		ret = build_service(m, cfg, svc, &ix, &claims, &sc, st);
		if (!ret)
			ret = build_put(m, cfg, id, &sc);
		if (ret)
			goto out;
	}
	/* Ids no service holds: vacant entries, shared like the others. */
	for (int i = n_base; i < n_total && !ret; i++) {
		if (cfg->services[i])
			continue;
		scratch_reset(&sc, (uint32_t)i);
		ret = build_put(m, cfg, i, &sc);
	}
	if (!ret)
		ret = model_built_keep(m, cfg, n_base);
out:
	slice_index_free(&ix);
	free(claims.t);
	free(sc.eps);
	if (ret) {
		config_free(cfg);
		return ret;
	}
	*out = cfg;
	return 0;
}
