/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The datapath loader: finds cgroup2 and bpffs, loads shoal.bpf.o or
 * adopts the pinned maps and links of an earlier agent, attaches, pins,
 * and uninstalls. Also the map operations both shoald and shoalctl need.
 */
#ifndef SHOAL_DATAPATH_H
#define SHOAL_DATAPATH_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config/config.h"
#include "shoal/abi.h"

struct datapath;

/*
 * Load (or adopt) and attach the datapath described by cfg, then publish
 * the config map and the services. The heartbeat starts at zero (fail
 * open) unless keep_heartbeat: a hand-over (docs/upgrade.md) keeps the
 * one the running shoald beats, so that no connect fails open while both
 * processes run. Returns 0 and *out, or -errno after logging what failed
 * (naming the hook, the feature and the kernel that has it when the
 * kernel is too old).
 */
int datapath_open(const struct config *cfg, bool keep_heartbeat, struct datapath **out);

/*
 * Make the service maps (shoal_services, shoal_svc_names) hold exactly
 * cfg's services, writing only the entries that differ from the last
 * publish (docs/discovery.md). Main thread only. Returns 0, or -errno
 * after logging; the maps are then partly updated and the next call
 * repairs them.
 */
int datapath_update_services(struct datapath *dp, const struct config *cfg);

/*
 * Kernel mode: read the endpoints' costs and run the breaker (kl4_tick).
 * Call about once a second (with the heartbeat). Returns how many
 * endpoints it ejected.
 */
int datapath_tick(struct datapath *dp);

/* Close our fds. Pins and links stay: programs keep running. */
void datapath_close(struct datapath *dp);

/* Refresh the heartbeat (proxy alive). Cheap; call several times per
 * failopen_after_ms. alive=false zeroes it: instant fail open. */
int datapath_heartbeat(struct datapath *dp, bool alive);

/* proxy_on_shortcut_fn over shoal_sk_shortcut; ctx is the datapath. */
bool datapath_on_shortcut(void *ctx, int fd);

/* proxy_orig_dst_fn over the pinned shoal_handoff map; ctx is the datapath. */
int datapath_orig_dst(void *ctx, const struct sockaddr *peer, const struct sockaddr *local,
		      struct shoal_orig_dst *orig);

/* Remove every link, map and pin under pin_root that shoal made, and the
 * directories if empty. Returns 0, or -errno after logging. */
int datapath_uninstall(const char *pin_root);

#endif
