/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The BPF ABI of shoal: every map key and value, and every constant that
 * the kernel programs (bpf/) and the agent (agent/) share. Types only; no
 * code. Both sides include this file, so nothing is defined twice.
 *
 * Byte order is explicit: fields named *_be or typed __be16/__be32 hold
 * network byte order, everything else host order.
 *
 * Addresses are always 16 bytes. An IPv4 address is stored v4-mapped
 * (::ffff:a.b.c.d), so a v4 socket and an AF_INET6 socket using a mapped
 * address produce the same key.
 */
#ifndef SHOAL_ABI_H
#define SHOAL_ABI_H

#ifdef __bpf__
/* vmlinux.h already provides the kernel's fixed-width types. */
#else
#include <linux/types.h>
#endif

/*
 * Layout version of the pinned maps. Bump it whenever any struct below,
 * any map type or any max_entries changes: a new agent refuses to adopt
 * pins of another version instead of misreading them (docs/bpf.md).
 */
#define SHOAL_LAYOUT_VERSION 4

/* Default pin root; overridable in the config file (bpf.pin_root). */
#define SHOAL_DEFAULT_PIN_ROOT "/sys/fs/bpf/shoal"

/*
 * Default SO_MARK on every socket the proxy opens. connect4/6 skip marked
 * sockets (loop avoidance) and sockops recognises the proxy's upstream
 * sockets by it. 0x5348 is "SH"; override with bpf.socket_mark if it
 * collides with a fwmark your routing already uses.
 */
#define SHOAL_DEFAULT_SOCKET_MARK 0x5348

/* Default port of the node proxy listener (Istio's outbound port). */
#define SHOAL_DEFAULT_PROXY_PORT 15001

/*
 * Map sizes. Each is a ceiling on what one node can hold, chosen so the
 * whole set stays under ~40 MiB of kernel memory.
 */
/* Service (VIP, port) entries: 4k services x 4 ports, with room. */
#define SHOAL_MAX_SERVICE_KEYS 16384
/* Service ids index the per-service counter array. */
#define SHOAL_MAX_SERVICES 16384
/* Enrolled network namespaces (pods) on one node; kubelet's max is 110-250. */
#define SHOAL_MAX_ENROLLED 4096
/*
 * In-flight original-destination hand-offs (connect done, proxy not yet
 * accepted). LRU, so a proxy that never accepts cannot wedge the map.
 */
#define SHOAL_MAX_HANDOFFS 65536
/*
 * Proxied connections whose sockets the shortcut SOCKHASH holds at once: as
 * many as the hand-off map tracks, and one worker's default
 * proxy.max_connections.
 */
#define SHOAL_MAX_SHORTCUT_CONNS 65536
/*
 * Sockets in the shortcut SOCKHASH. A proxied connection puts up to four
 * there (docs/bpf.md, "Which sockets join the shortcut"): the application's
 * socket, the proxy's accepted socket, the proxy's upstream socket, and an
 * enrolled local backend's accepted socket. A full map costs nothing but
 * the shortcut: the socket that does not fit stays on TCP (shortcut_full).
 */
#define SHOAL_MAX_SHORTCUT_SOCKETS (4 * SHOAL_MAX_SHORTCUT_CONNS)
/*
 * The proxy's upstream connections not yet accepted by a local backend.
 * LRU: an upstream connection to another node is never consumed, and ages
 * out. One per proxied connection in flight.
 */
#define SHOAL_MAX_UPSTREAMS SHOAL_MAX_SHORTCUT_CONNS
/*
 * Kernel-mode L4 (docs/bpf.md, "Kernel mode"). Endpoints of one
 * (service, port, family) that connect4/6 chooses among: a set is one map
 * value (8 KiB at 256), which bounds the P2C's indices for the verifier.
 * A kernel-mode port with more endpoints of a family than this is served
 * by the proxy instead (the agent logs it).
 */
