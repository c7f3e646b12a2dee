// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * shoald: the node agent. Loads (or adopts) the BPF datapath, runs the
 * node proxy, and keeps the heartbeat that tells the datapath the proxy
 * is alive. Exit without --uninstall leaves the datapath attached: a
 * restart picks it up again, and until then connections fail open.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "common/addr.h"
#include "common/log.h"
#include "config/config.h"
#include "discovery/discovery.h"
#include "datapath/datapath.h"
#include "datapath/env.h"
#include "enroll/enroll.h"
#include "identity/identity.h"
#include "proxy/proxy.h"
#include "recording/trace.h"
#include "telemetry/admin.h"
#include "telemetry/otlp.h"
#include "identity/store.h"
#include "tunnel/tunnel.h"
#include "upgrade/handover.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: shoald -c FILE [--no-shortcut] [--admin ADDR:PORT|off] "
		   "[--log-level warn|info|debug]\n"
		   "              [--log-time|--no-log-time] [--handover-socket PATH|off]\n"
		   "              [--handover-wait]\n"
		   "       shoald --uninstall (-c FILE | --pin-root DIR)\n"
		   "       shoald --list-metrics\n"
		   "\n"
		   "  -c, --config FILE   the configuration file (docs/config.md)\n"
		   "      --no-shortcut   start with the sockmap shortcut off (kill switch)\n"
		   "      --admin A:P     admin endpoint (/healthz /readyz /metrics), overrides the\n"
		   "                      config's admin.listen (default " CONFIG_DEFAULT_ADMIN_LISTEN
		   "); off: none\n"
		   "      --log-level L   warn, info (default) or debug\n"
		   "      --log-time      start each log line with its UTC time (RFC 3339, ms);\n"
		   "                      the default unless stderr is the journal (JOURNAL_STREAM)\n"
		   "      --no-log-time   no time on log lines (for a collector that adds its own)\n"
		   "      --handover-socket PATH\n"
		   "                      the upgrade hand-over socket (docs/upgrade.md); default\n"
		   "                      " HANDOVER_DEFAULT_SOCKET " for the default pin root, else\n"
		   "                      /run/shoal/handover-<hash of the pin root>.sock; off: none\n"
		   "      --handover-wait after handing over and draining, wait for SIGTERM before\n"
		   "                      exiting (a pod's container would be restarted)\n"
		   "      --uninstall     remove every link, program, map and pin shoal made\n"
		   "      --pin-root DIR  with --uninstall and no -c: the pin root\n"
		   "      --list-metrics  print the table of exported metrics (docs/metrics.md)\n");
}

static int parse_level(const char *s, enum log_level *out)
{
	if (!strcmp(s, "warn"))
		*out = LOG_LEVEL_WARN;
	else if (!strcmp(s, "info"))
		*out = LOG_LEVEL_INFO;
	else if (!strcmp(s, "debug"))
		*out = LOG_LEVEL_DEBUG;
	else
		return -EINVAL;
	return 0;
}

/* Set once the proxy listens and the heartbeat runs; read by /readyz. */
static bool serving;

/*
 * /readyz: the datapath is attached and the proxy listens (serving), and
 * discovery, when it runs (ctx: its struct discovery, NULL for the file
 * alone), is in sync: a node whose endpoints are not listed yet would
 * send traffic to stale ones.
 */
static bool agent_ready(void *ctx, char *why, size_t len)
{
	struct discovery *d = ctx;

	if (!__atomic_load_n(&serving, __ATOMIC_ACQUIRE)) {
		snprintf(why, len, "not serving yet: datapath or proxy still starting, or stopping");
		return false;
	}
	if (d && !discovery_synced(d)) {
		snprintf(why, len, "discovery not in sync yet: Kubernetes not listed and watched");
		return false;
	}
	return true;
}

/*
 * Start tracing as cfg's tracing: section says (nothing when disabled):
 * one span ring per proxy worker, the OTLP exporter, attached to the
 * workers. Returns 0, or -errno with a message in err.
 */
static int tracing_start(const struct config *cfg, struct proxy *proxy, struct tracer **tracer,
			 struct otlp_exporter **exporter, char *err, size_t errlen)
{
	const struct config_tracing *t = &cfg->tracing;
	struct trace_config tc = {
		.sample_rate = t->sample_rate,
		.ring_size = t->ring_size,
		.kind = t->span_kind,
	};
	char host[256] = "";
	struct otlp_opts oo = {
		.url = t->collector_url,
		.batch_max = t->batch_size,
		.delay_ms = t->batch_delay_ms,
		.timeout_ms = t->timeout_ms,
		.resource = { .service_name = t->service_name, .host_name = host,
			      .trust_domain = cfg->identity.trust_domain },
	};
	int ret;

	if (!t->enabled)
		return 0;
	gethostname(host, sizeof(host) - 1);
	ret = tracer_create(&tc, proxy_workers(proxy), tracer, err, errlen);
	if (ret)
		return ret;
	ret = otlp_exporter_start(*tracer, &oo, exporter, err, errlen);
	if (!ret)
		ret = proxy_attach_tracer(proxy, *tracer);
	if (ret) {
		otlp_exporter_stop(*exporter);
		tracer_destroy(*tracer);
		*exporter = NULL;
		*tracer = NULL;
		return ret;
	}
	pr_info("tracing: %.0f %% of new traces to %s", t->sample_rate * 100, t->collector_url);
	return 0;
}

