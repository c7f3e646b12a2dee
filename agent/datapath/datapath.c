// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Load or adopt the datapath. The order is libbpf-bootstrap's: open, load,
 * publish config, attach; with one twist for restarts: maps are reused
 * from their pins (libbpf checks type, key, value and size), and links
 * already pinned are updated in place with the new programs, so sockets in
 * the SOCKHASH and connections in flight never notice the restart.
 */
#include "datapath/datapath.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "common/addr.h"
#include "common/log.h"
#include "datapath/env.h"
#include "datapath/kl4.h"
#include "datapath/pins.h"
#include "shoal.skel.h"

/* One attachment: a program on the cgroup, or the sk_msg on the SOCKHASH. */
struct hook {
	const char *link_name; /* pin file under <pin_root>/links */
	const char *prog_name; /* program in shoal.bpf.c */
	enum bpf_attach_type attach_type;
	bool on_cgroup;        /* false: attached to the shoal_shortcut map */
	const char *hook;      /* how a user would name it */
};

static const struct hook hooks[] = {
	{ "connect4", "shoal_connect4", BPF_CGROUP_INET4_CONNECT, true, "cgroup/connect4" },
	{ "connect6", "shoal_connect6", BPF_CGROUP_INET6_CONNECT, true, "cgroup/connect6" },
	{ "getpeername4", "shoal_peername4", BPF_CGROUP_INET4_GETPEERNAME, true,
	  "cgroup/getpeername4" },
	{ "getpeername6", "shoal_peername6", BPF_CGROUP_INET6_GETPEERNAME, true,
	  "cgroup/getpeername6" },
	{ "sockops", "shoal_sockops", BPF_CGROUP_SOCK_OPS, true, "sockops" },
	{ "sk_msg", "shoal_sk_msg", BPF_SK_MSG_VERDICT, false, "sk_msg on shoal_shortcut" },
};
#define N_HOOKS (sizeof(hooks) / sizeof(hooks[0]))

/*
 * What each hook needs from the kernel, and the first Linux release that
 * has it, so that a load failure names the missing piece. Where a helper
 * reached a program type later than its introduction, the later release
 * is given.
 */
struct kernel_need {
	enum bpf_prog_type prog_type;
	enum bpf_func_id helper; /* 0: the program type itself */
	const char *what;
	const char *hook;
	const char *since;
};

static const struct kernel_need needs[] = {
	{ BPF_PROG_TYPE_CGROUP_SOCK_ADDR, 0, "program type cgroup_sock_addr",
	  "cgroup/connect4, connect6", "4.17" },
	{ BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_FUNC_get_netns_cookie, "helper bpf_get_netns_cookie",
	  "cgroup/connect4, connect6", "5.7" },
	{ BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_FUNC_ktime_get_boot_ns,
	  "helper bpf_ktime_get_boot_ns", "cgroup/connect4, connect6", "5.8" },
	{ BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_FUNC_sk_storage_get, "helper bpf_sk_storage_get",
	  "cgroup/connect4, connect6, getpeername4, getpeername6", "5.15" },
	{ BPF_PROG_TYPE_SOCK_OPS, 0, "program type sock_ops", "sockops", "4.13" },
	{ BPF_PROG_TYPE_SOCK_OPS, BPF_FUNC_sock_hash_update, "helper bpf_sock_hash_update",
	  "sockops", "4.18" },
	{ BPF_PROG_TYPE_SOCK_OPS, BPF_FUNC_sk_storage_get, "helper bpf_sk_storage_get", "sockops",
	  "5.15" },
	/* Whether a local endpoint's socket is an enrolled pod's (docs/bpf.md). */
	{ BPF_PROG_TYPE_SOCK_OPS, BPF_FUNC_get_netns_cookie, "helper bpf_get_netns_cookie",
	  "sockops", "5.15" },
	{ BPF_PROG_TYPE_SOCK_OPS, BPF_FUNC_ktime_get_boot_ns, "helper bpf_ktime_get_boot_ns",
	  "sockops", "5.8" },
	/* Kernel mode: state callbacks for failed connects, and the P2C draw. */
	{ BPF_PROG_TYPE_SOCK_OPS, BPF_FUNC_sock_ops_cb_flags_set,
	  "helper bpf_sock_ops_cb_flags_set", "sockops", "4.16" },
	{ BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_FUNC_get_prandom_u32, "helper bpf_get_prandom_u32",
	  "cgroup/connect4, connect6", "4.17" },
	{ BPF_PROG_TYPE_SK_MSG, 0, "program type sk_msg", "sk_msg", "4.17" },
	{ BPF_PROG_TYPE_SK_MSG, BPF_FUNC_msg_redirect_hash, "helper bpf_msg_redirect_hash",
	  "sk_msg", "4.18" },
	{ BPF_PROG_TYPE_SK_MSG, BPF_FUNC_sk_storage_get, "helper bpf_sk_storage_get", "sk_msg",
	  "5.15" },
};

