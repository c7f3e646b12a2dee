// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The two sources and the one desired state.
 *
 * File: inotify watches the file's DIRECTORY, not the file. Editors save
 * by writing a new file and renaming it over the old one, and a
 * Kubernetes ConfigMap volume swaps a "..data" symlink; a watch on the
 * file itself would follow the old inode and miss both. Any completed
 * write or rename in the directory makes us re-read the file; a file
 * whose bytes did not change is ignored, so unrelated files in the same
 * directory cost one read and nothing else.
 *
 * Kubernetes: k8s.c keeps a model up to date on its own threads and
 * rings an eventfd. Events that arrive while a build runs are coalesced
 * into the next build: the main loop never queues more than one.
 */
#include "discovery/discovery.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "discovery/k8s_pods.h"
#include "discovery/k8s_policy.h"
#include "policy/policy.h"

/* inotify events read per read(): the kernel queues up to 16384. */
#define DISCOVERY_INOTIFY_BUF (64 * (sizeof(struct inotify_event) + NAME_MAX + 1))
/* What in the directory means "the file may have new contents". */
#define DISCOVERY_INOTIFY_MASK (IN_CLOSE_WRITE | IN_MOVED_TO | IN_ATTRIB)

struct discovery {
	const struct config *running;
	struct config
	    *file_start; /* the file as parsed at start, before any command-line override */
	char path[PATH_MAX];
	int epfd;
	int inotify_fd;
	int notify_fd; /* eventfd rung by the Kubernetes watcher */

	struct config *base; /* last good file config, as running would apply it */
	char *text;	     /* the bytes base (or the last rejected edit) came from */
	size_t text_len;

	struct model *model; /* NULL without Kubernetes */
	pthread_mutex_t model_lock;
	struct k8s_watcher *k8s;
	/* Pods behind endpoints (k8s_pods.h), when mtls is on: their identities. */
	struct k8s_pods pods;
	struct k8s_watcher *k8s_pods;

	/* Authorization policy from Kubernetes (k8s_policy.h), merged with the file's. */
	struct k8s_policy_store *policy_store; /* NULL: not watched */
	struct k8s_watcher *k8s_policy;
	uint64_t policy_gen;		/* of the store, when merged; UINT64_MAX: never */
	struct policy_set *policy_file; /* of the base, when merged (a reference) */
	struct policy_set *policy;	/* the last good merge, or NULL */

	struct discovery_stats st;
};

/*
 * Read the whole file (at most CONFIG_MAX_FILE_BYTES + 1, so that the
 * parser reports an oversized file itself). Returns 0 with a heap buffer,
 * or -errno.
 */