#define SHOAL_KL4_MAX_ENDPOINTS 256
/* Kernel-mode (service, port, family) sets: 1024 x 8 KiB = 8 MiB at most. */
#define SHOAL_KL4_MAX_SETS 1024
/* Distinct kernel-mode endpoints (address, port) whose costs are kept. */
#define SHOAL_KL4_MAX_COSTS 65536
/*
 * A failed active connect folds into the endpoint's cost as a sample this
 * large (1 s, in us): the peak rule makes it the endpoint's cost at once,
 * so P2C skips it after its first failure while any other endpoint
 * answers, and it decays back (SHOAL_KL4_HALF_LIFE_NS) to be tried again.
 */
#define SHOAL_KL4_FAIL_COST_US 1000000ull
/*
 * A cost halves for every this long without a sample: the kernel's decay,
 * so that a slow or failed endpoint is tried again without any agent
 * (PeakEWMA's tau of 10 s is a half-life of 6.9 s; 5 s is close to it).
 */
#define SHOAL_KL4_HALF_LIFE_NS (5ull * 1000000000ull)
/* A sample below the estimate moves it by 1/2^SHIFT (TCP's own srtt gain, 1/8). */
#define SHOAL_KL4_EWMA_SHIFT 3
/* P2C draws before it gives up on finding an endpoint that is not ejected. */
#define SHOAL_KL4_PICK_ROUNDS 4

/* An IPv6 address, or an IPv4 address in v4-mapped form. */
struct shoal_addr {
	__be32 ip6[4];
};

/* shoal_meta[0]: who made these pins. */
struct shoal_meta {
	__u32 layout_version; /* SHOAL_LAYOUT_VERSION of the agent that pinned */
	__u32 pad;
	__u64 created_boot_ns; /* CLOCK_BOOTTIME when the maps were created */
};

/* Bits of shoal_config.flags. */
enum shoal_config_flag {
	/* Put node-local proxied sockets in the SOCKHASH (the kill switch). */
	SHOAL_CFG_SHORTCUT = 1u << 0,
};

/*
 * shoal_config[0]: runtime knobs, written by the agent. Programs read it on
 * every hook, so a change (kill switch, proxy address) takes effect on the
 * next connect without reloading anything.
 */
struct shoal_config {
	struct shoal_addr proxy_v4;  /* node proxy IPv4 (mapped); zero: none */
	struct shoal_addr proxy_v6;  /* node proxy IPv6; zero: none */
	__be16 proxy_port;           /* node proxy port */
	__u16 pad0;
	__u32 socket_mark;           /* SO_MARK of the proxy's own sockets */
	__u32 flags;                 /* enum shoal_config_flag */
	__u32 pad1;
	/*
	 * Fail open: connect4/6 redirect only while
	 * now - heartbeat_boot_ns < failopen_after_ns. The agent refreshes
	 * the heartbeat several times per failopen_after_ns, and zeroes it
	 * on a clean exit so that fail-open is immediate.
	 */
	__u64 heartbeat_boot_ns;     /* CLOCK_BOOTTIME of the last heartbeat */
	__u64 failopen_after_ns;
};

/* Key of shoal_enrolled: which pods are meshed. */
struct shoal_enroll_key {
	__u64 netns_cookie; /* SO_NETNS_COOKIE of the pod's network namespace */
};

struct shoal_enroll_val {
	__u64 enrolled_boot_ns; /* when the agent enrolled it, for debugging */
};

/* Key of shoal_services: a service's (VIP, port, protocol). */
struct shoal_svc_key {
	struct shoal_addr vip;
	__be16 port;
	__u8 protocol; /* IPPROTO_TCP; IPPROTO_UDP is reserved for later */
	__u8 pad;
};

/* How a service's connections are steered. */
enum shoal_svc_mode {
	SHOAL_SVC_PROXY = 1,  /* rewrite to the node proxy */
	SHOAL_SVC_KERNEL = 2, /* connect4/6 pick an endpoint (shoal_kl4_sets) */
};