struct datapath {
	struct shoal *skel;
	char pin_root[PATH_MAX];
	int handoff_fd;              /* borrowed from skel */
	int sk_shortcut_fd;          /* borrowed from skel */
	struct shoal_config *config; /* mmap of shoal_config[0] */

	/* What publish_services wrote last: diffing against it keeps an
	 * update to the few entries that changed (docs/discovery.md). */
	struct svc_entry *published; /* sorted by key; NULL before the first publish */
	size_t n_published;
	uint64_t *name_hash; /* per svc_id: hash of the name written, 0 for none */
	struct kl4 *kl4;     /* kernel-mode sets and costs (kl4.h) */
};

static const char *kernel_release(void)
{
	static struct utsname u;

	if (!u.release[0] && uname(&u) < 0)
		return "unknown";
	return u.release;
}

/* After a failed load: name the first thing this kernel lacks, if any. */
static void explain_missing_feature(void)
{
	for (size_t i = 0; i < sizeof(needs) / sizeof(needs[0]); i++) {
		const struct kernel_need *n = &needs[i];
		int ok = n->helper ? libbpf_probe_bpf_helper(n->prog_type, n->helper, NULL)
				   : libbpf_probe_bpf_prog_type(n->prog_type, NULL);

		if (ok == 0) {
			pr_warn("kernel %s lacks %s, needed by hook %s; Linux %s or later has it",
				kernel_release(), n->what, n->hook, n->since);
			return;
		}
	}
	pr_warn("kernel %s: every feature shoal probes for is present; see the verifier "
		"messages above (run with --log-level debug for the whole log)",
		kernel_release());
}

/* Refuse pins made by an agent with another map layout. */
static int check_layout(const char *pin_root)
{
	struct shoal_meta meta = {};
	__u32 zero = 0;
	int fd = pins_open_map(pin_root, "shoal_meta"), err = 0;

	if (fd == -ENOENT)
		return 0; /* fresh install */
	if (fd < 0) {
		pr_warn("cannot open %s/maps/shoal_meta: %s", pin_root, strerror(-fd));
		return fd;
	}
	if (bpf_map_lookup_elem(fd, &zero, &meta) < 0) {
		err = -errno;
		pr_warn("cannot read %s/maps/shoal_meta: %s", pin_root, strerror(errno));
	} else if (meta.layout_version != SHOAL_LAYOUT_VERSION) {
		err = -EPROTO;
		pr_warn("the maps pinned under %s have layout version %u, this shoald uses %u; "
			"refusing to reuse them. Run 'shoalctl --pin-root %s uninstall' (this drops "
			"the shortcut of established connections), then start shoald again",
			pin_root, meta.layout_version, SHOAL_LAYOUT_VERSION, pin_root);
	}
	close(fd);
	return err;
}

static int publish_meta(struct datapath *dp)
{
	int fd = bpf_map__fd(dp->skel->maps.shoal_meta);
	struct shoal_meta meta = {};
	__u32 zero = 0;

	if (bpf_map_lookup_elem(fd, &zero, &meta) < 0)
		return -errno;
	if (meta.layout_version == SHOAL_LAYOUT_VERSION)
		return 0;
	meta.layout_version = SHOAL_LAYOUT_VERSION;
	meta.created_boot_ns = env_boot_ns();
	return bpf_map_update_elem(fd, &zero, &meta, BPF_ANY) < 0 ? -errno : 0;
}

