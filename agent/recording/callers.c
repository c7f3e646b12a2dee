// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "recording/callers.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define BUMP(field, v) __atomic_store_n(&(field), (field) + (v), __ATOMIC_RELAXED)
#define LOAD(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)

struct callers_table *callers_table_new(void)
{
	struct callers_table *t = calloc(1, sizeof(*t));

	if (t) {
		strcpy(t->names[CALLERS_OTHER], CALLERS_OTHER_NAME);
		t->n_names = 1;
	}
	return t;
}

void callers_table_free(struct callers_table *t)
{
	free(t);
}

uint32_t callers_intern(struct callers_table *t, const char *name)
{
	char key[CALLERS_NAME_MAX];
	uint32_t n;

	if (!t)
		return CALLERS_OTHER;
	/* Compared as stored: a long name matches its own truncation. */
	strncpy(key, name, sizeof(key) - 1);
	key[sizeof(key) - 1] = '\0';
	n = t->n_names;
	for (uint32_t i = 1; i < n; i++)
		if (!strcmp(t->names[i], key))
			return i;
	if (n > CALLERS_MAX || !strcmp(key, CALLERS_OTHER_NAME)) {
		if (n > CALLERS_MAX)
			BUMP(t->other_conns, 1);
		return CALLERS_OTHER;
	}
	memcpy(t->names[n], key, sizeof(key));
	__atomic_store_n(&t->n_names, n + 1, __ATOMIC_RELEASE);
	return n;
}

void callers_record(struct callers_table *t, uint32_t caller, uint32_t svc, unsigned int status)
{
	uint64_t key = ((uint64_t)caller << 32 | svc) + 1;
	/* Fibonacci hashing spreads the few callers and services over the table. */
	uint32_t h = (uint32_t)((key * 0x9e3779b97f4a7c15ULL) >> 32);

	if (!t)
		return;
	for (uint32_t i = 0; i < CALLERS_MAX_PROBE; i++) {
		struct callers_edge *e = &t->edges[(h + i) & (CALLERS_MAX_EDGES - 1)];

		if (e->key && e->key != key)
			continue;
		if (!e->key)
			__atomic_store_n(&e->key, key, __ATOMIC_RELEASE);
		BUMP(e->requests, 1);
		if (status >= 500)
			BUMP(e->errors, 1);
		return;
	}
	BUMP(t->overflow, 1);
}

static int row_cmp(const void *a, const void *b)
{
	const struct callers_row *x = a, *y = b;
	int c = strcmp(x->caller, y->caller);

	return c ? c : (x->svc > y->svc) - (x->svc < y->svc);
}

int callers_snapshot(struct callers_table *const *t, size_t n, struct callers_snapshot *out)
{
	size_t cap = 0, k = 0;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < n; i++)
		if (t[i])
			cap += CALLERS_MAX_EDGES;
	out->rows = malloc((cap ? cap : 1) * sizeof(*out->rows));
	if (!out->rows)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const struct callers_table *tb = t[i];
		uint32_t names;

		if (!tb)
			continue;
		out->overflow += LOAD(tb->overflow);
		out->other_conns += LOAD(tb->other_conns);
		names = __atomic_load_n(&tb->n_names, __ATOMIC_ACQUIRE);
		for (uint32_t s = 0; s < CALLERS_MAX_EDGES; s++) {
			const struct callers_edge *e = &tb->edges[s];
			uint64_t key = __atomic_load_n(&e->key, __ATOMIC_ACQUIRE);
			uint32_t caller = (uint32_t)((key - 1) >> 32);
			struct callers_row *r = &out->rows[k];

			/* A key is stored after its caller's name: names covers it, but check. */
			if (!key || caller >= names)
				continue;
			memcpy(r->caller, tb->names[caller], CALLERS_NAME_MAX);
			r->svc = (uint32_t)(key - 1);
			r->requests = LOAD(e->requests);
			r->errors = LOAD(e->errors);
			k++;
		}
	}
	qsort(out->rows, k, sizeof(*out->rows), row_cmp);
	/* Sum the copies of one pair (several workers) in place. */
	for (size_t i = 0; i < k; i++) {
		struct callers_row *last = out->n_rows ? &out->rows[out->n_rows - 1] : NULL;

		if (last && !row_cmp(last, &out->rows[i])) {
			last->requests += out->rows[i].requests;
			last->errors += out->rows[i].errors;
		} else {
			out->rows[out->n_rows++] = out->rows[i];
		}
	}
	return 0;
}

void callers_snapshot_free(struct callers_snapshot *s)
{
	free(s->rows);
	s->rows = NULL;
	s->n_rows = 0;
}
