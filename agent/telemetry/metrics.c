// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "telemetry/metrics.h"

#include <bpf/bpf.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loader/pins.h"
#include "proxy/proxy.h"
#include "telemetry/kernel_counters.h"

#ifndef SHOAL_VERSION
#define SHOAL_VERSION "unknown"
#endif

/* First allocation of the output; a scrape of a small node fits. */
#define METRICS_BUF_INITIAL 16384

enum metric_id {
#define METRIC_ID(id, name, type, labels, help) METRIC_##id,
	SHOAL_METRICS(METRIC_ID)
#undef METRIC_ID
	METRIC_COUNT
};

struct metric_family {
	const char *name, *type, *labels, *help;
};

static const struct metric_family families[METRIC_COUNT] = {
#define METRIC_FAMILY(id, name, type, labels, help) [METRIC_##id] = { name, type, labels, help },
	SHOAL_METRICS(METRIC_FAMILY)
#undef METRIC_FAMILY
};

void metrics_buf_free(struct metrics_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

static void __attribute__((format(printf, 2, 3))) out(struct metrics_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		size_t room = b->cap - b->len;

		if (b->failed)
			return;
		va_start(ap, fmt);
		n = vsnprintf(b->data ? b->data + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->failed = true;
			return;
		}
		if ((size_t)n < room) {
			b->len += n;
			return;
		}
		size_t cap = b->cap ? b->cap : METRICS_BUF_INITIAL;

		while (cap - b->len <= (size_t)n)
			cap *= 2;
		char *grown = realloc(b->data, cap);

		if (!grown) {
			b->failed = true;
			return;
		}
		b->data = grown;
		b->cap = cap;
	}
}