static int read_file(const char *path, char **out, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int ret = 0;

	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t r;

		if (!buf || n == cap) {
			char *nb;

			if (buf)
				cap *= 2;
			if (cap > (size_t)CONFIG_MAX_FILE_BYTES + 2)
				cap = (size_t)CONFIG_MAX_FILE_BYTES + 2;
			if (n == cap)
				break; /* over the limit: config_parse says so */
			nb = realloc(buf, cap);
			if (!nb) {
				ret = -ENOMEM;
				break;
			}
			buf = nb;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			break;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	if (ret) {
		free(buf);
		return ret;
	}
	*out = buf;
	*len = n;
	return 0;
}

/* c with what it owns (services) taken out, for comparing the rest. */
static void strip_owned(struct config *c)
{
	c->services = NULL;
	c->n_services = 0;
	c->policy = c->policy_file = NULL;
	c->nodes_learned = NULL;
}

/*
 * Give nw every field of running except its services: those are the only
 * part a running agent can change (docs/discovery.md). Returns true when
 * the file changed one of the others since start (compared with the
 * file as it was then, so that command-line overrides do not count).
 */
static bool keep_running_fields(struct config *nw, const struct config *running,
				const struct config *file_start)
{
	struct config a = *nw, b = *file_start;
	bool changed;

	strip_owned(&a);
	strip_owned(&b);
	/* Both came from config_parse (calloc'ed), so padding compares equal too. */
	changed = memcmp(&a, &b, sizeof(a)) != 0;
	a = *running;
	a.services = nw->services;
	a.n_services = nw->n_services;
	/* Policy is live too (docs/policy.md): the edit's, with its references. */
	a.policy = nw->policy;
	a.policy_file = nw->policy_file;
	/* Learned by discovery, not the file's: model_build sets the new one. */
	a.nodes_learned = nw->nodes_learned;
	*nw = a;
	return changed;
}

/*
 * Re-read the file. Returns 1 when a new good config replaced d->base,
 * 0 when the file is unchanged or was refused, -errno on a local failure.
 */
static int file_reload(struct discovery *d)
{
	char err[1024];
	struct config *cfg;
	char *text;
	size_t len;
	int ret = read_file(d->path, &text, &len);

	if (ret) {
		/* Mid-swap (ConfigMap) or deleted: keep serving what we have. */
		pr_debug("config: cannot read %s: %s; keeping the running config", d->path,
			 strerror(-ret));
		return 0;
	}
	if (d->text && len == d->text_len && !memcmp(text, d->text, len)) {
		free(text);
		return 0;
	}
	free(d->text);
	d->text = text;
	d->text_len = len;
	ret = config_parse(d->path, text, len, &cfg, err, sizeof(err));
	if (ret == -ENOMEM)
		return ret;
	if (ret) {
		d->st.file_rejects++;
		pr_warn("%s", err);
		pr_warn("config: edit of %s refused; the last good configuration stays live",
			d->path);
		return 0;
	}
	if (keep_running_fields(cfg, d->running, d->file_start)) {
		d->st.file_restart_fields++;
		pr_warn("config: %s changed fields outside services (node, bpf, proxy, "
			"kubernetes); they apply at the next restart, the running values stay",
			d->path);
	}
	config_free(d->base);
	d->base = cfg;
	d->st.file_reloads++;
	pr_info("config: reloaded %s: %d services", d->path, cfg->n_services);
	return 1;
}

/* True when the directory saw something worth a re-read; drains the fd. */
static bool drain_inotify(struct discovery *d)
{
	char buf[DISCOVERY_INOTIFY_BUF] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool dirty = false;

	for (;;) {
		ssize_t n = read(d->inotify_fd, buf, sizeof(buf));

		if (n <= 0)
			break;
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;

			if (ev->mask & (DISCOVERY_INOTIFY_MASK | IN_Q_OVERFLOW))
				dirty = true;
			p += sizeof(*ev) + ev->len;
		}
	}
	return dirty;
}

static bool drain_eventfd(int fd)
{
	uint64_t v;

	return fd >= 0 && read(fd, &v, sizeof(v)) == sizeof(v);
}

static void record_build(struct discovery *d, const struct model_build_stats *b)
{
	if (b->skipped_conflict != d->st.skipped_conflict && b->skipped_conflict)
		pr_warn("discovery: %u services left out: their (VIP, port) is taken or a BPF map "
			"is full",
			b->skipped_conflict);
	if (b->endpoints_no_identity != d->st.endpoints_no_identity && b->endpoints_no_identity)
		pr_warn("discovery: %u endpoints have no identity: the pod their EndpointSlice "
			"names is not known (or is another pod of that name); strict mode refuses "
			"calls to them on other nodes",
			b->endpoints_no_identity);
	if (b->endpoints_unresolved != d->st.endpoints_unresolved && b->endpoints_unresolved)
		pr_warn("discovery: %u endpoints left out: their slice maps a named target port "
			"to another number",
			b->endpoints_unresolved);
	d->st.services = b->services;
	d->st.endpoints = b->endpoints;
	d->st.skipped_headless = b->skipped_headless;
	d->st.skipped_conflict = b->skipped_conflict;
	d->st.endpoints_unresolved = b->endpoints_unresolved;
	d->st.endpoints_no_identity = b->endpoints_no_identity;
	d->st.k8s_pods = d->model ? model_n_pods(d->model) : 0;
	d->st.k8s_nodes = d->model ? model_n_nodes(d->model) : 0;
}

/*
 * The policy in force: the file's policy: section and the
 * AuthorizationPolicy objects, compiled into one set when either changed.
 * A merge that is refused (a rule name or a default in both, the bounds)
 * is logged, and the last good one stays; before any, the file's alone.
 */
