// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The enrollment controller. The watch threads (k8s.c) keep the pod and
 * namespace tables under e->mu; this thread reconciles shoal_enrolled
 * with them after each change, every resync_ms, and serves the CNI
 * plugin's requests in between, under the same lock, so that a request
 * and a reconcile never interleave.
 *
 * A reconcile (docs/enrollment.md, "Reconcile"):
 *   1. scan the kubelet's cgroups: for each pod on this node, a process
 *      whose netns holds one of the pod's IPs gives the pod's cookie;
 *   2. a pod the rules mesh gets its cookie enrolled (the scan's, or the
 *      one the CNI plugin reported while it is still alive); a pod they
 *      do not mesh gets its cookie unenrolled, and so does every cookie
 *      this agent enrolled whose pod is gone;
 *   3. every entry whose netns is no longer alive anywhere on the node,
 *      and older than ENROLL_STALE_GRACE_MS, is removed.
 * Entries for live namespaces that belong to no pod (an operator's
 * `shoalctl enroll`) are left alone.
 */
#include "enroll/enroll.h"

#include <bpf/bpf.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/addr.h"
#include "common/log.h"
#include "datapath/env.h"
#include "datapath/pins.h"
#include "enroll/cgroup_scan.h"
#include "enroll/cni_proto.h"
#include "enroll/netns.h"

/* Chars a node name may have (a DNS subdomain): safe in a selector as is. */
#define NODE_NAME_CHARS "abcdefghijklmnopqrstuvwxyz0123456789.-"