/*
 * A proxy worker whose loop has not turned for this long is wedged: the
 * heartbeat stops, so the datapath fails the node open after
 * bpf.failopen_after_ms (docs/proxy.md, "A wedged worker fails the node
 * open"). Every loop in a turn is bounded (a turn takes microseconds to
 * a few ms); 2 s leaves room for a loaded node's scheduling delays.
 */
#define WORKER_STALL_MS 2000

/*
 * Test only (tests/e2e/wedged.sh): with SHOALD_TEST_STALL_MS=N in the
 * environment, SIGUSR1 makes proxy worker 0 sleep N ms in its loop, as a
 * wedged worker would. Without it SIGUSR1 keeps its default action.
 */
static uint32_t test_stall_ms;

/* Set while a wedged worker holds the heartbeat back, for the log's edges. */
static bool heartbeat_held;

/*
 * Beat the fail-open heartbeat, unless a proxy worker is wedged: the main
 * thread running proves nothing about the workers that serve the
 * redirected connections.
 */
static void heartbeat(struct datapath *dp, struct proxy *proxy)
{
	uint64_t ms;
	int id = proxy_stalled_worker(proxy, WORKER_STALL_MS, &ms);

	if (id >= 0) {
		if (!heartbeat_held) {
			if (ms == UINT64_MAX)
				pr_warn("proxy worker %d exited: heartbeat stopped, the node fails open",
					id);
			else
				pr_warn("proxy worker %d has not turned for %llu ms (limit %d): heartbeat "
					"stopped, the node fails open",
					id, (unsigned long long)ms, WORKER_STALL_MS);
		}
		heartbeat_held = true;
		return;
	}
	if (heartbeat_held)
		pr_info("every proxy worker turns again: heartbeat resumed");
	heartbeat_held = false;
	datapath_heartbeat(dp, true);
}

/*
 * Publish a new config from discovery: the proxy first, so that a new
 * service's first intercepted connection finds it, then the service maps
 * (docs/discovery.md). Takes cfg.
 */
static void apply_config(struct config *cfg, struct proxy *proxy, struct datapath *dp)
{
	int err;

	/*
	 * This loop also beats the fail-open heartbeat, and a large update
	 * takes a while (the endpoint-state sync is the slow part): beat
	 * around it, so only one update longer than failopen_after_ms could
	 * make the datapath fail open.
	 */
	heartbeat(dp, proxy);
	err = proxy_update(proxy, cfg);
	if (err) {
		pr_warn("discovery: the proxy refused the new configuration: %s", strerror(-err));
		config_free(cfg);
		return;
	}
	/* The proxy owns cfg now, and keeps it while it is the newest: until our next call. */
	heartbeat(dp, proxy);
	err = datapath_update_services(dp, cfg);
	if (err)
		pr_warn("discovery: the service maps are partly updated (%s); the next change "
			"repairs them",
			strerror(-err));
	heartbeat(dp, proxy);
	/* Tests and operators wait for this line: from here on every new
	 * request (keep-alive ones included) is routed with cfg. */
	pr_info("discovery: configuration applied: %d services", cfg->n_services);
}

/* The API client's options from cfg's kubernetes: section. 0 or -errno after logging. */
static int k8s_opts_from_config(const struct config *cfg, struct k8s_opts *ko)
{
	int err;

	memset(ko, 0, sizeof(*ko));
	snprintf(ko->api_server, sizeof(ko->api_server), "%s", cfg->k8s_api_server);
	snprintf(ko->ca_file, sizeof(ko->ca_file), "%s", cfg->k8s_ca_file);
	snprintf(ko->token_file, sizeof(ko->token_file), "%s", cfg->k8s_token_file);
	snprintf(ko->proxy_url, sizeof(ko->proxy_url), "%s", cfg->k8s_proxy_url);
	ko->backoff_max_ms = cfg->k8s_backoff_max_ms;
	err = k8s_opts_in_cluster(ko);
	if (err)
		pr_warn("kubernetes: no api_server in %s and KUBERNETES_SERVICE_HOST is not set "
			"(not in a cluster?)",
			cfg->path);
	return err;
}

/*
 * The discovery sources cfg asks for: the file always, the Kubernetes API
 * with a kubernetes: section. Returns 0 and *out, or -errno after logging.
 */
static int start_discovery(const struct config *cfg, struct discovery **out)
{
	struct k8s_opts ko;
	int err;

	if (!cfg->k8s_enabled)
		return discovery_start(cfg, NULL, out);
	err = k8s_opts_from_config(cfg, &ko);
	if (err)
		return err;
	return discovery_start(cfg, &ko, out);
}

/*
 * The call graph's caller names (proxy_set_caller_fn, docs/dashboards.md,
 * "Callers"): the client pod's "namespace/name" from enrollment's pods.
 * The workers look up with tryrdlock, so they never wait; stopping
 * enrollment takes the lock for writing first, so no lookup runs on a
 * freed one.
 */
static struct caller_names {
	pthread_rwlock_t lock;
	struct enroll *enr; /* NULL: no names (no enrollment, or stopped) */
} caller_names = {.lock = PTHREAD_RWLOCK_INITIALIZER};

static int caller_name(void *ctx, const struct sockaddr *peer, char *name, size_t len)
{
	struct caller_names *cn = ctx;
	char ns[ENROLL_MAX_NS], pod[ENROLL_MAX_NAME];
	struct shoal_addr ip;
	uint16_t port;
	int err;

	if (addr_from_sockaddr(peer, &ip, &port))
		return -ENOENT;
	if (pthread_rwlock_tryrdlock(&cn->lock))
		return -EAGAIN;
	err = cn->enr ? enroll_pod_name_try(cn->enr, &ip, ns, pod) : -ENOENT;
	pthread_rwlock_unlock(&cn->lock);
	if (!err && snprintf(name, len, "%s/%s", ns, pod) >= (int)len)
		name[len - 1] = '\0'; /* truncated: still one name per pod in practice */
	return err;
}

