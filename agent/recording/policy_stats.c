// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "recording/policy_stats.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BUMP(field, v) __atomic_store_n(&(field), (field) + (v), __ATOMIC_RELAXED)
#define LOAD(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)

struct policy_stats *policy_stats_new(void)
{
	struct policy_stats *t = calloc(1, sizeof(*t));

	if (t && pthread_mutex_init(&t->lock, NULL)) {
		free(t);
		return NULL;
	}
	return t;
}

void policy_stats_free(struct policy_stats *t)
{
	if (!t)
		return;
	pthread_mutex_destroy(&t->lock);
	free(t);
}

/* FNV-1a over s, continuing from h; NUL-terminated fields keep "a"+"bc" apart from "ab"+"c". */
static uint64_t fnv(uint64_t h, const char *s)
{
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
	return (h ^ 0xff) * 0x100000001b3ULL;
}

static void copy(char *dst, size_t cap, const char *src, size_t len)
{
	if (len >= cap)
		len = cap - 1;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

/*
 * The slot of d's series, added when new (*added); POLICY_STATS_MAX_SERIES
 * when POLICY_STATS_MAX_PROBE slots from its hash are other series'.
 */
static uint32_t series_find(struct policy_stats *t, const struct policy_stats_decision *d,
			    bool *added)
{
	char ns[POLICY_STATS_LABEL_MAX], svc[POLICY_STATS_LABEL_MAX], pol[POLICY_STATS_NAME_MAX];
	uint64_t key;

	/* Compared as stored: a long name matches its own truncation. */
	copy(ns, sizeof(ns), d->ns, strlen(d->ns));
	copy(svc, sizeof(svc), d->service, strlen(d->service));
	copy(pol, sizeof(pol), d->reason, strlen(d->reason));
	key = fnv(fnv(fnv(0xcbf29ce484222325ULL, ns), svc), pol) ^ d->allow;
	key |= 1;
	*added = false;
	for (uint32_t i = 0; i < POLICY_STATS_MAX_PROBE; i++) {
		uint32_t slot = (uint32_t)(key >> 17 ^ key) % POLICY_STATS_MAX_SERIES;
		struct policy_stats_series *s;

		slot = (slot + i) % POLICY_STATS_MAX_SERIES;
		s = &t->series[slot];
		if (!s->key) {
			s->allow = d->allow;
			memcpy(s->ns, ns, sizeof(ns));
			memcpy(s->service, svc, sizeof(svc));
			memcpy(s->policy, pol, sizeof(pol));
			__atomic_store_n(&s->key, key, __ATOMIC_RELEASE);
			*added = true;
			return slot;
		}
		if (s->key == key && s->allow == d->allow && !strcmp(s->ns, ns) &&
		    !strcmp(s->service, svc) && !strcmp(s->policy, pol))
			return slot;
	}
	return POLICY_STATS_MAX_SERIES;
}

static void event_keep(struct policy_stats *t, const struct policy_stats_decision *d)
{
	struct timespec ts;
	struct policy_event *e;

	clock_gettime(CLOCK_REALTIME, &ts);
	pthread_mutex_lock(&t->lock);
	e = &t->events[t->n_events++ % POLICY_EVENTS_MAX];
	e->time_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	e->seq = t->decisions;
	copy(e->caller, sizeof(e->caller), d->caller ? d->caller : "",
	     d->caller ? strlen(d->caller) : 0);
	copy(e->ns, sizeof(e->ns), d->ns, strlen(d->ns));
	copy(e->service, sizeof(e->service), d->service, strlen(d->service));
	e->port = d->port;
	copy(e->method, sizeof(e->method), d->method ? d->method : "",
	     d->method ? d->method_len : 0);
	copy(e->path, sizeof(e->path), d->path ? d->path : "", d->path ? d->path_len : 0);
	e->allow = d->allow;
	copy(e->reason, sizeof(e->reason), d->reason, strlen(d->reason));
	pthread_mutex_unlock(&t->lock);
}

void policy_stats_record(struct policy_stats *t, const struct policy_stats_decision *d)
{
	uintptr_t h;
	struct policy_stats_cache *c;
	uint32_t slot;
	bool added = false;

	if (!t)
		return;
	t->decisions++;
	h = ((uintptr_t)d->reason >> 3) ^ (uintptr_t)d->svc * 0x9e3779b9u ^ d->allow;
	c = &t->cache[h & (POLICY_STATS_CACHE - 1)];
	if (d->serial && d->svc && c->serial == d->serial && c->svc == d->svc &&
	    c->reason == d->reason && c->allow == d->allow) {
		slot = c->slot;
	} else {
		slot = series_find(t, d, &added);
		if (d->serial && d->svc)
			*c = (struct policy_stats_cache){.serial = d->serial,
							 .reason = d->reason,
							 .svc = d->svc,
							 .slot = slot,
							 .allow = d->allow};
	}
	if (slot < POLICY_STATS_MAX_SERIES)
		BUMP(t->series[slot].count, 1);
	else
		BUMP(t->overflow[d->allow], 1);
	if (d->allow && !added && ++t->allows_unsampled < POLICY_EVENTS_ALLOW_EVERY)
		return;
	if (d->allow)
		t->allows_unsampled = 0;
	event_keep(t, d);
}

/* ---- read side ---------------------------------------------------------- */

static int row_cmp(const void *a, const void *b)
{
	const struct policy_stats_row *x = a, *y = b;
	int c = strcmp(x->ns, y->ns);

	if (!c)
		c = strcmp(x->service, y->service);
	if (!c)
		c = strcmp(x->policy, y->policy);
	return c ? c : (int)x->allow - (int)y->allow;
}

static int event_cmp(const void *a, const void *b)
{
	const struct policy_event *x = a, *y = b;

	/* Newest first. */
	if (x->time_ms != y->time_ms)
		return x->time_ms < y->time_ms ? 1 : -1;
	return (x->seq < y->seq) - (x->seq > y->seq);
}

int policy_stats_snapshot(struct policy_stats *const *t, size_t n,
			  struct policy_stats_snapshot *out)
{
	size_t n_rows = 0, n_ev = 0;

	memset(out, 0, sizeof(*out));
	out->rows = calloc(n * POLICY_STATS_MAX_SERIES + 1, sizeof(*out->rows));
	out->events = calloc(n * POLICY_EVENTS_MAX + 1, sizeof(*out->events));
	if (!out->rows || !out->events) {
		policy_stats_snapshot_free(out);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		if (!t[i])
			continue;
		for (int a = 0; a < 2; a++)
			out->overflow[a] += LOAD(t[i]->overflow[a]);
		for (uint32_t k = 0; k < POLICY_STATS_MAX_SERIES; k++) {
			const struct policy_stats_series *s = &t[i]->series[k];
			struct policy_stats_row *r = &out->rows[n_rows];

			if (!__atomic_load_n(&s->key, __ATOMIC_ACQUIRE))
				continue;
			memcpy(r->ns, s->ns, sizeof(r->ns));
			memcpy(r->service, s->service, sizeof(r->service));
			memcpy(r->policy, s->policy, sizeof(r->policy));
			r->allow = s->allow;
			r->count = LOAD(s->count);
			n_rows++;
		}
		pthread_mutex_lock(&t[i]->lock);
		uint64_t have =
		    t[i]->n_events < POLICY_EVENTS_MAX ? t[i]->n_events : POLICY_EVENTS_MAX;

		memcpy(&out->events[n_ev], t[i]->events, (size_t)have * sizeof(*out->events));
		n_ev += (size_t)have;
		pthread_mutex_unlock(&t[i]->lock);
	}
	/* Merge one series of several workers into one row. */
	qsort(out->rows, n_rows, sizeof(*out->rows), row_cmp);
	size_t w = 0;

	for (size_t i = 0; i < n_rows; i++) {
		if (w && !row_cmp(&out->rows[w - 1], &out->rows[i]))
			out->rows[w - 1].count += out->rows[i].count;
		else if (w++ != i)
			out->rows[w - 1] = out->rows[i];
	}
	out->n_rows = w;
	qsort(out->events, n_ev, sizeof(*out->events), event_cmp);
	out->n_events = n_ev < POLICY_EVENTS_MAX ? n_ev : POLICY_EVENTS_MAX;
	return 0;
}

void policy_stats_snapshot_free(struct policy_stats_snapshot *s)
{
	free(s->rows);
	free(s->events);
	memset(s, 0, sizeof(*s));
}