struct enroll {
	struct enroll_opts opts;
	pthread_mutex_t mu; /* the tables, the watcher's lock */
	struct enroll_table t;
	struct k8s_watcher *watcher;
	struct k8s_collection cols[2];
	int notify_fd;	 /* the watcher's eventfd */
	int stop_fd;	 /* eventfd: stop the controller */
	int cni_fd;	 /* listening socket, or -1 */
	bool cni_warned; /* the socket failed once: said so */
	pthread_t thread;
	bool started;
	uint64_t self_cookie;		/* the agent's netns: never a pod's */
	struct enroll_cookie_set owned; /* cookies this agent enrolled */
	struct enroll_cookie_set live;	/* scratch: netns alive now */
	uint64_t *round;		/* per pod index: cookie found by this scan */
	bool *round_mount;		/* ... by its netns mount, not its cgroups */
	bool pods_listed, nss_listed;	/* under mu: first list done */
	struct {
		_Atomic uint64_t enrolls, unenrolls, stale_removed, netns_mismatch, cni_requests,
		    cni_errors, reconciles;
	} st;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- the watch sinks (under e->mu) ---- */

static void pods_begin(void *ctx)
{
	struct enroll *e = ctx;

	enroll_mark(&e->t, true);
}

static void pods_end(void *ctx)
{
	struct enroll *e = ctx;
	int gone = enroll_sweep(&e->t, true, NULL, 0);

	if (gone)
		pr_info("enroll: %d pods gone since the last list", gone);
	e->pods_listed = true;
}

static int pods_put(void *ctx, json_object *obj, char *err, size_t errlen)
{
	struct enroll *e = ctx;
	struct enroll_pod p;
	int ret = enroll_decode_pod(obj, &p, err, errlen);

	if (ret)
		return ret;
	if (!enroll_put_pod(&e->t, &p))
		pr_warn("enroll: pod %s/%s: more than %d pods on this node; not tracked", p.ns,
			p.name, ENROLL_MAX_PODS);
	return 0;
}

static int pods_del(void *ctx, json_object *obj, char *err, size_t errlen)
{
	struct enroll *e = ctx;
	struct enroll_pod p;
	int ret = enroll_decode_pod(obj, &p, err, errlen);

	if (!ret)
		enroll_del_pod(&e->t, p.uid, NULL);
	return ret;
}

static void nss_begin(void *ctx)
{
	struct enroll *e = ctx;

	enroll_mark(&e->t, false);
}

static void nss_end(void *ctx)
{
	struct enroll *e = ctx;

	enroll_sweep(&e->t, false, NULL, 0);
	e->nss_listed = true;
}

static int nss_put(void *ctx, json_object *obj, char *err, size_t errlen)
{
	struct enroll *e = ctx;
	struct enroll_ns n;
	int ret = enroll_decode_ns(obj, &n, err, errlen);

	if (ret)
		return ret;
	if (enroll_put_ns(&e->t, &n))
		pr_warn("enroll: namespace %s: more than %d labelled namespaces; not tracked",
			n.name, ENROLL_MAX_NAMESPACES);
	return 0;
}

static int nss_del(void *ctx, json_object *obj, char *err, size_t errlen)
{
	struct enroll *e = ctx;
	struct enroll_ns n;
	int ret = enroll_decode_ns(obj, &n, err, errlen);

	if (!ret)
		enroll_del_ns(&e->t, n.name);
	return ret;
}

/* ---- the map ---- */

static int map_set(struct enroll *e, uint64_t cookie, bool on, const struct enroll_pod *p,
		   const char *why)
{
	int err = pins_enroll(e->opts.pin_root, cookie, on);

	if (err && !(err == -ENOENT && !on)) {
		pr_warn("enroll: cannot %s netns cookie %llu of pod %s/%s: %s",
			on ? "enroll" : "unenroll", (unsigned long long)cookie, p ? p->ns : "?",
			p ? p->name : "?", strerror(-err));
		return err;
	}
	if (on) {
		atomic_fetch_add(&e->st.enrolls, 1);
		enroll_cookie_set_add(&e->owned, cookie);
	} else {
		atomic_fetch_add(&e->st.unenrolls, 1);
	}
	/* Tests and operators follow these lines. */
	if (p)
		pr_info("enroll: pod %s/%s %s (netns cookie %llu, %s)", p->ns, p->name,
			on ? "enrolled" : "unenrolled", (unsigned long long)cookie, why);
	else
		pr_info("enroll: netns cookie %llu %s (%s)", (unsigned long long)cookie,
			on ? "enrolled" : "unenrolled", why);
	return 0;
}

/* Whether cookie is in shoal_enrolled now. */
static bool map_has(int fd, uint64_t cookie)
{
	struct shoal_enroll_key k = {.netns_cookie = cookie};
	struct shoal_enroll_val v;

	return fd >= 0 && bpf_map_lookup_elem(fd, &k, &v) == 0;
}

/* ---- reconcile ---- */

/* enroll_scan_cb: a process of pod uid; probe its netns. */
static int on_process(void *ctx, const char *uid, pid_t pid)
{
	struct enroll *e = ctx;
	struct enroll_pod *p = enroll_find_pod(&e->t, uid);
	struct enroll_netns_info info;
	char path[64];
	int i;

	if (!p || p->host_network)
		return 1; /* not ours to look at: next pod */
	i = (int)(p - e->t.pods);
	if (e->round[i])
		return 1;
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
	if (enroll_netns_probe(path, true, &info))
		return 0; /* exited meanwhile: try the next process */
	if (info.cookie == e->self_cookie)
		return 0;
	for (int a = 0; a < info.n_addrs; a++) {
		if (enroll_pod_has_ip(p, &info.addrs[a])) {
			e->round[i] = info.cookie;
			return 1;
		}
	}
	if (p->n_ips) {
		atomic_fetch_add(&e->st.netns_mismatch, 1);
		pr_debug("enroll: pod %s/%s: the netns of pid %d holds none of its IPs", p->ns,
			 p->name, (int)pid);
	}
	return 0;
}

/*
 * Pods the cgroup scan did not find: the netns the runtime pinned under
 * opts.netns_dir (containerd's and CRI-O's /var/run/netns/<id>) that
 * holds the pod's IP. Opening a bind mount needs no ptrace access to the
 * pod's processes, which a non-root agent lacks (docs/enrollment.md), and
 * a pod IP is held by one netns of the node at a time.
 */
static void match_netns_mounts(struct enroll *e)
{
	struct enroll_netns_info info;
	char path[PATH_MAX];
	struct dirent *d;
	bool need = false;
	DIR *dir;

	for (int i = 0; i < e->t.n_pods; i++)
		need |= !e->t.pods[i].host_network && !e->round[i] && e->t.pods[i].n_ips;
	if (!need || !e->opts.netns_dir[0] || !(dir = opendir(e->opts.netns_dir)))
		return;
	while ((d = readdir(dir))) {
		if (d->d_name[0] == '.' ||
		    snprintf(path, sizeof(path), "%s/%s", e->opts.netns_dir, d->d_name) >=
			(int)sizeof(path) ||
		    enroll_netns_probe(path, true, &info) || info.cookie == e->self_cookie)
			continue;
		for (int i = 0; i < e->t.n_pods; i++) {
			const struct enroll_pod *p = &e->t.pods[i];

			if (p->host_network || e->round[i])
				continue;
			for (int a = 0; a < info.n_addrs && !e->round[i]; a++)
				if (enroll_pod_has_ip(p, &info.addrs[a])) {
					e->round[i] = info.cookie;
					e->round_mount[i] = true;
				}
		}
	}
	closedir(dir);
}

/* The CNI-reported netns of p, if it is still the same one. */
static uint64_t cni_cookie_alive(const struct enroll_pod *p)
{
	struct enroll_netns_info info;

	if (!p->cni_cookie || !p->cni_netns[0])
		return 0;
	if (enroll_netns_probe(p->cni_netns, false, &info) || info.cookie != p->cni_cookie)
		return 0;
	return info.cookie;
}

/* Remove the entries whose netns is gone (step 3). */
static void sweep_stale(struct enroll *e, int fd)
{
	struct shoal_enroll_key key, next;
	uint64_t now = env_boot_ns();
	bool first = true;

	if (fd < 0 || enroll_netns_live(&e->live))
		return;
	/*
	 * A pod's own entry is never stale while the pod exists: its netns
	 * may be alive where this agent cannot look (another uid's processes
	 * without CAP_SYS_PTRACE, a runtime's netns directory other than
	 * netns_dir), and the pod's delete unenrolls it anyway.
	 */
	for (int i = 0; i < e->t.n_pods; i++)
		if (e->t.pods[i].cookie)
			enroll_cookie_set_add(&e->live, e->t.pods[i].cookie);
	while (bpf_map_get_next_key(fd, first ? NULL : &key, &next) == 0) {
		struct shoal_enroll_val v;

		first = false;
		key = next;
		if (enroll_cookie_set_has(&e->live, next.netns_cookie))
			continue;
		if (bpf_map_lookup_elem(fd, &next, &v) ||
		    now - v.enrolled_boot_ns < (uint64_t)ENROLL_STALE_GRACE_MS * 1000000ull)
			continue;
		if (bpf_map_delete_elem(fd, &next) == 0) {
			atomic_fetch_add(&e->st.stale_removed, 1);
			pr_info("enroll: netns cookie %llu removed: its network namespace is gone",
				(unsigned long long)next.netns_cookie);
		}
	}
}

/* One reconcile, under e->mu. */
static void reconcile(struct enroll *e)
{
	struct enroll_cookie_set keep = {0};
	int fd;

	if (!e->pods_listed || !e->nss_listed)
		return; /* an empty table is not "no pods": wait for the lists */
	atomic_fetch_add(&e->st.reconciles, 1);
	fd = pins_open_map(e->opts.pin_root, "shoal_enrolled");
	if (fd < 0) {
		pr_warn("enroll: cannot open shoal_enrolled under %s: %s", e->opts.pin_root,
			strerror(-fd));
		return;
	}
	memset(e->round, 0, sizeof(*e->round) * ENROLL_MAX_PODS);
	memset(e->round_mount, 0, sizeof(*e->round_mount) * ENROLL_MAX_PODS);
	if (e->opts.cgroup_root[0])
		enroll_cgroup_scan(e->opts.cgroup_root, on_process, e);
	match_netns_mounts(e);

	for (int i = 0; i < e->t.n_pods; i++) {
		struct enroll_pod *p = &e->t.pods[i];
		uint64_t found = e->round[i] ? e->round[i] : cni_cookie_alive(p);

		if (p->host_network) {
			p->state = ENROLL_STATE_HOST_NETWORK;
			continue;
		}
		if (!enroll_wanted(&e->t, p)) {
			if (p->cookie &&
			    !map_set(e, p->cookie, false, p, "not meshed by its labels"))
				p->cookie = 0;
			/* Enrolled by an agent before this one, while the labels said yes. */
			if (found && found != p->cookie && map_has(fd, found))
				map_set(e, found, false, p, "not meshed by its labels");
			p->state = ENROLL_STATE_UNMESHED;
			continue;
		}
		if (found && !p->cookie && map_has(fd, found)) {
			/* Enrolled by the agent before this one (or the CNI path): ours now. */
			p->cookie = found;
			pr_info("enroll: pod %s/%s adopted (netns cookie %llu, already enrolled)",
				p->ns, p->name, (unsigned long long)found);
		} else if (found && (found != p->cookie || !map_has(fd, found))) {
			if (p->cookie && p->cookie != found)
				map_set(e, p->cookie, false, p, "its netns changed");
			if (!map_set(e, found, true, p,
				     !e->round[i]	 ? "cni"
				     : e->round_mount[i] ? "netns mount"
							 : "cgroup scan"))
				p->cookie = found;
		}
		if (!found && p->cookie && !map_has(fd, p->cookie))
			p->cookie = 0; /* removed meanwhile (stale, or by an operator) */
		p->state = p->cookie ? ENROLL_STATE_ENROLLED : ENROLL_STATE_PENDING;
		if (p->cookie)
			enroll_cookie_set_add(&keep, p->cookie);
	}
	/* Cookies this agent enrolled for pods that are gone (step 2, last part). */
	for (size_t i = 0; i < e->owned.n; i++) {
		uint64_t c = e->owned.v[i];

		if (enroll_cookie_set_has(&keep, c))
			continue;
		if (map_has(fd, c))
			map_set(e, c, false, NULL, "its pod is gone");
	}
	enroll_cookie_set_free(&e->owned);
	e->owned = keep;
	sweep_stale(e, fd);
	close(fd);
}

/* ---- the CNI socket ---- */

static void cni_reply(int fd, const char *result, uint64_t cookie, const char *msg)
{
	json_object *o = json_object_new_object();
	const char *s;

	json_object_object_add(o, "result", json_object_new_string(result));
	json_object_object_add(o, "cookie", json_object_new_uint64(cookie));
	json_object_object_add(o, "message", json_object_new_string(msg));
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	if (write(fd, s, strlen(s)) < 0 || write(fd, "\n", 1) < 0)
		pr_debug("enroll: cni: cannot answer: %s", strerror(errno));
	json_object_put(o);
}

static const char *jstr(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return "";
	return json_object_get_string(v);
}

/* The pod of a request, waiting up to ENROLL_CNI_POD_WAIT_MS for the watch. */
static struct enroll_pod *cni_find_pod(struct enroll *e, const char *uid, const char *ns,
				       const char *name, bool wait)
{
	uint64_t end = now_ms() + ENROLL_CNI_POD_WAIT_MS;

	for (;;) {
		struct enroll_pod *p = *uid ? enroll_find_pod(&e->t, uid) : NULL;

		if (!p)
			p = enroll_find_pod_name(&e->t, ns, name);
		if (p && (!*uid || !strcmp(p->uid, uid)))
			return p;
		if (!wait || now_ms() >= end)
			return NULL;
		pthread_mutex_unlock(&e->mu);
		usleep(20000);
		pthread_mutex_lock(&e->mu);
	}
}

/* Serve one request on fd, under e->mu. */
static void cni_serve(struct enroll *e, int fd)
{
	char buf[ENROLL_CNI_MAX_MESSAGE], msg[512];
	const char *cmd, *netns, *ns, *name, *uid;
	struct enroll_netns_info info;
	struct enroll_pod *p;
	json_object *req;
	size_t len = 0;

	buf[0] = '\0';
	atomic_fetch_add(&e->st.cni_requests, 1);
	while (len < sizeof(buf) - 1 && !memchr(buf, '\n', len)) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);

		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	req = json_tokener_parse(buf);
	if (!req || !json_object_is_type(req, json_type_object)) {
		atomic_fetch_add(&e->st.cni_errors, 1);
		pr_warn("enroll: cni: a request that is not a JSON object");
		cni_reply(fd, "error", 0, "the request is not a JSON object");
		json_object_put(req);
		return;
	}
	cmd = jstr(req, "command");
	netns = jstr(req, "netns");
	ns = jstr(req, "pod_namespace");
	name = jstr(req, "pod_name");
	uid = jstr(req, "pod_uid");
	p = cni_find_pod(e, uid, ns, name, !strcmp(cmd, "ADD"));
	if (!strcmp(cmd, "DEL")) {
		/* The sandbox goes: its netns leaves the mesh now, not at the next reconcile. */
		if (p && p->cookie && map_set(e, p->cookie, false, p, "cni DEL") == 0)
			p->cookie = 0;
		if (p) {
			p->cni_cookie = 0;
			p->cni_netns[0] = '\0';
			p->state = enroll_wanted(&e->t, p) ? ENROLL_STATE_PENDING : p->state;
		}
		cni_reply(fd, "unenrolled", 0, "");
		goto out;
	}
	if (strcmp(cmd, "ADD") && strcmp(cmd, "CHECK")) {
		cni_reply(fd, "error", 0, "unknown command");
		goto out;
	}
	if (!p) {
		atomic_fetch_add(&e->st.cni_errors, 1);
		snprintf(msg, sizeof(msg),
			 "pod %s/%s (uid '%s') not seen on the watch within %d ms; the re-scan "
			 "enrolls it if it is meshed",
			 ns, name, uid, ENROLL_CNI_POD_WAIT_MS);
		pr_warn("enroll: cni %s: %s", cmd, msg);
		cni_reply(fd, "unknown-pod", 0, msg);
		goto out;
	}
	if (!*netns || enroll_netns_probe(netns, false, &info) || info.cookie == e->self_cookie) {
		atomic_fetch_add(&e->st.cni_errors, 1);
		snprintf(msg, sizeof(msg),
			 "netns '%s' of pod %s/%s cannot be entered or is the "
			 "node's",
			 netns, p->ns, p->name);
		pr_warn("enroll: cni %s: %s", cmd, msg);
		cni_reply(fd, "error", 0, msg);
		goto out;
	}
	if (!strcmp(cmd, "CHECK")) {
		cni_reply(fd,
			  enroll_wanted(&e->t, p) && p->cookie == info.cookie ? "enrolled"
									      : "unmeshed",
			  info.cookie, "");
		goto out;
	}
	p->cni_cookie = info.cookie;
	snprintf(p->cni_netns, sizeof(p->cni_netns), "%s", netns);
	if (!enroll_wanted(&e->t, p) || p->host_network) {
		cni_reply(fd, "unmeshed", info.cookie, "");
		goto out;
	}
	if (p->cookie && p->cookie != info.cookie)
		map_set(e, p->cookie, false, p, "a new sandbox");
	if (map_set(e, info.cookie, true, p, "cni ADD")) {
		atomic_fetch_add(&e->st.cni_errors, 1);
		cni_reply(fd, "error", info.cookie, "cannot write shoal_enrolled");
		goto out;
	}
	p->cookie = info.cookie;
	p->state = ENROLL_STATE_ENROLLED;
	cni_reply(fd, "enrolled", info.cookie, "");
out:
	json_object_put(req);
}