/* Stop enrollment, after the proxy's lookups are off it. NULL is fine. */
/*
 * The calling workload's identity for the encrypted hop
 * (proxy_set_identity_fn): the pod table's service account of the pod
 * with that address (docs/mtls.md). Shares caller_names' lock and enroll.
 */
static int pod_identity(void *ctx, const struct shoal_addr *addr, char *id, size_t len)
{
	struct caller_names *cn = ctx;
	char ns[ENROLL_MAX_NS], sa[ENROLL_MAX_NAME];
	int err;

	if (pthread_rwlock_tryrdlock(&cn->lock))
		return -EAGAIN;
	err = cn->enr ? enroll_pod_identity(cn->enr, 0, addr, ns, sa) : -ENOENT;
	pthread_rwlock_unlock(&cn->lock);
	if (err)
		return err;
	return snprintf(id, len, "%s/%s", ns, sa) < (int)len ? 0 : -ENAMETOOLONG;
}

/*
 * The encrypted hop (docs/mtls.md), when mtls.mode, or a namespace's or
 * service's mode, is not off (mtls.on): the tunnel,
 * on the identity controller's store (the config checks that identity:
 * is on). 0 or -errno after logging.
 */
static int start_tunnel(const struct config *cfg, struct proxy *proxy, struct identity *ident,
			struct tunnel **tunnel)
{
	char why[512];
	int err;

	static const char *const names[] = {"off", "permissive", "strict"};

	if (!cfg->mtls.on)
		return 0;
	if (!ident) {
		pr_warn("mtls: needs the identity section (the workloads' certificates)");
		return -EINVAL;
	}
	err = tunnel_start(cfg, identity_store(ident), proxy, (int)proxy_workers(proxy), tunnel, why,
			   sizeof(why));
	if (err) {
		pr_warn("%s", why);
		return err;
	}
	proxy_set_tunnel(proxy, *tunnel);
	pr_info("mtls: %s (%d namespaces and %d services with a mode of their own), node %s, "
		"trust domain %s, listening on port %u",
		names[cfg->mtls.mode], cfg->mtls.n_namespaces, cfg->mtls.n_services,
		cfg->mtls.node_name, cfg->identity.trust_domain, cfg->mtls.port);
	return 0;
}

static void enroll_stop_names(struct enroll *e)
{
	pthread_rwlock_wrlock(&caller_names.lock);
	if (caller_names.enr == e)
		caller_names.enr = NULL;
	pthread_rwlock_unlock(&caller_names.lock);
	enroll_stop(e);
}

/*
 * The identity source's accounts (identity.h): the service accounts of
 * the node's meshed pods that are not finished. Under caller_names' lock,
 * so that a stopped enrollment is never read; without one (stopped, or a
 * hand-over's drain) the list is "unknown" and nothing is dropped.
 */
static int meshed_accounts(void *arg, struct id_account *out, int max)
{
	struct caller_names *cn = arg;
	struct enroll_pod *pods = NULL;
	int n, k = 0;

	pthread_rwlock_rdlock(&cn->lock);
	n = cn->enr ? enroll_pods_copy(cn->enr, &pods) : -ENOENT;
	pthread_rwlock_unlock(&cn->lock);
	if (n < 0)
		return n;
	for (int i = 0; i < n && k < max; i++) {
		const struct enroll_pod *p = &pods[i];

		if ((p->state != ENROLL_STATE_PENDING && p->state != ENROLL_STATE_ENROLLED) ||
		    !strcmp(p->phase, "Succeeded") || !strcmp(p->phase, "Failed"))
			continue;
		snprintf(out[k].ns, sizeof(out[k].ns), "%s", p->ns);
		snprintf(out[k].sa, sizeof(out[k].sa), "%.*s", (int)sizeof(out[k].sa) - 1,
			 p->service_account);
		k++;
	}
	free(pods);
	return k;
}

/*
 * Automatic enrollment, when cfg has kubernetes.enrollment (*out stays
 * NULL otherwise): the node's name from the config or $NODE_NAME (the
 * DaemonSet sets it from the downward API), the cgroup scan root under
 * the cgroup2 mount found at run time. 0, or -errno after logging.
 */
static int start_enroll(const struct config *cfg, struct enroll **out)
{
	struct enroll_opts eo = {0};
	const char *node =
	    cfg->k8s_enroll_node_name[0] ? cfg->k8s_enroll_node_name : getenv("NODE_NAME");
	uint64_t id;
	int err;

	*out = NULL;
	if (!cfg->k8s_enabled || !cfg->k8s_enroll)
		return 0;
	if (!node || !*node) {
		pr_warn("enroll: no kubernetes.enrollment.node_name in %s and NODE_NAME is not set",
			cfg->path);
		return -EINVAL;
	}
	err = k8s_opts_from_config(cfg, &eo.k8s);
	if (err)
		return err;
	snprintf(eo.node_name, sizeof(eo.node_name), "%s", node);
	err = env_resolve_cgroup(cfg->k8s_enroll_cgroup_root, eo.cgroup_root,
				 sizeof(eo.cgroup_root), &id);
	if (err) {
		pr_warn("enroll: kubernetes.enrollment.cgroup_root %s: %s",
			cfg->k8s_enroll_cgroup_root, strerror(-err));
		return err;
	}
	snprintf(eo.cni_socket, sizeof(eo.cni_socket), "%s", cfg->k8s_enroll_cni_socket);
	snprintf(eo.netns_dir, sizeof(eo.netns_dir), "%s", cfg->k8s_enroll_netns_dir);
	snprintf(eo.pin_root, sizeof(eo.pin_root), "%s", cfg->pin_root);
	eo.resync_ms = cfg->k8s_enroll_resync_ms;
	return enroll_start(&eo, out);
}