/* Write every knob; the heartbeat starts at zero (fail open) until the
 * proxy is listening and the agent calls datapath_heartbeat(), unless
 * keep_heartbeat (a hand-over: the running shoald beats it). */
static int publish_config(struct datapath *dp, const struct config *cfg, bool keep_heartbeat)
{
	struct shoal_config val = {
		.proxy_v4 = cfg->proxy_v4,
		.proxy_v6 = cfg->proxy_v6,
		.proxy_port = htons(cfg->proxy_port),
		.socket_mark = cfg->socket_mark,
		.flags = cfg->shortcut ? SHOAL_CFG_SHORTCUT : 0,
		.heartbeat_boot_ns = 0,
		.failopen_after_ns = (__u64)cfg->failopen_after_ms * 1000000ull,
	};
	__u32 zero = 0;

	if (keep_heartbeat)
		val.heartbeat_boot_ns =
		    __atomic_load_n(&dp->config->heartbeat_boot_ns, __ATOMIC_ACQUIRE);
	if (bpf_map_update_elem(bpf_map__fd(dp->skel->maps.shoal_config), &zero, &val, BPF_ANY) < 0)
		return -errno;
	return 0;
}

/* One entry shoal_services should hold. */
struct svc_entry {
	struct shoal_svc_key key;
	struct shoal_svc_val val;
};

static int svc_entry_cmp(const void *a, const void *b)
{
	return memcmp(&((const struct svc_entry *)a)->key, &((const struct svc_entry *)b)->key,
		      sizeof(struct shoal_svc_key));
}

