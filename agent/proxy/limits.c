// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "proxy/limits.h"

#include <errno.h>
#include <string.h>

#include "proxy/proxy_stats.h"

bool limits_mem_charge(struct limits_mem *m, size_t bytes)
{
	return limits_mem_charge_over(m, bytes, 0);
}

bool limits_mem_charge_over(struct limits_mem *m, size_t bytes, uint64_t over)
{
	uint64_t used;

	if (!m->budget) {
		atomic_fetch_add_explicit(&m->used, bytes, memory_order_relaxed);
		return true;
	}
	used = atomic_load_explicit(&m->used, memory_order_relaxed);
	do {
		if (used + bytes > m->budget + over)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(
	    &m->used, &used, used + bytes, memory_order_relaxed, memory_order_relaxed));
	return true;
}

void limits_mem_uncharge(struct limits_mem *m, size_t bytes)
{
	atomic_fetch_sub_explicit(&m->used, bytes, memory_order_relaxed);
}

bool limits_mem_room(struct limits_mem *m, size_t bytes)
{
	return !m->budget ||
	       atomic_load_explicit(&m->used, memory_order_relaxed) + bytes <= m->budget;
}

int limits_clients_init(struct limits_clients *t, uint32_t cap)
{
	int err = pthread_mutex_init(&t->lock, NULL);

	if (err)
		return -err;
	t->cap = cap;
	for (int i = 0; i < LIMITS_CLIENT_BUCKETS; i++)
		t->buckets[i] = -1;
	for (int i = 0; i < LIMITS_CLIENTS_MAX; i++)
		t->entries[i].next = i + 1 < LIMITS_CLIENTS_MAX ? i + 1 : -1;
	t->free = 0;
	return 0;
}

void limits_clients_fini(struct limits_clients *t)
{
	pthread_mutex_destroy(&t->lock);
}

/* FNV-1a over the address: cheap, and the table's keys are not chosen
 * by an attacker who could aim at one bucket (they are pod addresses). */
static uint32_t limits_hash(const struct shoal_addr *a)
{
	const unsigned char *p = (const unsigned char *)a;
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < sizeof(*a); i++)
		h = (h ^ p[i]) * 16777619u;
	return h & (LIMITS_CLIENT_BUCKETS - 1);
}

/* The link that points at addr's entry (or at -1 where it would go). Lock held. */
static int32_t *limits_find(struct limits_clients *t, const struct shoal_addr *addr)
{
	int32_t *link = &t->buckets[limits_hash(addr)];

	while (*link >= 0 && memcmp(&t->entries[*link].addr, addr, sizeof(*addr)))
		link = &t->entries[*link].next;
	return link;
}

int limits_client_enter(struct limits_clients *t, const struct shoal_addr *addr)
{
	int32_t *link;
	int ret = 1;

	if (!t->cap)
		return 0;
	pthread_mutex_lock(&t->lock);
	link = limits_find(t, addr);
	if (*link >= 0) {
		struct limits_client *e = &t->entries[*link];

		if (e->conns >= t->cap)
			ret = -EBUSY;
		else
			e->conns++;
	} else if (t->free < 0) {
		ret = 0;
	} else {
		int32_t i = t->free;
		struct limits_client *e = &t->entries[i];

		t->free = e->next;
		e->addr = *addr;
		e->conns = 1;
		e->next = -1;
		*link = i;
	}
	pthread_mutex_unlock(&t->lock);
	return ret;
}

void limits_client_leave(struct limits_clients *t, const struct shoal_addr *addr)
{
	int32_t *link;

	pthread_mutex_lock(&t->lock);
	link = limits_find(t, addr);
	if (*link >= 0) {
		int32_t i = *link;
		struct limits_client *e = &t->entries[i];

		if (--e->conns == 0) {
			*link = e->next;
			e->next = t->free;
			t->free = i;
		}
	}
	pthread_mutex_unlock(&t->lock);
}

uint32_t limits_client_conns(struct limits_clients *t, const struct shoal_addr *addr)
{
	uint32_t n = 0;
	int32_t *link;

	pthread_mutex_lock(&t->lock);
	link = limits_find(t, addr);
	if (*link >= 0)
		n = t->entries[*link].conns;
	pthread_mutex_unlock(&t->lock);
	return n;
}

/* The names of the caps (proxy.h, PROXY_CAPS), here with the budgets they bound. */
const char *proxy_cap_name(enum proxy_cap cap)
{
	static const char *const names[] = {
#define PROXY_CAP_NAME(id, knob) [PROXY_CAP_##id] = #id,
	    PROXY_CAPS(PROXY_CAP_NAME)
#undef PROXY_CAP_NAME
	};

	return cap < PROXY_CAP__COUNT ? names[cap] : "unknown";
}

const char *proxy_cap_knob(enum proxy_cap cap)
{
	static const char *const knobs[] = {
#define PROXY_CAP_KNOB(id, knob) [PROXY_CAP_##id] = knob,
	    PROXY_CAPS(PROXY_CAP_KNOB)
#undef PROXY_CAP_KNOB
	};

	return cap < PROXY_CAP__COUNT ? knobs[cap] : "unknown";
}