struct shoal_svc_val {
	__u32 svc_id; /* index into shoal_svc_stats, assigned by the agent */
	__u32 mode;   /* enum shoal_svc_mode */
};

/* shoal_svc_stats[svc_id], per CPU. */
struct shoal_svc_stats {
	__u64 intercepted; /* connects rewritten to the proxy */
	__u64 failed_open; /* connects let through because the proxy was stale */
};

/* Longest "namespace/name" of a service, with its NUL. */
#define SHOAL_SVC_NAME_LEN 128

/*
 * shoal_svc_names[svc_id]: which service an id stands for. Only user space
 * reads it (shoalctl, bpftool); the programs never do.
 */
struct shoal_svc_name {
	char name[SHOAL_SVC_NAME_LEN]; /* "namespace/name" */
};

/*
 * The original destination of an intercepted socket. Kept in socket-local
 * storage (freed with the socket) for getpeername, and copied into
 * shoal_handoff for the proxy to find after accept().
 */
/* Bits of shoal_orig_dst.flags. */
enum shoal_orig_flag {
	/* Kernel mode: connect4/6 rewrote to an endpoint, not the proxy;
	 * sockops measures the connection into shoal_kl4_costs. */
	SHOAL_ORIG_KERNEL = 1u << 0,
};

struct shoal_orig_dst {
	struct shoal_addr ip;
	__be16 port;
	__u16 flags; /* enum shoal_orig_flag */
	__u32 svc_id;
};

/* Key of shoal_kl4_sets: one kernel-mode service port, one family. */
struct shoal_kl4_set_key {
	__u32 svc_id;
	__be16 port;  /* the service port (the VIP's) */
	__u8 family;  /* 4 or 6: connect4 and v4-mapped connect6 use 4 */
	__u8 pad;
};

/* One endpoint of a set, as the agent publishes it. */
struct shoal_kl4_endpoint {
	struct shoal_addr ip;
	__be16 port;   /* the endpoint's (target) port */
	__u16 pad0;
	__u32 pad1;
	/* The agent's breaker: skipped while now < this (CLOCK_BOOTTIME);
	 * 0: admitted. A dead agent's ejections end on their own. */
	__u64 ejected_until_boot_ns;
};

struct shoal_kl4_set {
	__u32 n; /* endpoints[0..n) are valid */
	__u32 pad;
	struct shoal_kl4_endpoint endpoints[SHOAL_KL4_MAX_ENDPOINTS];
};

/* Key of shoal_kl4_costs: one endpoint, whatever sets list it. */
struct shoal_kl4_cost_key {
	struct shoal_addr ip;
	__be16 port;
	__u16 pad;
};

/*
 * shoal_kl4_costs: what the kernel measured of one endpoint. The agent
 * creates the entry (zero) when the endpoint enters a set and deletes it
 * when it leaves every set; the programs only update it. Counters are
 * atomic; est_us and updated_boot_ns are plain stores (a race between
 * two CPUs loses one sample, never corrupts the estimate).
 */
struct shoal_kl4_cost {
	__u64 est_us;          /* cost: peak-EWMA of connect RTTs, failures as FAIL_COST */
	__u64 updated_boot_ns; /* last sample; the cost halves every HALF_LIFE after it */
	__u64 connects;        /* active connects started to it (kernel mode) */
	__u64 established;     /* of those, established */
	__u64 failures;        /* of those, closed from SYN_SENT (refused, timed out) */
	__u32 consecutive_failures; /* failures since the last established */
	__u32 last_rtt_us;     /* the kernel's srtt of the last established connect */
};

/*
 * A TCP connection as one of its endpoints sees it. Keys shoal_handoff
 * (from the client's side: local = application, remote = proxy) and
 * shoal_shortcut (each socket under its own view; a sender finds its peer
 * under the mirrored key).
 */
struct shoal_flow_key {
	struct shoal_addr local_ip;
	struct shoal_addr remote_ip;
	__be16 local_port;
	__be16 remote_port;
	__u32 pad;
};