/* cfg's (VIP, port) entries, sorted by key; vacant ids have none. 0 or -ENOMEM. */
static int svc_entries(const struct config *cfg, struct svc_entry **out, size_t *n_out)
{
	struct svc_entry *e;
	size_t n = 0;

	for (int s = 0; s < cfg->n_services; s++)
		n += (size_t)cfg->services[s]->n_vips * (size_t)cfg->services[s]->n_ports;
	e = calloc(n ? n : 1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	n = 0;
	for (int s = 0; s < cfg->n_services; s++) {
		const struct config_service *svc = cfg->services[s];

		for (int v = 0; v < svc->n_vips; v++) {
			for (int p = 0; p < svc->n_ports; p++) {
				e[n].key.vip = svc->vips[v];
				e[n].key.port = htons(svc->ports[p].port);
				e[n].key.protocol = IPPROTO_TCP;
				e[n].val.svc_id = svc->id;
				e[n].val.mode = kl4_port_is_kernel(svc, &svc->ports[p])
						    ? SHOAL_SVC_KERNEL
						    : SHOAL_SVC_PROXY;
				n++;
			}
		}
	}
	qsort(e, n, sizeof(*e), svc_entry_cmp);
	*out = e;
	*n_out = n;
	return 0;
}

/* FNV-1a of a service's map name; never 0, which means "no name". */
static uint64_t name_hash(const char *s)
{
	uint64_t h = 14695981039346656037ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h ? h : 1;
}

/* Zero the per-CPU counters of id: the id now stands for another service. */
static void svc_stats_reset(struct datapath *dp, uint32_t id)
{
	int ncpus = libbpf_num_possible_cpus();
	struct shoal_svc_stats *zero;

	if (ncpus <= 0)
		return;
	zero = calloc((size_t)ncpus, sizeof(*zero));
	if (!zero)
		return;
	if (bpf_map_update_elem(bpf_map__fd(dp->skel->maps.shoal_svc_stats), &id, zero, BPF_ANY))
		pr_warn("cannot reset the counters of service id %u: %s", id, strerror(errno));
	free(zero);
}

/*
 * Make shoal_svc_names name exactly cfg's services. The first time, the
 * map may hold an earlier agent's names: every id is written and the
 * rest deleted, counters kept (a restart continues them). Later, only
 * changed ids are touched, and an id that passes to another service has
 * its counters zeroed, so no counter ever mixes two services.
 */
static int publish_names(struct datapath *dp, const struct config *cfg)
{
	int fd = bpf_map__fd(dp->skel->maps.shoal_svc_names);
	bool first = !dp->name_hash;
	__u32 id, next_id;
	bool walking = false;

	if (first) {
		dp->name_hash = calloc(SHOAL_MAX_SERVICES, sizeof(*dp->name_hash));
		if (!dp->name_hash)
			return -ENOMEM;
		/* Ids are dense from 0: drop every id past the last, and the vacant ones. */
		while (bpf_map_get_next_key(fd, walking ? &id : NULL, &next_id) == 0) {
			id = next_id;
			walking = true;
			if (next_id >= (__u32)cfg->n_services || !cfg->services[next_id]->n_vips)
				bpf_map_delete_elem(fd, &next_id);
		}
	}
	for (id = 0; id < SHOAL_MAX_SERVICES; id++) {
		const struct config_service *svc =
		    id < (__u32)cfg->n_services ? cfg->services[id] : NULL;
		struct shoal_svc_name name = {};
		uint64_t h;

		if (!svc || !svc->n_vips) {
			if (dp->name_hash[id]) {
				bpf_map_delete_elem(fd, &id);
				dp->name_hash[id] = 0;
			}
			continue;
		}
		snprintf(name.name, sizeof(name.name), "%s/%s", svc->namespace, svc->name);
		h = name_hash(name.name);
		if (h == dp->name_hash[id])
			continue;
		if (!first && dp->name_hash[id])
			svc_stats_reset(dp, id);
		if (bpf_map_update_elem(fd, &id, &name, BPF_ANY) < 0) {
			int err = -errno;

			pr_warn("cannot name service %u in shoal_svc_names: %s", id, strerror(-err));
			return err;
		}
		dp->name_hash[id] = h;
	}
	return 0;
}

/*
 * Make shoal_services hold exactly cfg's (VIP, port) keys, writing only
 * what differs from the last publish. The first publish after load or
 * adopt compares against the map itself, since a restart inherits the
 * previous agent's entries. Returns 0 or -errno after logging.
 */
static int publish_services(struct datapath *dp, const struct config *cfg)
{
	int fd = bpf_map__fd(dp->skel->maps.shoal_services);
	size_t n_want, n_added = 0, n_removed = 0, i = 0, j = 0;
	struct svc_entry *want, *have = dp->published;
	size_t n_have = dp->n_published;
	int err;

	err = svc_entries(cfg, &want, &n_want);
	if (err)
		return err;
	if (!have) {
		struct shoal_svc_key walk, next;
		bool walking = false;
		size_t cap = 0;

		/* What the map holds now becomes "have", values included. */
		n_have = 0;
		while (bpf_map_get_next_key(fd, walking ? &walk : NULL, &next) == 0) {
			walk = next;
			walking = true;
			if (n_have == cap) {
				struct svc_entry *grown;

				cap = cap ? 2 * cap : 256;
				grown = realloc(have, cap * sizeof(*have));
				if (!grown) {
					free(have);
					free(want);
					return -ENOMEM;
				}
				have = grown;
			}
			have[n_have].key = next;
			if (bpf_map_lookup_elem(fd, &next, &have[n_have].val) == 0)
				n_have++;
		}
		if (have)
			qsort(have, n_have, sizeof(*have), svc_entry_cmp);
	}
	/* Merge the two sorted lists: delete what is gone, write what is new or changed. */
	while (i < n_have || j < n_want) {
		int c = i == n_have ? 1 : j == n_want ? -1 : svc_entry_cmp(&have[i], &want[j]);

		if (c < 0) {
			bpf_map_delete_elem(fd, &have[i].key);
			n_removed++;
			i++;
			continue;
		}
		if (c > 0 || memcmp(&have[i].val, &want[j].val, sizeof(want[j].val))) {
			if (bpf_map_update_elem(fd, &want[j].key, &want[j].val, BPF_ANY) < 0) {
				err = -errno;
				pr_warn("cannot add service id %u to shoal_services: %s%s",
					want[j].val.svc_id, strerror(-err),
					err == -E2BIG ? " (map full)" : "");
				break;
			}
			n_added++;
		}
		if (c == 0)
			i++;
		j++;
	}
	free(have);
	dp->published = want;
	dp->n_published = n_want;
	if (err) {
		/* The map is partly written: compare against the map itself next time. */
		free(dp->published);
		dp->published = NULL;
		return err;
	}
	err = publish_names(dp, cfg);
	if (err)
		return err;
	pr_info("published %zu service (VIP, port) keys for %d service ids (%zu written, %zu "
		"removed)",
		n_want, cfg->n_services, n_added, n_removed);
	return 0;
}

int datapath_update_services(struct datapath *dp, const struct config *cfg)
{
	/* Endpoint sets first: a port turned kernel-mode finds its set. The
	 * services go on even if they failed: a kernel-mode port without its
	 * set leaves connects untouched (kernel_no_endpoint), never fails them. */
	int err = kl4_publish(dp->kl4, cfg), err2 = publish_services(dp, cfg);

	return err ? err : err2;
}

int datapath_tick(struct datapath *dp)
{
	return kl4_tick(dp->kl4, env_boot_ns());
}

static int link_path(const struct datapath *dp, const struct hook *h, char *buf, size_t len)
{
	if (snprintf(buf, len, "%s/%s/%s", dp->pin_root, SHOAL_PIN_LINKS_DIR, h->link_name) >=
	    (int)len)
		return -ENAMETOOLONG;
	return 0;
}

/*
 * Attach one hook, or adopt its pinned link by swapping in the new
 * program. Returns 1 when adopted, 0 when attached anew, -errno on error.
 */
static int attach_hook(struct datapath *dp, const struct hook *h, int cgroup_fd,
		       uint64_t cgroup_id, const char *cgroup_path)
{
	struct bpf_program *prog = bpf_object__find_program_by_name(dp->skel->obj, h->prog_name);
	int prog_fd = bpf_program__fd(prog);
	int target = h->on_cgroup ? cgroup_fd : bpf_map__fd(dp->skel->maps.shoal_shortcut);
	char path[PATH_MAX];
	int fd, err;

	err = link_path(dp, h, path, sizeof(path));
	if (err)
		return err;
	fd = bpf_obj_get(path);
	if (fd >= 0) {
		struct bpf_link_info info = {};
		__u32 len = sizeof(info);

		if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && h->on_cgroup &&
		    info.cgroup.cgroup_id != cgroup_id) {
			pr_warn("pinned link %s is attached to cgroup id %llu, but bpf.cgroup is %s "
				"(id %llu); run 'shoalctl --pin-root %s uninstall' first",
				path, (unsigned long long)info.cgroup.cgroup_id, cgroup_path,
				(unsigned long long)cgroup_id, dp->pin_root);
			close(fd);
			return -EEXIST;
		}
		if (bpf_link_update(fd, prog_fd, NULL) == 0) {
			close(fd);
			return 1;
		}
		err = -errno;
		close(fd);
		if (err != -ENOLINK) {
			pr_warn("cannot update pinned link %s (%s) to the new program: %s", path,
				h->hook, strerror(-err));
			return err;
		}
		/* Its cgroup or map went away: replace the dead link. */
		pr_info("pinned link %s is defunct; attaching anew", path);
		unlink(path);
	} else if (errno != ENOENT) {
		err = -errno;
		pr_warn("cannot open pinned link %s: %s", path, strerror(errno));
		return err;
	}

	fd = bpf_link_create(prog_fd, target, h->attach_type, NULL);
	if (fd < 0) {
		err = -errno;
		pr_warn("cannot attach %s to %s: %s", h->hook,
			h->on_cgroup ? cgroup_path : "the shoal_shortcut SOCKHASH", strerror(errno));
		if (!h->on_cgroup && (err == -EINVAL || err == -EOPNOTSUPP))
			pr_warn("links for sk_msg need Linux 6.10 or later (this is %s); "
				"disable the shortcut with bpf.shortcut: false",
				kernel_release());
		else if (h->on_cgroup && err == -EINVAL)
			pr_warn("cgroup bpf_link needs Linux 5.7 or later (this is %s)",
				kernel_release());
		return err;
	}
	if (bpf_obj_pin(fd, path) < 0) {
		err = -errno;
		pr_warn("cannot pin link %s: %s", path, strerror(errno));
		close(fd); /* unpinned: closing detaches it again */
		return err;
	}
	close(fd);
	return 0;
}