static void policy_merge(struct discovery *d)
{
	struct policy_set *file = d->base->policy_file;
	struct policy_doc doc = {0};
	struct policy_set *set;
	char err[512] = "";
	uint64_t gen;
	int ret = 0;

	pthread_mutex_lock(&d->model_lock);
	gen = k8s_policy_generation(d->policy_store);
	d->st.policy_object_rejects = k8s_policy_rejects(d->policy_store);
	if (gen == d->policy_gen && file == d->policy_file) {
		pthread_mutex_unlock(&d->model_lock);
		return;
	}
	if (file)
		ret = policy_set_written(file, &doc);
	if (!ret)
		ret = k8s_policy_written(d->policy_store, &doc);
	pthread_mutex_unlock(&d->model_lock);
	d->policy_gen = gen;
	{
		struct policy_set *old = d->policy_file;

		d->policy_file = policy_set_get(file);
		policy_set_put(old);
	}
	if (ret)
		snprintf(err, sizeof(err),
			 "policy: the file's and the AuthorizationPolicy objects' "
			 "rules together exceed the bounds (%d rules, %d defaults)",
			 POLICY_MAX_RULES, POLICY_MAX_DEFAULTS);
	set =
	    ret ? NULL : policy_compile(&doc, d->running->identity.trust_domain, err, sizeof(err));
	policy_doc_free(&doc);
	if (!set) {
		d->st.policy_rejects++;
		pr_warn("%s; the last good policy stays in force", err);
		return;
	}
	policy_set_put(d->policy);
	d->policy = set;
	pr_info("policy: %d rules in force", policy_set_rules(set));
}

int discovery_poll(struct discovery *d, struct config **out)
{
	struct model_build_stats bst;
	bool changed = false;
	int ret;

	if (drain_inotify(d)) {
		ret = file_reload(d);
		if (ret < 0)
			return ret;
		changed |= ret == 1;
	}
	changed |= drain_eventfd(d->notify_fd);
	if (!changed)
		return 0;

	if (d->model) {
		pthread_mutex_lock(&d->model_lock);
		ret = model_build(d->model, d->base, out, &bst);
		pthread_mutex_unlock(&d->model_lock);
	} else {
		/* No model: the file's services alone (an empty model adds nothing). */
		static struct model_build_stats none;

		bst = none;
		ret = config_copy(d->base, d->base->n_services, out);
	}
	if (ret) {
		d->st.build_failures++;
		pr_warn(
		    "discovery: cannot build the new configuration: %s; keeping the running one",
		    strerror(-ret));
		return ret;
	}
	record_build(d, &bst);
	if (d->policy_store) {
		policy_merge(d);
		if (d->policy) {
			policy_set_put((*out)->policy);
			(*out)->policy = policy_set_get(d->policy);
		}
	}
	d->st.policy_rules = (*out)->policy ? (uint64_t)policy_set_rules((*out)->policy) : 0;
	d->st.snapshots++;
	return 1;
}

int discovery_fd(const struct discovery *d)
{
	return d->epfd;
}

bool discovery_synced(struct discovery *d)
{
	return !d->k8s ? true : k8s_synced(d->k8s) && (!d->k8s_pods || k8s_synced(d->k8s_pods));
}

void discovery_get_stats(struct discovery *d, struct discovery_stats *out)
{
	struct k8s_stats k = {0};

	*out = d->st;
	if (d->k8s)
		k8s_get_stats(d->k8s, &k);
	out->k8s_events = k.events;
	out->k8s_lists = k.lists;
	out->k8s_relists_410 = k.relists_410;
	out->k8s_errors = k.errors;
	out->k8s_unauthorized = k.unauthorized;
	out->k8s_bad_objects = k.bad_objects;
	out->k8s_refused_endpoints = k.refused_endpoints;
	if (d->k8s_pods) {
		k8s_get_stats(d->k8s_pods, &k);
		out->k8s_events += k.events;
		out->k8s_lists += k.lists;
		out->k8s_relists_410 += k.relists_410;
		out->k8s_errors += k.errors;
		out->k8s_unauthorized += k.unauthorized;
		out->k8s_bad_objects += k.bad_objects + atomic_load(&d->pods.refused);
	}
	out->k8s_pods_over = atomic_load(&d->pods.over);
	out->k8s_host_refused = atomic_load(&d->pods.hosts_refused);
	out->synced = discovery_synced(d);
}

void discovery_stop(struct discovery *d)
{
	if (!d)
		return;
	/* Threads first: they write into the model and ring notify_fd. */
	k8s_stop(d->k8s);
	k8s_stop(d->k8s_pods);
	k8s_stop(d->k8s_policy);
	k8s_policy_store_free(d->policy_store);
	policy_set_put(d->policy);
	policy_set_put(d->policy_file);
	model_free(d->model);
	pthread_mutex_destroy(&d->model_lock);
	if (d->inotify_fd >= 0)
		close(d->inotify_fd);
	if (d->notify_fd >= 0)
		close(d->notify_fd);
	if (d->epfd >= 0)
		close(d->epfd);
	config_free(d->base);
	config_free(d->file_start);
	free(d->text);
	free(d);
}