/*
 * shoal_upstream, keyed by the 4-tuple the peer of one of the proxy's
 * upstream sockets sees (local = backend, remote = proxy): the proxy
 * connected from there, so a local backend that accepts it may join the
 * shortcut. Any other socket whose peer has the node's address (kubelet
 * probes, NodePort and host-network clients) finds no entry.
 */
struct shoal_upstream_val {
	__u64 established_boot_ns; /* CLOCK_BOOTTIME of the proxy's ESTABLISHED */
};

/* Per-socket state of the sk_msg shortcut; socket-local storage. */
enum shoal_shortcut_mode {
	SHOAL_SHORTCUT_UNDECIDED = 0,
	/*
	 * Messages go straight onto the peer's redirect queue. The receiver
	 * reads that queue before its TCP receive queue, so the path may turn
	 * from redirect to TCP at any message (the redirected bytes are read
	 * first, as they were sent first), never from TCP to redirect.
	 */
	SHOAL_SHORTCUT_REDIRECT = 1,
	/*
	 * Messages take the TCP path, for good: the first one found no peer,
	 * or the peer's redirect queue outgrew SHOAL_SHORTCUT_QUEUE_MIN and
	 * its receive buffer (the kernel's redirect has no backpressure; TCP
	 * has).
	 */
	SHOAL_SHORTCUT_TCP = 2,
};

/*
 * A shortcut socket moves to TCP once its peer's redirect queue would hold
 * more than the peer's SO_RCVBUF, or this much if that is smaller. A fresh
 * socket's buffer is 128 KiB (tcp_rmem[1]), far below what autotuning
 * grants a TCP stream (tcp_rmem[2], 6 MiB by default): the floor lets a
 * burst or a short transfer stay on the shortcut while still bounding
 * what one socket can park in kernel memory.
 */
#define SHOAL_SHORTCUT_QUEUE_MIN (4u << 20)

struct shoal_shortcut_state {
	__u32 mode; /* enum shoal_shortcut_mode */
};

/*
 * shoal_counters[0], per CPU: datapath totals. Named fields so that
 * `bpftool map dump pinned .../shoal_counters` reads as a report.
 */
struct shoal_counters {
	__u64 connect_intercepted;   /* connects rewritten to the proxy */
	__u64 connect_svc_miss;      /* enrolled connect to a non-service address */
	__u64 connect_skipped_mark;  /* the proxy's own connects, left alone */
	__u64 connect_failed_open;   /* proxy stale: left to the original path */
	__u64 connect_no_proxy_addr; /* no proxy address of that family */
	__u64 storage_full;          /* socket storage could not be created */
	__u64 handoff_stored;        /* original destinations handed to proxy */
	__u64 handoff_full;          /* handoff map refused the entry */
	__u64 shortcut_inserted;     /* sockets put in the SOCKHASH */
	__u64 shortcut_full;         /* SOCKHASH refused a socket */
	__u64 shortcut_not_meshed;   /* accepted from the node address, left out */
	__u64 redirect_msgs;         /* sendmsg calls redirected to the peer */
	__u64 redirect_bytes;        /* bytes redirected to the peer */
	__u64 redirect_peer_miss;    /* first message found no peer: TCP path */
	__u64 redirect_failed;       /* redirect failed after it had worked */
	__u64 redirect_backlog_tcp;  /* peer's redirect queue full: to TCP */
	__u64 kernel_picked;         /* kernel mode: connects rewritten to an endpoint */
	__u64 kernel_no_endpoint;    /* kernel mode: no endpoint of that family, untouched */
	__u64 kernel_all_ejected;    /* kernel mode: only ejected endpoints drawn: used one */
};

/* Pinned names, relative to the pin root. */
#define SHOAL_PIN_MAPS_DIR "maps"
#define SHOAL_PIN_LINKS_DIR "links"

#endif /* SHOAL_ABI_H */
