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

struct model {
	struct lh_table *services; /* key -> struct svc_entry */
	struct lh_table *slices;   /* key -> struct slice_entry */
	uint64_t slot_used[MODEL_SLOT_WORDS];
};

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
	if (!m->services || !m->slices) {
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
		free(ep->zone);
		free(ep->node);
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
	struct lh_table *t = kind ? m->slices : m->services;
	struct lh_entry *e, *tmp;
	size_t n = 0;

	lh_foreach_safe(t, e, tmp)
	{
		if (kind) {
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

/* Room for an endpoint's zone and node in the config's string table. */
static size_t ep_strings_len(const struct model_endpoint *ep)
{
	return (ep->zone ? strlen(ep->zone) + 1 : 0) + (ep->node ? strlen(ep->node) + 1 : 0);
}

/* Append s to cfg's string table (sized by the caller); NULL stays NULL. */
static const char *strings_add(struct config *cfg, const char *s)
{
	char *at;
	size_t n;

	if (!s)
		return NULL;
	n = strlen(s) + 1;
	at = cfg->strings + cfg->strings_len;
	memcpy(at, s, n);
	cfg->strings_len += n;
	return at;
}

/*
 * Make room for extra more bytes in cfg's string table, moving the
 * pointers of the endpoints that already point into it. 0 or -ENOMEM.
 */
static int strings_reserve(struct config *cfg, size_t extra)
{
	char *old = cfg->strings, *nw;

	if (!extra)
		return 0;
	nw = malloc(cfg->strings_len + extra);
	if (!nw)
		return -ENOMEM;
	if (old)
		memcpy(nw, old, cfg->strings_len);
	for (int i = 0; old && i < cfg->n_services; i++) {
		for (int e = 0; e < cfg->services[i].n_endpoints; e++) {
			struct config_endpoint *ce = &cfg->services[i].endpoints[e];

			if (ce->zone)
				ce->zone = nw + (ce->zone - old);
			if (ce->node)
				ce->node = nw + (ce->node - old);
		}
	}
	free(old);
	cfg->strings = nw;
	return 0;
}

/* What the proxy learns about one endpoint; its strings go into cfg's table. */
static void model_endpoint_to_config(struct config *cfg, const struct model_endpoint *ep,
				     struct config_endpoint *ce)
{
	memset(ce, 0, sizeof(*ce));
	ce->addr = ep->addr;
	ce->ready = ep->ready;
	ce->serving = ep->serving;
	ce->terminating = ep->terminating;
	ce->zone = strings_add(cfg, ep->zone);
	ce->node = strings_add(cfg, ep->node);
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
	size_t strings; /* zone and node bytes of every indexed endpoint */
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
	ix->strings = 0;
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
		for (int i = 0; i < s->n_eps; i++)
			ix->strings += ep_strings_len(&s->eps[i]);
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

/*
 * Fill dst's endpoints from the slices of svc. Returns 0 or -ENOMEM;
 * counts dropped endpoints into st.
 */
static int build_endpoints(struct config *cfg, const struct model_service *svc,
			   const struct slice_index *ix, struct config_service *dst,
			   struct model_build_stats *st)
{
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
	if (cap) {
		dst->endpoints = calloc(cap, sizeof(*dst->endpoints));
		if (!dst->endpoints)
			return -ENOMEM;
	}
	for (k = ix->head[svc->slot]; k >= 0; k = ix->next[k]) {
		const struct model_slice *s = ix->slices[k];
		bool agree = slice_ports_agree(svc, s, dst);

		for (int i = 0; i < s->n_eps; i++) {
			const struct model_endpoint *ep = &s->eps[i];
			struct config_endpoint *ce;

			if (!ep_wanted(ep, fallback))
				continue;
			if (!agree) {
				st->endpoints_unresolved++;
				continue;
			}
			if (n == cap)
				continue; /* over MODEL_MAX_SERVICE_ENDPOINTS */
			ce = &dst->endpoints[n++];
			model_endpoint_to_config(cfg, ep, ce);
		}
	}
	dst->n_endpoints = (int)n;
	st->endpoints += (uint32_t)n;
	return 0;
}

/*
 * Translate one model service into dst (zeroed). Leaves dst vacant (no
 * VIP) when the service is not to be intercepted. Returns 0 or -ENOMEM.
 */
static int build_service(struct config *cfg, const struct model_service *svc,
			 const struct slice_index *ix, struct claims *claims,
			 struct config_service *dst, struct model_build_stats *st)
{
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
	st->services++;
	return build_endpoints(cfg, svc, ix, dst, st);
}

int model_build(const struct model *m, const struct config *base, struct config **out,
		struct model_build_stats *st)
{
	struct model_build_stats dummy;
	struct claims claims = {0};
	struct slice_index ix;
	struct config *cfg;
	struct lh_entry *e;
	int n_base = base->n_services, max_slot = -1, n_total, ret;

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
	ret = config_copy(base, n_total, &cfg);
	if (ret)
		return ret;
	claims.t = calloc(CLAIMS_SLOTS, sizeof(*claims.t));
	ret = claims.t ? slice_index_build(m, &ix) : -ENOMEM;
	if (ret) {
		free(claims.t);
		config_free(cfg);
		return ret;
	}
	ret = strings_reserve(cfg, ix.strings);
	if (ret) {
		slice_index_free(&ix);
		free(claims.t);
		config_free(cfg);
		return ret;
	}
	for (int i = 0; i < n_base; i++)
		claims_add(&claims, &cfg->services[i]);
	for (int i = n_base; i < cfg->n_services; i++)
		cfg->services[i].id = (uint32_t)i;
	lh_foreach(m->services, e)
	{
		const struct model_service *svc = &((struct svc_entry *)lh_entry_v(e))->svc;

		if (n_base + (int)svc->slot >= n_total) {
			st->skipped_conflict++; /* no id left for it */
			continue;
		}
		ret = build_service(cfg, svc, &ix, &claims, &cfg->services[n_base + svc->slot], st);
		if (ret)
			break;
	}
	slice_index_free(&ix);
	free(claims.t);
	if (ret) {
		config_free(cfg);
		return ret;
	}
	*out = cfg;
	return 0;
}