static int cni_listen(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char dir[sizeof(sa.sun_path)];
	char *slash;
	int fd, err;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	memcpy(dir, path, strlen(path) + 1);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		env_mkdir_p(dir);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	unlink(path); /* an agent before this one left it */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0600) < 0 ||
	    listen(fd, 64) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

/*
 * Listen on the CNI socket if it is configured and not open yet. A
 * failure (its directory not writable yet: the install-cni container
 * hands it over at its start) is not fatal: pods are then enrolled by
 * the scan alone, and the next resync tries again.
 */
static void cni_try_listen(struct enroll *e)
{
	int fd;

	if (!e->opts.cni_socket[0] || e->cni_fd >= 0)
		return;
	fd = cni_listen(e->opts.cni_socket);
	if (fd >= 0) {
		e->cni_fd = fd;
		if (e->cni_warned)
			pr_info("enroll: listening on the CNI socket %s", e->opts.cni_socket);
		return;
	}
	if (!e->cni_warned)
		pr_warn("enroll: cannot listen on the CNI socket %s: %s; new pods are enrolled "
			"by the scan until it works (retried every resync)",
			e->opts.cni_socket, strerror(-fd));
	e->cni_warned = true;
}

static void cni_accept(struct enroll *e)
{
	struct timeval tv = {.tv_sec = 2};
	int fd = accept4(e->cni_fd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	/* A plugin that sends nothing must not hold the controller up. */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	pthread_mutex_lock(&e->mu);
	cni_serve(e, fd);
	pthread_mutex_unlock(&e->mu);
	close(fd);
}

/* ---- the thread ---- */

static void *enroll_thread(void *arg)
{
	struct enroll *e = arg;
	uint32_t period = e->opts.resync_ms ? e->opts.resync_ms : ENROLL_RESYNC_MS;
	struct itimerspec its = {
	    .it_interval = {period / 1000, (long)(period % 1000) * 1000000L},
	    .it_value = {period / 1000, (long)(period % 1000) * 1000000L},
	};
	int timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);

	if (timer < 0 || timerfd_settime(timer, 0, &its, NULL) < 0)
		pr_warn("enroll: no resync timer (%s): reconciles only on changes",
			strerror(errno));
	for (;;) {
		struct pollfd fds[4] = {
		    {.fd = e->stop_fd, .events = POLLIN},
		    {.fd = e->notify_fd, .events = POLLIN},
		    {.fd = timer, .events = POLLIN},
		    {.fd = e->cni_fd, .events = POLLIN},
		};
		uint64_t v;

		if (poll(fds, 4, -1) < 0)
			continue;
		if (fds[0].revents)
			break;
		if (fds[3].revents & POLLIN)
			cni_accept(e);
		if ((fds[1].revents & POLLIN) || (fds[2].revents & POLLIN)) {
			if (fds[1].revents & POLLIN && read(e->notify_fd, &v, sizeof(v)) < 0)
				v = 0;
			if (fds[2].revents & POLLIN && read(timer, &v, sizeof(v)) < 0)
				v = 0;
			if (fds[2].revents & POLLIN)
				cni_try_listen(e);
			pthread_mutex_lock(&e->mu);
			reconcile(e);
			pthread_mutex_unlock(&e->mu);
		}
	}
	if (timer >= 0)
		close(timer);
	return NULL;
}