int datapath_open(const struct config *cfg, bool keep_heartbeat, struct datapath **out)
{
	LIBBPF_OPTS(bpf_object_open_opts, open_opts);
	char maps_dir[PATH_MAX], links_dir[PATH_MAX], cgroup_path[PATH_MAX];
	struct datapath *dp;
	uint64_t cgroup_id;
	int cgroup_fd = -1, err, adopted = 0;

	dp = calloc(1, sizeof(*dp));
	if (!dp)
		return -ENOMEM;
	snprintf(dp->pin_root, sizeof(dp->pin_root), "%s", cfg->pin_root);
	if (snprintf(maps_dir, sizeof(maps_dir), "%s/%s", cfg->pin_root, SHOAL_PIN_MAPS_DIR) >=
		    (int)sizeof(maps_dir) ||
	    snprintf(links_dir, sizeof(links_dir), "%s/%s", cfg->pin_root, SHOAL_PIN_LINKS_DIR) >=
		    (int)sizeof(links_dir)) {
		err = -ENAMETOOLONG;
		pr_warn("bpf.pin_root %s: too long", cfg->pin_root);
		goto err_free;
	}

	err = env_resolve_cgroup(cfg->cgroup, cgroup_path, sizeof(cgroup_path), &cgroup_id);
	if (err)
		goto err_free;
	cgroup_fd = open(cgroup_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cgroup_fd < 0) {
		err = -errno;
		pr_warn("cannot open cgroup %s: %s", cgroup_path, strerror(errno));
		goto err_free;
	}
	err = env_check_bpffs(cfg->pin_root);
	if (err) {
		pr_warn("bpf.pin_root %s is not on a bpf filesystem (%s); mount one with "
			"'mount -t bpf bpffs /sys/fs/bpf'",
			cfg->pin_root, err == -ENOENT ? "no bpffs there" : strerror(-err));
		goto err_cgroup;
	}
	err = env_mkdir_p(maps_dir);
	if (!err)
		err = env_mkdir_p(links_dir);
	if (err) {
		pr_warn("cannot create %s: %s", cfg->pin_root, strerror(-err));
		goto err_cgroup;
	}
	err = check_layout(cfg->pin_root);
	if (err)
		goto err_cgroup;

	open_opts.pin_root_path = maps_dir;
	dp->skel = shoal__open_opts(&open_opts);
	if (!dp->skel) {
		err = -errno;
		pr_warn("cannot open the BPF object: %s", strerror(errno));
		goto err_cgroup;
	}
	err = shoal__load(dp->skel);
	if (err) {
		pr_warn("cannot load the BPF programs: %s", strerror(-err));
		explain_missing_feature();
		goto err_skel;
	}
	dp->handoff_fd = bpf_map__fd(dp->skel->maps.shoal_handoff);
	dp->sk_shortcut_fd = bpf_map__fd(dp->skel->maps.shoal_sk_shortcut);
	dp->config = pins_config_map(bpf_map__fd(dp->skel->maps.shoal_config));
	if (!dp->config) {
		err = -errno;
		pr_warn("cannot mmap shoal_config: %s (BPF_F_MMAPABLE arrays need Linux 5.5)",
			strerror(errno));
		goto err_skel;
	}

	err = publish_meta(dp);
	if (!err)
		err = publish_config(dp, cfg, keep_heartbeat);
	if (err) {
		pr_warn("cannot write shoal_meta/shoal_config: %s", strerror(-err));
		goto err_unmap;
	}
	err = kl4_open(bpf_map__fd(dp->skel->maps.shoal_kl4_sets),
		       bpf_map__fd(dp->skel->maps.shoal_kl4_costs), &dp->kl4);
	if (!err)
		err = datapath_update_services(dp, cfg);
	if (err)
		goto err_unmap;

	/* Attach last: the programs find their config and services ready. */
	for (size_t i = 0; i < N_HOOKS; i++) {
		err = attach_hook(dp, &hooks[i], cgroup_fd, cgroup_id, cgroup_path);
		if (err < 0)
			goto err_unmap;
		adopted += err;
	}
	if (adopted)
		pr_info("adopted %d pinned links under %s (restart: programs updated in place)",
			adopted, links_dir);
	if ((size_t)adopted < N_HOOKS)
		pr_info("attached %zu links at cgroup %s, pinned under %s", N_HOOKS - adopted,
			cgroup_path, links_dir);
	close(cgroup_fd);
	*out = dp;
	return 0;

err_unmap:
	kl4_close(dp->kl4);
	pins_config_unmap(dp->config);
err_skel:
	shoal__destroy(dp->skel);
err_cgroup:
	close(cgroup_fd);
err_free:
	free(dp->published);
	free(dp->name_hash);
	free(dp);
	return err;
}