/*
 * Raise the soft RLIMIT_NOFILE to the hard one: every proxied connection
 * holds two fds (client and upstream) plus pooled ones, and the usual soft
 * default of 1024 would turn a few hundred connections into EMFILE. Never
 * fails the start: the limit left is logged and the proxy pauses accepts
 * when it runs out.
 */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		pr_warn("cannot read the open files limit (RLIMIT_NOFILE): %s", strerror(errno));
		return;
	}
	if (rl.rlim_cur == rl.rlim_max) {
		pr_info("open files limit (RLIMIT_NOFILE): %llu", (unsigned long long)rl.rlim_cur);
		return;
	}
	{
		rlim_t was = rl.rlim_cur;

		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
			pr_warn("cannot raise the open files limit (RLIMIT_NOFILE) from %llu to %llu: "
				"%s",
				(unsigned long long)was, (unsigned long long)rl.rlim_max,
				strerror(errno));
			return;
		}
		pr_info("open files limit (RLIMIT_NOFILE): raised from %llu to %llu",
			(unsigned long long)was, (unsigned long long)rl.rlim_cur);
	}
}

/* How often the drain looks at the connections left. */
#define DRAIN_POLL_MS 20

static uint64_t monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * After SIGTERM (docs/proxy.md, "Stopping"): fail open at once, so that
 * new connections go straight to their destination, and give the
 * connections the proxy holds up to proxy.drain_timeout_ms to finish,
 * each HTTP keep-alive one closing after its current response. Returns
 * when none is left, at the deadline, or at a second signal. After a
 * hand-over (handed_over) the same, but the heartbeat is the new
 * shoald's: left alone, and new connections go to the new proxy.
 */
static void drain(const struct config *cfg, struct datapath *dp, struct proxy *proxy, int sig_fd,
		  bool handed_over)
{
	uint64_t start = monotonic_ms(), deadline = start + cfg->drain_timeout_ms;
	struct proxy_stats st;

	if (!handed_over)
		datapath_heartbeat(dp, false);
	if (!cfg->drain_timeout_ms)
		return;
	proxy_drain(proxy);
	for (;;) {
		struct pollfd pfd = { .fd = sig_fd, .events = POLLIN };
		uint64_t now = monotonic_ms();

		proxy_stats(proxy, &st);
		if (!st.active) {
			pr_info("drained every connection in %llu ms",
				(unsigned long long)(now - start));
			return;
		}
		if (now >= deadline) {
			pr_info("drain deadline (proxy.drain_timeout_ms %u) passed: resetting %llu "
				"connections",
				cfg->drain_timeout_ms, (unsigned long long)st.active);
			return;
		}
		if (poll(&pfd, 1, DRAIN_POLL_MS) > 0) {
			pr_info("signal again: resetting the %llu connections left",
				(unsigned long long)st.active);
			return;
		}
	}
}

/*
 * The old side of a hand-over (docs/upgrade.md): the session with a new
 * shoald, from its HELLO to its READY. Until READY nothing changes here:
 * the listeners stay ours and served, and the heartbeat ours to beat.
 */
struct handover_session {
	int listen_fd; /* -1: hand-over off */
	int fd;	       /* the session, -1 when none */
	uint32_t peer_pid;
	uint64_t deadline_ms; /* the session ends unconfirmed at this time */
};

static void session_end(struct handover_session *hs, const char *why)
{
	if (hs->fd < 0)
		return;
	pr_warn("hand-over: the session with the new shoald (pid %u) ended before it took over "
		"(%s); serving on",
		hs->peer_pid, why);
	close(hs->fd);
	hs->fd = -1;
}