static void family_header(struct metrics_buf *b, const char *name, const char *type,
			  const char *help)
{
	out(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void header(struct metrics_buf *b, enum metric_id id)
{
	family_header(b, families[id].name, families[id].type, families[id].help);
}

/* name{label="value"} v, with the value escaped as the text format requires. */
static void sample_labeled(struct metrics_buf *b, enum metric_id id, const char *value,
			   unsigned long long v)
{
	out(b, "%s{%s=\"", families[id].name, families[id].labels);
	for (const char *c = value; *c; c++) {
		if (*c == '\\' || *c == '"')
			out(b, "\\%c", *c);
		else if (*c == '\n')
			out(b, "\\n");
		else
			out(b, "%c", *c);
	}
	out(b, "\"} %llu\n", v);
}

/* The kernel's totals, and per service from shoal_svc_stats. */
static bool render_kernel(const struct metrics_sources *src, struct metrics_buf *b)
{
	struct shoal_counters sum;
	bool up = src->pin_root && pins_read_counters(src->pin_root, &sum) == 0;

#define KERNEL_COUNTER(field, help)                                                                \
	family_header(b, "shoal_datapath_" #field "_total", "counter", help);                      \
	if (up)                                                                                     \
		out(b, "shoal_datapath_" #field "_total %llu\n", (unsigned long long)sum.field);
	SHOAL_KERNEL_COUNTERS(KERNEL_COUNTER)
#undef KERNEL_COUNTER

	header(b, METRIC_SVC_INTERCEPTED);
	header(b, METRIC_SVC_FAILED_OPEN);
	if (!up)
		return false;
	/* Families must not interleave: collect, then print one after the other. */
	struct metrics_buf failed_open = {};
	int names_fd = pins_open_map(src->pin_root, "shoal_svc_names");
	int stats_fd = pins_open_map(src->pin_root, "shoal_svc_stats");
	__u32 id, next;
	bool walking = false;

	while (names_fd >= 0 && stats_fd >= 0 &&
	       bpf_map_get_next_key(names_fd, walking ? &id : NULL, &next) == 0) {
		struct shoal_svc_name name = {};
		struct shoal_svc_stats st;

		id = next;
		walking = true;
		if (bpf_map_lookup_elem(names_fd, &id, &name) < 0 ||
		    pins_read_svc_stats(stats_fd, id, &st) < 0)
			continue;
		name.name[sizeof(name.name) - 1] = '\0';
		sample_labeled(b, METRIC_SVC_INTERCEPTED, name.name, st.intercepted);
		sample_labeled(&failed_open, METRIC_SVC_FAILED_OPEN, name.name, st.failed_open);
	}
	if (failed_open.len)
		out(b, "%.*s", (int)failed_open.len, failed_open.data);
	b->failed |= failed_open.failed;
	metrics_buf_free(&failed_open);
	if (names_fd >= 0)
		close(names_fd);
	if (stats_fd >= 0)
		close(stats_fd);
	return true;
}

static void render_proxy(const struct metrics_sources *src, struct metrics_buf *b)
{
	struct proxy_stats st = {};

	if (src->proxy)
		proxy_stats(src->proxy, &st);
#define PROXY_FAMILY(field, kind, help)                                                            \
	{                                                                                           \
		const char *suffix = !strcmp(#kind, "counter") ? "_total" : "";                     \
		out(b, "# HELP shoal_proxy_" #field "%s %s\n# TYPE shoal_proxy_" #field "%s %s\n", \
		    suffix, help, suffix, #kind);                                                   \
		if (src->proxy)                                                                     \
			out(b, "shoal_proxy_" #field "%s %llu\n", suffix,                           \
			    (unsigned long long)st.field);                                          \
	}
	PROXY_STATS(PROXY_FAMILY)
#undef PROXY_FAMILY
}

static unsigned long count_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	unsigned long n = 0;

	if (!d)
		return 0;
	while (readdir(d))
		n++;
	closedir(d);
	return n > 3 ? n - 3 : 0; /* ".", ".." and the DIR's own fd */
}

static unsigned long long resident_bytes(void)
{
	unsigned long long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "re");

	if (f) {
		if (fscanf(f, "%llu %llu", &pages, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return rss * (unsigned long long)sysconf(_SC_PAGESIZE);
}

int metrics_render(const struct metrics_sources *src, struct metrics_buf *b)
{
	bool up = render_kernel(src, b);

	header(b, METRIC_DATAPATH_UP);
	out(b, "%s %d\n", families[METRIC_DATAPATH_UP].name, up);
	render_proxy(src, b);
	header(b, METRIC_PROCESS_OPEN_FDS);
	out(b, "%s %lu\n", families[METRIC_PROCESS_OPEN_FDS].name, count_open_fds());
	header(b, METRIC_PROCESS_RSS);
	out(b, "%s %llu\n", families[METRIC_PROCESS_RSS].name, resident_bytes());
	header(b, METRIC_PROCESS_START);
	out(b, "%s %.3f\n", families[METRIC_PROCESS_START].name, src->start_time);
	header(b, METRIC_BUILD_INFO);
	sample_labeled(b, METRIC_BUILD_INFO, SHOAL_VERSION, 1);
	return b->failed ? -ENOMEM : 0;
}

void metrics_print_docs(void)
{
	printf("| metric | type | labels | meaning |\n|---|---|---|---|\n");
#define DOC_KERNEL(field, help)                                                                    \
	printf("| `shoal_datapath_" #field "_total` | counter | | %s (BPF map `shoal_counters`, " \
	       "field `" #field "`) |\n",                                                          \
	       help);
	SHOAL_KERNEL_COUNTERS(DOC_KERNEL)
#undef DOC_KERNEL
#define DOC_PROXY(field, kind, help)                                                               \
	printf("| `shoal_proxy_" #field "%s` | " #kind " | | %s |\n",                              \
	       !strcmp(#kind, "counter") ? "_total" : "", help);
	PROXY_STATS(DOC_PROXY)
#undef DOC_PROXY
	for (int i = 0; i < METRIC_COUNT; i++)
		printf("| `%s` | %s | %s | %s |\n", families[i].name, families[i].type,
		       families[i].labels[0] ? families[i].labels : "", families[i].help);
}