static int epoll_add(int epfd, int fd)
{
	struct epoll_event ev = {.events = EPOLLIN};

	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

int discovery_start(const struct config *running, const struct k8s_opts *k8s,
		    struct discovery **out)
{
	char dir[PATH_MAX];
	struct discovery *d;
	int ret;

	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->running = running;
	d->epfd = d->inotify_fd = d->notify_fd = -1;
	d->policy_gen = UINT64_MAX;
	pthread_mutex_init(&d->model_lock, NULL);
	snprintf(d->path, sizeof(d->path), "%s", running->path);

	/* The base: the running config itself, as the file holds it now. */
	ret = config_copy(running, running->n_services, &d->base);
	if (ret)
		goto err;
	ret = read_file(d->path, &d->text, &d->text_len);
	if (ret) {
		pr_warn("discovery: cannot read %s: %s", d->path, strerror(-ret));
		goto err;
	}
	/* What later edits are compared with; if the file changed since the
	 * agent loaded it, the running config stands in. */
	{
		char err[1024];

		if (config_parse(d->path, d->text, d->text_len, &d->file_start, err, sizeof(err)))
			ret = config_copy(running, running->n_services, &d->file_start);
		if (ret)
			goto err;
	}

	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	d->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (d->epfd < 0 || d->inotify_fd < 0) {
		ret = -errno;
		pr_warn("discovery: cannot create an epoll or inotify fd: %s", strerror(-ret));
		goto err;
	}
	snprintf(dir, sizeof(dir), "%s", d->path);
	if (inotify_add_watch(d->inotify_fd, dirname(dir), DISCOVERY_INOTIFY_MASK) < 0) {
		ret = -errno;
		snprintf(dir, sizeof(dir), "%s", d->path);
		pr_warn("discovery: cannot watch %s for config edits: %s", dirname(dir),
			strerror(-ret));
		goto err;
	}
	ret = epoll_add(d->epfd, d->inotify_fd);
	if (ret)
		goto err;

	if (k8s) {
		d->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		d->model = model_new();
		if (d->notify_fd < 0 || !d->model) {
			ret = d->notify_fd < 0 ? -errno : -ENOMEM;
			pr_warn("discovery: cannot set up the Kubernetes source: %s",
				strerror(-ret));
			goto err;
		}
		ret = epoll_add(d->epfd, d->notify_fd);
		if (!ret) {
			struct k8s_opts ko = *k8s;

			/* The node's addresses, which no endpoint may have. */
			ko.node_v4 = running->proxy_v4;
			ko.node_v6 = running->proxy_v6;
			ret = k8s_start(&ko, d->model, &d->model_lock, d->notify_fd, &d->k8s);
		}
		if (!ret && running->mtls.on) {
			/*
			 * The endpoints' identities: the hop needs them, nothing
			 * else does, so the API server streams no pod to a node
			 * that does not encrypt.
			 */
			struct k8s_collection cols[2] = {
			    {.what = "pods", .path = K8S_PODS_PATH},
			    {.what = "namespaces", .path = K8S_NAMESPACES_PATH},
			};

			d->pods.m = d->model;
			cols[0].sink = k8s_pods_sink(&d->pods);
			cols[1].sink = k8s_namespaces_sink(&d->pods);
			ret = k8s_start_collections(k8s, cols, 2, &d->model_lock, d->notify_fd,
						    &d->k8s_pods);
		}
		if (!ret && running->k8s_policies) {
			struct k8s_collection col = {.what = "authorizationpolicies",
						     .path = K8S_POLICY_PATH};

			d->policy_store = k8s_policy_store_new();
			if (!d->policy_store)
				ret = -ENOMEM;
			col.sink = k8s_policy_sink(d->policy_store);
			/* Its own watcher: a cluster without the CRD (404) holds up nothing. */
			if (!ret)
				ret = k8s_start_collections(k8s, &col, 1, &d->model_lock,
							    d->notify_fd, &d->k8s_policy);
		}
		if (ret)
			goto err;
	}
	pr_info("discovery: watching %s for edits%s", d->path,
		k8s ? ", and the Kubernetes API" : "");
	*out = d;
	return 0;

err:
	discovery_stop(d);
	return ret;
}
