/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Operations on the pinned maps of a running (or crashed) datapath. They
 * need no loaded object, so shoalctl uses them as well as shoald.
 */
#ifndef SHOAL_DATAPATH_PINS_H
#define SHOAL_DATAPATH_PINS_H

#include <stdbool.h>
#include <stdint.h>

#include "shoal/abi.h"

/* Every map shoal pins, by name (the file under <pin_root>/maps). */
extern const char *const pins_map_names[];
extern const int pins_n_map_names;

/* Open <pin_root>/maps/<name>. Returns an fd or -errno. */
int pins_open_map(const char *pin_root, const char *name);

/* Map shoal_config (mmapable) for single-field atomic stores. Returns the
 * mapping or NULL with errno set; release with pins_config_unmap. */
struct shoal_config *pins_config_map(int config_fd);
void pins_config_unmap(struct shoal_config *cfg);

/*
 * The cookie of a network namespace, given as a path (/run/netns/NAME,
 * /proc/PID/ns/net) or a PID. Returns 0 or -errno after logging.
 */
int pins_netns_cookie(const char *netns, uint64_t *cookie);

/* Add (enroll) or remove a netns cookie in shoal_enrolled. -ENOENT when
 * removing one that is not there. */
int pins_enroll(const char *pin_root, uint64_t cookie, bool enroll);

/* Sum the per-CPU values of shoal_counters. */
int pins_read_counters(const char *pin_root, struct shoal_counters *sum);

/* Sum the per-CPU values of shoal_svc_stats[svc_id]. */
int pins_read_svc_stats(int stats_fd, uint32_t svc_id, struct shoal_svc_stats *sum);

#endif