static bool node_name_ok(const char *s)
{
	return *s && strlen(s) < 254 && strspn(s, NODE_NAME_CHARS) == strlen(s);
}

void enroll_stop(struct enroll *e)
{
	uint64_t one = 1;

	if (!e)
		return;
	k8s_stop(e->watcher); /* no sink call after this */
	if (e->started) {
		if (write(e->stop_fd, &one, sizeof(one)) < 0)
			pr_warn("enroll: cannot stop the controller: %s", strerror(errno));
		pthread_join(e->thread, NULL);
	}
	if (e->cni_fd >= 0) {
		close(e->cni_fd);
		unlink(e->opts.cni_socket);
	}
	if (e->notify_fd >= 0)
		close(e->notify_fd);
	if (e->stop_fd >= 0)
		close(e->stop_fd);
	enroll_cookie_set_free(&e->owned);
	enroll_cookie_set_free(&e->live);
	free(e->round);
	free(e->round_mount);
	enroll_table_fini(&e->t);
	pthread_mutex_destroy(&e->mu);
	free(e);
}

int enroll_start(const struct enroll_opts *opts, struct enroll **out)
{
	struct enroll *e;
	sigset_t all, old;
	int ret;

	if (!node_name_ok(opts->node_name)) {
		pr_warn(
		    "enroll: node name '%s' is not a node name (kubernetes.enrollment.node_name "
		    "or $NODE_NAME)",
		    opts->node_name);
		return -EINVAL;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->opts = *opts;
	e->notify_fd = e->stop_fd = e->cni_fd = -1;
	pthread_mutex_init(&e->mu, NULL);
	ret = enroll_table_init(&e->t);
	e->round = calloc(ENROLL_MAX_PODS, sizeof(*e->round));
	e->round_mount = calloc(ENROLL_MAX_PODS, sizeof(*e->round_mount));
	if (ret || !e->round || !e->round_mount) {
		ret = -ENOMEM;
		goto fail;
	}
	ret = enroll_netns_self_cookie(&e->self_cookie);
	if (ret) {
		pr_warn("enroll: SO_NETNS_COOKIE: %s (needs Linux 5.14)", strerror(-ret));
		goto fail;
	}
	e->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	e->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (e->notify_fd < 0 || e->stop_fd < 0) {
		ret = -errno;
		goto fail;
	}
	cni_try_listen(e);
	e->cols[0] = (struct k8s_collection){
	    .what = "pods",
	    .path = "/api/v1/pods",
	    .sink = {pods_begin, pods_end, pods_put, pods_del, e},
	};
	snprintf(e->cols[0].selector, sizeof(e->cols[0].selector),
		 "fieldSelector=spec.nodeName%%3D%s", opts->node_name);
	/* Only labelled namespaces: the rest mesh nothing, and a node need not hold them. */
	e->cols[1] = (struct k8s_collection){
	    .what = "namespaces",
	    .path = "/api/v1/namespaces",
	    .selector = "labelSelector=shoal.io%2Fmesh",
	    .sink = {nss_begin, nss_end, nss_put, nss_del, e},
	};
	ret = k8s_start_collections(&opts->k8s, e->cols, 2, &e->mu, e->notify_fd, &e->watcher);
	if (ret)
		goto fail;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = -pthread_create(&e->thread, NULL, enroll_thread, e);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret) {
		pr_warn("enroll: cannot start the controller: %s", strerror(-ret));
		goto fail;
	}
	e->started = true;
	pthread_setname_np(e->thread, "shoal-enroll");
	pr_info("enroll: pods of node %s, cgroups under %s, CNI socket %s", opts->node_name,
		opts->cgroup_root[0] ? opts->cgroup_root : "(none)",
		opts->cni_socket[0] ? opts->cni_socket : "(none)");
	*out = e;
	return 0;
fail:
	enroll_stop(e);
	return ret;
}

