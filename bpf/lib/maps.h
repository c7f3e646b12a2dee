/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Every map of shoal's datapath. Pinned by name under <pin_root>/maps so
 * that a restarted agent adopts them (libbpf reuses a pinned map whose
 * type, key, value and size match) and bpftool finds them.
 */
#ifndef SHOAL_BPF_MAPS_H
#define SHOAL_BPF_MAPS_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "shoal/abi.h"

/* Who made the pins: layout version, checked before adoption. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct shoal_meta);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shoal_meta SEC(".maps");

/*
 * Runtime knobs and the proxy heartbeat (fail open). Mmapable, so that the
 * agent's heartbeat and shoalctl's kill switch store single fields
 * atomically instead of racing read-modify-write updates of the struct.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct shoal_config);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shoal_config SEC(".maps");

/* Network namespaces whose connections are meshed. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SHOAL_MAX_ENROLLED);
	__type(key, struct shoal_enroll_key);
	__type(value, struct shoal_enroll_val);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shoal_enrolled SEC(".maps");

/* (VIP, port, protocol) -> service. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SHOAL_MAX_SERVICE_KEYS);
	__type(key, struct shoal_svc_key);
	__type(value, struct shoal_svc_val);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shoal_services SEC(".maps");

/* Per-service connect counters, indexed by svc_id. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SHOAL_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct shoal_svc_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shoal_svc_stats SEC(".maps");

/* svc_id -> "namespace/name", for shoalctl and bpftool only. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SHOAL_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct shoal_svc_name);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shoal_svc_names SEC(".maps");

/* Datapath totals. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct shoal_counters);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shoal_counters SEC(".maps");

/* Original destination of an intercepted socket, for its whole life. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct shoal_orig_dst);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shoal_sk_orig SEC(".maps");

/* Client 4-tuple -> original destination, until the proxy accepts. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SHOAL_MAX_HANDOFFS);
	__type(key, struct shoal_flow_key);
	__type(value, struct shoal_orig_dst);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shoal_handoff SEC(".maps");

/*
 * The proxy's upstream connections, under the 4-tuple their peer sees, from
 * the proxy's ESTABLISHED until a local backend's accept (or LRU eviction).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SHOAL_MAX_UPSTREAMS);
	__type(key, struct shoal_flow_key);
	__type(value, struct shoal_upstream_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shoal_upstream SEC(".maps");

/* Node-local proxied sockets, keyed by their own 4-tuple. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, SHOAL_MAX_SHORTCUT_SOCKETS);
	__type(key, struct shoal_flow_key);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shoal_shortcut SEC(".maps");

/* Path of each shortcut socket (enum shoal_shortcut_mode); it exists
 * exactly for the sockets put in shoal_shortcut. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct shoal_shortcut_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shoal_sk_shortcut SEC(".maps");

/*
 * Kernel mode: (svc_id, port, family) -> the endpoints connect4/6 pick
 * among, with the agent's breaker state. Written by the agent only.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SHOAL_KL4_MAX_SETS);
	__type(key, struct shoal_kl4_set_key);
	__type(value, struct shoal_kl4_set);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shoal_kl4_sets SEC(".maps");

/*
 * Kernel mode: (endpoint address, port) -> its cost and counters, updated
 * by sockops from the kernel's own measurements. Entries are made and
 * removed by the agent, so the programs never allocate.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SHOAL_KL4_MAX_COSTS);
	__type(key, struct shoal_kl4_cost_key);
	__type(value, struct shoal_kl4_cost);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shoal_kl4_costs SEC(".maps");

#endif /* SHOAL_BPF_MAPS_H */