void datapath_close(struct datapath *dp)
{
	if (!dp)
		return;
	free(dp->published);
	free(dp->name_hash);
	kl4_close(dp->kl4);
	pins_config_unmap(dp->config);
	shoal__destroy(dp->skel);
	free(dp);
}

int datapath_heartbeat(struct datapath *dp, bool alive)
{
	__atomic_store_n(&dp->config->heartbeat_boot_ns, alive ? env_boot_ns() : 0,
			 __ATOMIC_RELEASE);
	return 0;
}

int datapath_orig_dst(void *ctx, const struct sockaddr *peer, const struct sockaddr *local,
		      struct shoal_orig_dst *orig)
{
	struct datapath *dp = ctx;
	struct shoal_flow_key key = {};

	/* The entry is keyed from the application's side: local = app. */
	if (addr_from_sockaddr(peer, &key.local_ip, &key.local_port) ||
	    addr_from_sockaddr(local, &key.remote_ip, &key.remote_port))
		return -EAFNOSUPPORT;
	if (bpf_map_lookup_and_delete_elem(dp->handoff_fd, &key, orig) == 0)
		return 0;
	return errno == ENOENT ? -ENOENT : -errno;
}

bool datapath_on_shortcut(void *ctx, int fd)
{
	struct datapath *dp = ctx;
	struct shoal_shortcut_state st;

	/* Socket storage is looked up by the socket's fd. Only ENOENT means
	 * "not a member"; any other error answers the safe "yes". */
	if (bpf_map_lookup_elem(dp->sk_shortcut_fd, &fd, &st) == 0)
		return true;
	return errno != ENOENT;
}