/* A new shoald knocks: take it, unless a session runs already. */
static void session_accept(struct handover_session *hs)
{
	int fd = accept4(hs->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	struct timeval tv = {.tv_sec = HANDOVER_STEP_TIMEOUT_MS / 1000};

	if (fd < 0)
		return;
	if (hs->fd >= 0) {
		handover_send(fd, HANDOVER_REFUSE, NULL, 0, 0, 0,
			      "another hand-over is under way; try again");
		close(fd);
		return;
	}
	/* Blocking with timeouts: a send to a wedged peer cannot hold the heartbeat long. */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	hs->fd = fd;
	hs->peer_pid = 0;
	hs->deadline_ms = monotonic_ms() + 3 * HANDOVER_STEP_TIMEOUT_MS;
}

/* Send every listener, in packets of at most HANDOVER_FDS_PER_MSG. 0 or -errno. */
static int session_offer(struct handover_session *hs, struct proxy *proxy)
{
	static struct proxy_listen_fds lf;
	int n = proxy_listen_fds(proxy, &lf), sent = 0, err = 0;

	do {
		uint32_t k = (uint32_t)(n - sent) > HANDOVER_FDS_PER_MSG ? HANDOVER_FDS_PER_MSG
									 : (uint32_t)(n - sent);

		err = handover_send(hs->fd, HANDOVER_OFFER, lf.fd + sent, k, sent + (int)k == n,
				    (uint32_t)n, NULL);
		sent += (int)k;
	} while (!err && sent < n);
	if (!err)
		pr_info("hand-over: offered %d listeners to the new shoald (pid %u)", n,
			hs->peer_pid);
	return err;
}

/*
 * A packet on the session. Returns 1 when the new shoald confirmed (READY):
 * the caller lets go; 0 otherwise.
 */
static int session_read(struct handover_session *hs, struct proxy *proxy)
{
	struct handover_msg m;
	char err[256];
	uint32_t n;
	int fds[1], ret = handover_recv(hs->fd, &m, fds, 0, &n, err, sizeof(err));

	if (ret == -EPROTO) {
		pr_warn("%s", err);
		handover_send(hs->fd, HANDOVER_REFUSE, NULL, 0, 0, 0, err);
		session_end(hs, "protocol mismatch");
		return 0;
	}
	if (ret) {
		session_end(hs, ret == -EPIPE ? "it closed the socket: exited or killed"
					      : strerror(-ret));
		return 0;
	}
	switch (m.type) {
	case HANDOVER_HELLO:
		hs->peer_pid = m.pid;
		pr_info("hand-over: a new shoald (pid %u) asks to take over", m.pid);
		ret = session_offer(hs, proxy);
		if (ret)
			session_end(hs, strerror(-ret));
		return 0;
	case HANDOVER_READY:
		pr_info("hand-over: the new shoald (pid %u) serves and beats the heartbeat: "
			"letting go",
			hs->peer_pid);
		return 1;
	default:
		snprintf(err, sizeof(err), "hand-over: unexpected %s (type %u) from the new shoald",
			 handover_type_name(m.type), m.type);
		pr_warn("%s", err);
		handover_send(hs->fd, HANDOVER_REFUSE, NULL, 0, 0, 0, err);
		session_end(hs, "unexpected message");
		return 0;
	}
}

/* What ended serve(). */
enum serve_end {
	SERVE_SIGNAL,	  /* SIGTERM/SIGINT: drain failed open, then exit */
	SERVE_HANDED_OVER, /* a new shoald took over: drain, leave the heartbeat to it */
};

/*
 * Serve until SIGTERM/SIGINT or a hand-over, refreshing the heartbeat and
 * applying discovery's changes. Returns an enum serve_end, or -errno.
 */
static int serve(const struct config *cfg, struct datapath *dp, struct proxy *proxy,
		 struct discovery *disc, int sig_fd, struct handover_session *hs)
{
	/* Four beats per fail-open window: one late beat never fails open. */
	uint64_t period_ns = (uint64_t)cfg->failopen_after_ms * 1000000ull / 4;
	struct itimerspec its = {
		.it_interval = { period_ns / 1000000000ull, period_ns % 1000000000ull },
		.it_value = { period_ns / 1000000000ull, period_ns % 1000000000ull },
	};
	int timer_fd = timerfd_create(CLOCK_BOOTTIME, TFD_CLOEXEC);

	if (timer_fd < 0 || timerfd_settime(timer_fd, 0, &its, NULL) < 0) {
		pr_warn("cannot start the heartbeat timer: %s", strerror(errno));
		return -errno;
	}
	int end = SERVE_SIGNAL;

	heartbeat(dp, proxy);
	__atomic_store_n(&serving, true, __ATOMIC_RELEASE);
	for (;;) {
		struct pollfd fds[5] = { { .fd = sig_fd, .events = POLLIN },
					 { .fd = timer_fd, .events = POLLIN },
					 { .fd = discovery_fd(disc), .events = POLLIN },
					 { .fd = hs->listen_fd, .events = POLLIN },
					 { .fd = hs->fd, .events = POLLIN } };
		uint64_t ticks;

		if (poll(fds, 5, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (fds[1].revents & POLLIN) {
			if (read(timer_fd, &ticks, sizeof(ticks)) == sizeof(ticks)) {
				heartbeat(dp, proxy);
				/* Kernel mode's breaker, at the heartbeat's pace. */
				datapath_tick(dp);
			}
			if (hs->fd >= 0 && monotonic_ms() >= hs->deadline_ms)
				session_end(hs, "no READY in time");
		}
		if (fds[3].revents & POLLIN)
			session_accept(hs);
		if (hs->fd >= 0 && (fds[4].revents & (POLLIN | POLLHUP | POLLERR)) &&
		    session_read(hs, proxy) == 1) {
			end = SERVE_HANDED_OVER;
			break;
		}
		if (fds[2].revents & POLLIN) {
			struct config *next = NULL;

			if (discovery_poll(disc, &next) == 1)
				apply_config(next, proxy, dp);
		}
		if (fds[0].revents & POLLIN) {
			struct signalfd_siginfo si;

			if (read(sig_fd, &si, sizeof(si)) != sizeof(si))
				continue;
			if (si.ssi_signo == SIGUSR1) {
				proxy_test_stall(proxy, 0, test_stall_ms);
			} else {
				pr_info("signal %u: stopping; new connections fail open at once, "
					"connections open drain for up to %u ms",
					si.ssi_signo, cfg->drain_timeout_ms);
				break;
			}
		}
	}
	__atomic_store_n(&serving, false, __ATOMIC_RELEASE);
	close(timer_fd);
	return end;
}

/*
 * Test only (tests/e2e/upgrade.sh): SHOALD_TEST_HANDOVER_DIE=before-ready
 * makes a new shoald SIGKILL itself once its proxy runs on the inherited
 * listeners and it has beaten the heartbeat, just before READY: the
 * worst moment for the old one, which must keep serving.
 */
static bool test_die_before_ready(void)
{
	const char *v = getenv("SHOALD_TEST_HANDOVER_DIE");

	return v && !strcmp(v, "before-ready");
}

/*
 * The new side of a hand-over, first half: ask the shoald listening at
 * path for its listeners. Returns the session fd with *in filled when one
 * handed them over, -ENOENT when none listens there (a plain start), or
 * another -errno after logging: the old one refused or the protocol does
 * not match, and this one must not start beside it.
 */
static int takeover_begin(const char *path, struct proxy_listen_fds *in, uint32_t *old_pid)
{
	struct handover_msg m;
	char err[256];
	uint32_t n;
	int fd = handover_connect(path), ret;

	in->n = 0;
	if (fd == -ENOENT || fd == -ECONNREFUSED)
		return -ENOENT;
	if (fd < 0) {
		pr_warn("hand-over: cannot connect to %s: %s; starting without a hand-over", path,
			strerror(-fd));
		return -ENOENT;
	}
	ret = handover_send(fd, HANDOVER_HELLO, NULL, 0, 0, 0, NULL);
	for (bool last = false; !ret && !last;) {
		ret = handover_recv(fd, &m, in->fd + in->n,
				    (uint32_t)(PROXY_MAX_LISTEN_FDS - in->n) < HANDOVER_FDS_PER_MSG
					? (uint32_t)(PROXY_MAX_LISTEN_FDS - in->n)
					: HANDOVER_FDS_PER_MSG,
				    &n, err, sizeof(err));
		if (ret == -EPROTO) {
			pr_warn("%s", err);
			handover_send(fd, HANDOVER_REFUSE, NULL, 0, 0, 0, err);
			break;
		}
		if (ret)
			break;
		in->n += (int)n;
		*old_pid = m.pid;
		if (m.type == HANDOVER_REFUSE) {
			pr_warn("hand-over: the running shoald (pid %u) refused: %s", m.pid, m.text);
			ret = -EPROTO;
		} else if (m.type != HANDOVER_OFFER || m.total > PROXY_MAX_LISTEN_FDS ||
			   (m.last && (uint32_t)in->n != m.total)) {
			pr_warn("hand-over: unexpected %s (type %u, %d of %u fds) from the running "
				"shoald (pid %u)",
				handover_type_name(m.type), m.type, in->n, m.total, m.pid);
			ret = -EPROTO;
		}
		last = m.last;
	}
	if ((ret == -EPIPE || ret == -ECONNRESET) && !in->n) {
		/* It died before offering: its listeners died with it. */
		pr_warn("hand-over: the shoald at %s went away before offering its listeners; "
			"starting without a hand-over",
			path);
		close(fd);
		return -ENOENT;
	}
	if (ret) {
		if (ret != -EPROTO)
			pr_warn("hand-over: the running shoald at %s did not offer its listeners: %s",
				path, ret == -EAGAIN ? "timed out" : strerror(-ret));
		pr_warn("hand-over failed: not starting beside the running shoald; it serves on "
			"(stop it with SIGTERM for a plain restart)");
		for (int i = 0; i < in->n; i++)
			close(in->fd[i]);
		in->n = 0;
		close(fd);
		return ret == -EPROTO ? -EPROTO : -EIO;
	}
	pr_info("hand-over: took %d listeners from the running shoald (pid %u)", in->n, *old_pid);
	return fd;
}

/*
 * The second half, once the proxy runs on the inherited listeners (held)
 * and the heartbeat is beaten: READY, then accept, then wait for DONE (the
 * old one stopped accepting and freed the admin address). Either side
 * dying now leaves this one serving. Closes fd.
 */
static void takeover_finish(int fd, struct proxy *proxy, uint32_t old_pid)
{
	struct handover_msg m;
	char err[256];
	uint32_t n;
	int dummy[1], ret = handover_send(fd, HANDOVER_READY, NULL, 0, 0, 0, NULL);

	/* The sockets are shared: both processes accepting for a moment loses nothing. */
	proxy_accept_start(proxy);
	if (!ret)
		ret = handover_recv(fd, &m, dummy, 0, &n, err, sizeof(err));
	if (!ret && m.type != HANDOVER_DONE)
		ret = -EPROTO;
	if (ret)
		pr_warn("hand-over: no DONE from the old shoald (pid %u): %s; serving on", old_pid,
			ret == -EPIPE	 ? "it exited"
			: ret == -EAGAIN ? "timed out"
					 : strerror(-ret));
	else
		pr_info("hand-over: done; the old shoald (pid %u) drains", old_pid);
	close(fd);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "no-shortcut", no_argument, NULL, 'S' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "log-time", no_argument, NULL, 'T' },
		{ "no-log-time", no_argument, NULL, 'N' },
		{ "uninstall", no_argument, NULL, 'U' },
		{ "pin-root", required_argument, NULL, 'P' },
		{ "admin", required_argument, NULL, 'A' },
		{ "list-metrics", no_argument, NULL, 'M' },
		{ "handover-socket", required_argument, NULL, 'H' },
		{ "handover-wait", no_argument, NULL, 'W' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	const char *config_path = NULL, *pin_root = NULL, *admin_listen = NULL,
		   *handover_opt = NULL;
	static struct proxy_listen_fds inherit;
	struct handover_session hs = {.listen_fd = -1, .fd = -1};
	char handover_path[108] = "";
	uint32_t old_pid = 0;
	/* Whether exiting zeroes the heartbeat: not while an old shoald beats it
	 * (before READY), nor once a new one does (after a hand-over). */
	bool heartbeat_ours = true;
	int session_fd = -1, end = SERVE_SIGNAL;
	bool no_shortcut = false, uninstall = false, handover_wait = false;
	struct config *cfg = NULL;
	struct datapath *dp = NULL;
	struct proxy *proxy = NULL;
	struct admin *admin = NULL;
	struct discovery *disc = NULL;
	struct enroll *enr = NULL;
	struct identity *ident = NULL;
	struct tracer *tracer = NULL;
	struct otlp_exporter *exporter = NULL;
	struct tunnel *tunnel = NULL;
	struct timespec started;
	char err_msg[1024];
	enum log_level level;
	sigset_t sigs;
	int opt, err, sig_fd;

	/* The journal stamps each line itself; anything else gets our time. */
	log_set_time(log_time_default(getenv("JOURNAL_STREAM"), STDERR_FILENO));
	while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'S':
			no_shortcut = true;
			break;
		case 'L':
			if (parse_level(optarg, &level)) {
				fprintf(stderr, "shoald: --log-level: '%s' is not warn, info or debug\n",
					optarg);
				return 2;
			}
			log_set_level(level);
			break;
		case 'T':
			log_set_time(true);
			break;
		case 'N':
			log_set_time(false);
			break;
		case 'U':
			uninstall = true;
			break;
		case 'P':
			pin_root = optarg;
			break;
		case 'A':
			admin_listen = optarg;
			break;
		case 'H':
			handover_opt = optarg;
			break;
		case 'W':
			handover_wait = true;
			break;
		case 'M':
			metrics_print_docs();
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc || (!config_path && !(uninstall && pin_root))) {
		usage(stderr);
		return 2;
	}
	log_route_libbpf();

	if (config_path) {
		err = config_load(config_path, &cfg, err_msg, sizeof(err_msg));
		if (err) {
			pr_warn("%s", err_msg);
			pr_warn("refusing to start with an invalid configuration");
			return 2;
		}
	}
	if (uninstall) {
		err = datapath_uninstall(pin_root ? pin_root : cfg->pin_root);
		config_free(cfg);
		return err ? 1 : 0;
	}
	if (no_shortcut)
		cfg->shortcut = false;
	if (!admin_listen)
		admin_listen = cfg->admin.listen; /* --admin overrides admin.listen */

	/* Signals arrive through signalfd; worker threads inherit the mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	if (getenv("SHOALD_TEST_STALL_MS")) {
		test_stall_ms = (uint32_t)strtoul(getenv("SHOALD_TEST_STALL_MS"), NULL, 10);
		pr_warn("test mode: SIGUSR1 stalls proxy worker 0 for %u ms (SHOALD_TEST_STALL_MS)",
			test_stall_ms);
		sigaddset(&sigs, SIGUSR1);
	}
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN); /* a peer's reset is an error return, not a signal */
	sig_fd = signalfd(-1, &sigs, SFD_CLOEXEC);
	if (sig_fd < 0) {
		pr_warn("signalfd: %s", strerror(errno));
		err = -errno;
		goto out;
	}

	raise_nofile();
	if (!handover_opt)
		handover_default_path(cfg->pin_root, handover_path, sizeof(handover_path));
	else if (strcmp(handover_opt, "off") != 0 &&
		 snprintf(handover_path, sizeof(handover_path), "%s", handover_opt) >=
		     (int)sizeof(handover_path)) {
		pr_warn("--handover-socket %s: longer than a Unix socket path may be (%zu bytes)",
			handover_opt, sizeof(handover_path) - 1);
		err = -ENAMETOOLONG;
		goto out;
	}
	if (handover_path[0]) {
		session_fd = takeover_begin(handover_path, &inherit, &old_pid);
		if (session_fd < 0 && session_fd != -ENOENT) {
			err = session_fd;
			session_fd = -1;
			heartbeat_ours = false; /* the old one's */
			goto out;
		}
	}
	if (session_fd >= 0)
		heartbeat_ours = false;
	err = datapath_open(cfg, session_fd >= 0, &dp);
	if (err)
		goto out;
	if (session_fd >= 0)
		err = proxy_start_inherit(cfg, datapath_orig_dst, datapath_on_shortcut, dp, &inherit,
					  true, &proxy, err_msg, sizeof(err_msg));
	else
		err = proxy_start(cfg, datapath_orig_dst, datapath_on_shortcut, dp, &proxy, err_msg,
				  sizeof(err_msg));
	if (err) {
		pr_warn("cannot start the node proxy: %s", err_msg);
		goto out;
	}
	if (session_fd >= 0) {
		/* Beat before READY: the old one stops beating once it lets go. */
		heartbeat(dp, proxy);
		if (test_die_before_ready()) {
			pr_warn("test mode: dying before READY (SHOALD_TEST_HANDOVER_DIE)");
			raise(SIGKILL);
		}
		heartbeat_ours = true;
		takeover_finish(session_fd, proxy, old_pid);
		session_fd = -1;
		heartbeat(dp, proxy);
	}
	if (handover_path[0]) {
		hs.listen_fd = handover_listen(handover_path);
		if (hs.listen_fd < 0) {
			pr_warn("hand-over: cannot listen on %s: %s; a new shoald cannot take over "
				"from this one",
				handover_path, strerror(-hs.listen_fd));
			hs.listen_fd = -1;
		} else {
			pr_info("hand-over: a new shoald takes over through %s", handover_path);
		}
	}
	{
		char v4[ADDR_STR_MAX] = "-", v6[ADDR_STR_MAX] = "-";

		if (!addr_is_zero(&cfg->proxy_v4))
			addr_format(&cfg->proxy_v4, htons(cfg->proxy_port), v4, sizeof(v4));
		if (!addr_is_zero(&cfg->proxy_v6))
			addr_format(&cfg->proxy_v6, htons(cfg->proxy_port), v6, sizeof(v6));
		pr_info("ready: proxy on %s %s, %d services, shortcut %s", v4, v6,
			cfg->n_services, cfg->shortcut ? "on" : "off");
	}
	err = start_discovery(cfg, &disc);
	if (err)
		goto out;
	err = start_enroll(cfg, &enr);
	if (err)
		goto out;
	pthread_rwlock_wrlock(&caller_names.lock);
	caller_names.enr = enr;
	pthread_rwlock_unlock(&caller_names.lock);
	proxy_set_caller_fn(proxy, caller_name, &caller_names);
	if (cfg->identity.enabled) {
		err = identity_start(&cfg->identity, meshed_accounts, &caller_names, &ident);
		if (err)
			goto out;
	}
	proxy_set_identity_fn(proxy, pod_identity, &caller_names);
	err = start_tunnel(cfg, proxy, ident, &tunnel);
	if (err)
		goto out;
	err = tracing_start(cfg, proxy, &tracer, &exporter, err_msg, sizeof(err_msg));
	if (err) {
		pr_warn("cannot start tracing: %s", err_msg);
		goto out;
	}
	if (strcmp(admin_listen, "off") != 0) {
		struct admin_opts ao = {
		    .listen = admin_listen,
		    .sources = {.pin_root = cfg->pin_root,
				.proxy = proxy,
				.tracer = tracer,
				.discovery = disc,
				.enroll = enr,
				.identity = ident,
				.tunnel = tunnel},
		    .ready = agent_ready,
		    .ready_ctx = disc, /* synced at once without Kubernetes */
		};

		clock_gettime(CLOCK_REALTIME, &started);
		ao.sources.start_time = started.tv_sec + started.tv_nsec / 1e9;
		err = admin_start(&ao, &admin, err_msg, sizeof(err_msg));
		if (err) {
			pr_warn("%s", err_msg);
			goto out;
		}
		pr_info("admin endpoint on %s (/healthz /readyz /metrics /debug /dashboard)", admin_listen);
	}
	end = serve(cfg, dp, proxy, disc, sig_fd, &hs);
	err = end < 0 ? end : 0;
	if (end == SERVE_HANDED_OVER) {
		/*
		 * The new shoald accepts and beats now. Let go of what it needs
		 * (the listeners, the hand-over socket, the admin address, the
		 * CNI socket) before DONE; what it does not (discovery) after
		 * the drain, at out: stopping discovery took 8.8 s once on a
		 * loaded machine, and the drain must not wait for it.
		 */
		heartbeat_ours = false;
		proxy_release_listeners(proxy);
		handover_close(hs.listen_fd, NULL); /* the file is the new one's now */
		hs.listen_fd = -1;
		admin_stop(admin);
		admin = NULL;
		enroll_stop_names(enr);
		enr = NULL;
		if (handover_send(hs.fd, HANDOVER_DONE, NULL, 0, 0, 0, NULL))
			pr_warn("hand-over: cannot send DONE to the new shoald (pid %u)", hs.peer_pid);
		close(hs.fd);
		hs.fd = -1;
		pr_info("handed over to the new shoald (pid %u): draining for up to %u ms",
			hs.peer_pid, cfg->drain_timeout_ms);
	}
	if (end >= 0)
		drain(cfg, dp, proxy, sig_fd, end == SERVE_HANDED_OVER);
out:
	/* Fail open first, then stop the proxy: no connect is sent to a
	 * listener that is about to close. */
	if (dp && heartbeat_ours)
		datapath_heartbeat(dp, false);
	if (hs.fd >= 0)
		close(hs.fd);
	handover_close(hs.listen_fd, handover_path); /* a plain stop: the file goes too */
	if (session_fd >= 0)
		close(session_fd);
	admin_stop(admin);	/* it reads the proxy's and discovery's stats: stop it first */
	discovery_stop(disc);	/* its threads write into the model only */
	if (tunnel) {
		/* The hop reads identity's store, and the workers hand it calls:
		 * the proxy, then the hop, then identity. */
		tunnel_release_proxy(tunnel);
		proxy_stop(proxy);
		proxy = NULL;
		tunnel_stop(tunnel);
		tunnel = NULL;
	}
	identity_stop(ident);	/* before enrollment: it asks it for the accounts */
	enroll_stop_names(enr); /* the enrolled map stays: pods stay meshed across a restart */
	proxy_stop(proxy);
	/* The workers are gone: the rings' last spans go out, then they are freed. */
	otlp_exporter_stop(exporter);
	tracer_destroy(tracer);
	datapath_close(dp);
	if (end == SERVE_HANDED_OVER && handover_wait && sig_fd >= 0) {
		struct signalfd_siginfo si;

		/* Holding nothing now; exiting would only get the container restarted. */
		pr_info("handed over and drained: waiting for SIGTERM (--handover-wait)");
		while (read(sig_fd, &si, sizeof(si)) < 0 && errno == EINTR)
			;
	}
	if (sig_fd >= 0)
		close(sig_fd);
	config_free(cfg);
	return err ? 1 : 0;
}