bool enroll_synced(struct enroll *e)
{
	return e && k8s_synced(e->watcher);
}

void enroll_get_stats(struct enroll *e, struct enroll_stats *out)
{
	struct k8s_stats ks = {0};

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&e->mu);
	out->pods = (uint64_t)e->t.n_pods;
	for (int i = 0; i < e->t.n_pods; i++) {
		switch (e->t.pods[i].state) {
		case ENROLL_STATE_ENROLLED:
			out->pods_enrolled++;
			break;
		case ENROLL_STATE_PENDING:
			out->pods_pending++;
			break;
		case ENROLL_STATE_UNMESHED:
			out->pods_unmeshed++;
			break;
		case ENROLL_STATE_HOST_NETWORK:
			out->pods_host_network++;
			break;
		}
	}
	pthread_mutex_unlock(&e->mu);
	out->enrolls = atomic_load(&e->st.enrolls);
	out->unenrolls = atomic_load(&e->st.unenrolls);
	out->stale_removed = atomic_load(&e->st.stale_removed);
	out->netns_mismatch = atomic_load(&e->st.netns_mismatch);
	out->cni_requests = atomic_load(&e->st.cni_requests);
	out->cni_errors = atomic_load(&e->st.cni_errors);
	out->reconciles = atomic_load(&e->st.reconciles);
	if (e->watcher)
		k8s_get_stats(e->watcher, &ks);
	out->k8s_events = ks.events;
	out->k8s_errors = ks.errors;
	out->k8s_relists_410 = ks.relists_410;
}