int datapath_uninstall(const char *pin_root)
{
	char path[PATH_MAX];
	int removed = 0, err = 0;

	/* Links first: unpinning the last reference detaches the program. */
	for (size_t i = 0; i < N_HOOKS; i++) {
		snprintf(path, sizeof(path), "%s/%s/%s", pin_root, SHOAL_PIN_LINKS_DIR,
			 hooks[i].link_name);
		if (unlink(path) == 0)
			removed++;
		else if (errno != ENOENT) {
			err = -errno;
			pr_warn("cannot remove %s: %s", path, strerror(errno));
		}
	}
	for (int i = 0; i < pins_n_map_names; i++) {
		snprintf(path, sizeof(path), "%s/%s/%s", pin_root, SHOAL_PIN_MAPS_DIR,
			 pins_map_names[i]);
		if (unlink(path) == 0)
			removed++;
		else if (errno != ENOENT) {
			err = -errno;
			pr_warn("cannot remove %s: %s", path, strerror(errno));
		}
	}
	/* Only our own directories, and only when nothing else is in them. */
	const char *dirs[] = { SHOAL_PIN_LINKS_DIR, SHOAL_PIN_MAPS_DIR, "" };

	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", pin_root, dirs[i]);
		if (rmdir(path) < 0 && errno != ENOENT) {
			err = -errno;
			pr_warn("cannot remove %s: %s (something not made by shoal is in it?)", path,
				strerror(errno));
		}
	}
	pr_info("uninstalled %d pins under %s", removed, pin_root);
	return err;
}