int enroll_pods_copy(struct enroll *e, struct enroll_pod **out)
{
	int n;

	pthread_mutex_lock(&e->mu);
	n = e->t.n_pods;
	*out = malloc(sizeof(**out) * (size_t)(n ? n : 1));
	if (*out)
		memcpy(*out, e->t.pods, sizeof(**out) * (size_t)n);
	pthread_mutex_unlock(&e->mu);
	return *out ? n : -ENOMEM;
}

int enroll_pod_name_try(struct enroll *e, const struct shoal_addr *ip, char ns[ENROLL_MAX_NS],
			char name[ENROLL_MAX_NAME])
{
	int ret = -ENOENT;

	if (pthread_mutex_trylock(&e->mu))
		return -EAGAIN;
	for (int i = 0; i < e->t.n_pods && ret; i++) {
		const struct enroll_pod *p = &e->t.pods[i];

		if (!p->host_network && enroll_pod_has_ip(p, ip)) {
			memcpy(ns, p->ns, ENROLL_MAX_NS);
			memcpy(name, p->name, ENROLL_MAX_NAME);
			ret = 0;
		}
	}
	pthread_mutex_unlock(&e->mu);
	return ret;
}

int enroll_pod_identity(struct enroll *e, uint64_t cookie, const struct shoal_addr *ip,
			char ns[ENROLL_MAX_NS], char sa[ENROLL_MAX_NAME])
{
	int ret = -ENOENT;

	pthread_mutex_lock(&e->mu);
	for (int i = 0; i < e->t.n_pods && ret; i++) {
		const struct enroll_pod *p = &e->t.pods[i];

		if (p->host_network)
			continue; /* its IP is the node's, shared by every host-network pod */
		if ((cookie && p->cookie == cookie) || (ip && enroll_pod_has_ip(p, ip))) {
			memcpy(ns, p->ns, ENROLL_MAX_NS);
			memcpy(sa, p->service_account, ENROLL_MAX_NAME);
			ret = 0;
		}
	}
	pthread_mutex_unlock(&e->mu);
	return ret;
}
