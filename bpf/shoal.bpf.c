// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * shoal's datapath, attached at one cgroup2 root:
 *
 *   connect4/6      enrolled pod -> (VIP, port): rewrite to the node proxy,
 *                   remember the original destination in socket storage;
 *                   for a kernel-mode port, pick the endpoint itself (P2C
 *                   over shoal_kl4_costs) and rewrite straight to it
 *   getpeername4/6  give the application the VIP back
 *   sockops         hand the original destination to the proxy (by
 *                   4-tuple) and put the sockets of proxied connections
 *                   in the SOCKHASH: intercepted application sockets, the
 *                   proxy's own, and enrolled backends' accepted from it
 *                   and measure kernel-mode connects (RTT, failures)
 *   sk_msg          redirect each sendmsg straight into the peer socket
 *
 * All programs return "allow" on every error path: the datapath can make a
 * connection take its original route, never fail it (fail open).
 */
#include "lib/helpers.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* bpf_sock_addr/bpf_sock_ops verdicts for cgroup hooks. */
#define SK_ALLOW 1

/* Port fields of bpf_sock_ops/sk_msg: remote is network order in the top
 * 16 bits of a host u32 (kernel quirk), local is host order. */
static __always_inline __be16 remote_port_be(__u32 remote_port)
{
	return bpf_htons((__u16)bpf_ntohl(remote_port));
}

static __always_inline __be16 local_port_be(__u32 local_port)
{
	return bpf_htons((__u16)local_port);
}

/*
 * The service an enrolled connect is addressed to, or NULL: not enrolled,
 * the proxy's own socket, or no service there.
 */
static __always_inline const struct shoal_svc_val *
service_lookup(void *ctx, struct bpf_sock *sk, const struct shoal_config *cfg,
	       const struct shoal_svc_key *key)
{
	const struct shoal_svc_val *svc;

	if (sk->mark == cfg->socket_mark) {
		/* The proxy's own sockets: never loop them back. */
		COUNT(connect_skipped_mark, 1);
		return NULL;
	}
	if (!netns_enrolled(bpf_get_netns_cookie(ctx)))
		return NULL;
	svc = bpf_map_lookup_elem(&shoal_services, key);
	if (!svc) {
		COUNT(connect_svc_miss, 1);
		return NULL;
	}
	return svc;
}

/* A proxy-mode service's connect goes to the proxy only while it is alive. */
static __always_inline bool proxy_usable(const struct shoal_config *cfg,
					 const struct shoal_svc_val *svc)
{
	if (!proxy_alive(cfg)) {
		struct shoal_svc_stats *st = bpf_map_lookup_elem(&shoal_svc_stats, &svc->svc_id);

		if (st)
			__sync_fetch_and_add(&st->failed_open, 1);
		COUNT(connect_failed_open, 1);
		return false;
	}
	return true;
}

/* Remember the original destination for getpeername and the proxy. */
static __always_inline bool intercept_remember(struct bpf_sock *sk, const struct shoal_svc_key *key,
					       const struct shoal_svc_val *svc, __u16 flags)
{
	struct shoal_orig_dst *orig;
	struct shoal_svc_stats *st;

	orig = bpf_sk_storage_get(&shoal_sk_orig, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!orig) {
		COUNT(storage_full, 1);
		return false;
	}
	orig->ip = key->vip;
	orig->port = key->port;
	orig->flags = flags;
	orig->svc_id = svc->svc_id;
	if (flags & SHOAL_ORIG_KERNEL) {
		COUNT(kernel_picked, 1);
		return true;
	}
	st = bpf_map_lookup_elem(&shoal_svc_stats, &svc->svc_id);
	if (st)
		__sync_fetch_and_add(&st->intercepted, 1);
	COUNT(connect_intercepted, 1);
	return true;
}

/*
 * Kernel mode: an endpoint's cost now. The estimate halves for every
 * SHOAL_KL4_HALF_LIFE_NS since its last sample, so an endpoint that went
 * slow or failed is tried again once the others cost more, with or
 * without an agent. No entry (not yet made by the agent): 0, tried first.
 */
static __always_inline __u64 kl4_cost(const struct shoal_kl4_endpoint *ep, __u64 now)
{
	struct shoal_kl4_cost_key k = {};
	struct shoal_kl4_cost *c;
	__u64 age, halvings;

	k.ip = ep->ip;
	k.port = ep->port;
	c = bpf_map_lookup_elem(&shoal_kl4_costs, &k);
	if (!c)
		return 0;
	age = now > c->updated_boot_ns ? now - c->updated_boot_ns : 0;
	halvings = age / SHOAL_KL4_HALF_LIFE_NS;
	if (halvings >= 63)
		return 0;
	return c->est_us >> halvings;
}

/*
 * An index below SHOAL_KL4_MAX_ENDPOINTS (a power of two) that the
 * verifier can see: a mask in asm, so the compiler neither drops it as
 * redundant (it knows i < n <= MAX) nor bounds another copy of i.
 */
static __always_inline __u64 kl4_index(__u64 i)
{
	_Static_assert((SHOAL_KL4_MAX_ENDPOINTS & (SHOAL_KL4_MAX_ENDPOINTS - 1)) == 0,
		       "SHOAL_KL4_MAX_ENDPOINTS must be a power of two");
	asm volatile("%0 &= %1" : "+r"(i) : "i"(SHOAL_KL4_MAX_ENDPOINTS - 1));
	return i;
}

/*
 * Kernel mode: P2C over the set's endpoints. Two distinct endpoints at
 * random, the cheaper wins; an ejected one (the agent's breaker) loses to
 * any other, and a pair of ejected ones is drawn again, up to
 * SHOAL_KL4_PICK_ROUNDS times, after which the last pair's cheaper one is
 * used anyway (never refuse a connect the datapath could make). NULL: the
 * set is missing or empty.
 */
static __always_inline const struct shoal_kl4_endpoint *kl4_pick(const struct shoal_svc_val *svc,
								 __be16 port, __u8 family)
{
	struct shoal_kl4_set_key key = { .svc_id = svc->svc_id, .port = port, .family = family };
	const struct shoal_kl4_endpoint *a, *b, *fallback = NULL;
	const struct shoal_kl4_set *set;
	__u64 now = bpf_ktime_get_boot_ns();
	__u32 n, i, j;

	set = bpf_map_lookup_elem(&shoal_kl4_sets, &key);
	if (!set)
		return NULL;
	n = set->n;
	if (n == 0 || n > SHOAL_KL4_MAX_ENDPOINTS)
		return NULL;
	if (n == 1)
		return &set->endpoints[0];
	for (int round = 0; round < SHOAL_KL4_PICK_ROUNDS; round++) {
		bool out_a, out_b;

		i = bpf_get_prandom_u32() % n;
		j = bpf_get_prandom_u32() % (n - 1);
		if (j >= i)
			j++;
		a = &set->endpoints[kl4_index(i)];
		b = &set->endpoints[kl4_index(j)];
		out_a = a->ejected_until_boot_ns > now;
		out_b = b->ejected_until_boot_ns > now;
		if (out_a && out_b) {
			fallback = kl4_cost(a, now) <= kl4_cost(b, now) ? a : b;
			continue;
		}
		if (out_a)
			return b;
		if (out_b)
			return a;
		return kl4_cost(a, now) <= kl4_cost(b, now) ? a : b;
	}
	COUNT(kernel_all_ejected, 1);
	return fallback;
}

SEC("cgroup/connect4")
int shoal_connect4(struct bpf_sock_addr *ctx)
{
	const struct shoal_kl4_endpoint *ep;
	const struct shoal_svc_val *svc;
	struct shoal_svc_key key = {};
	struct shoal_config *cfg;
	struct bpf_sock *sk = ctx->sk;

	if (!sk || ctx->protocol != IPPROTO_TCP)
		return SK_ALLOW;
	cfg = config_get();
	if (!cfg)
		return SK_ALLOW;
	addr_from_v4(&key.vip, ctx->user_ip4);
	key.port = (__be16)ctx->user_port;
	key.protocol = IPPROTO_TCP;
	svc = service_lookup(ctx, sk, cfg, &key);
	if (!svc)
		return SK_ALLOW;
	if (svc->mode == SHOAL_SVC_KERNEL) {
		/* No proxy in the path, so no heartbeat to check. */
		ep = kl4_pick(svc, key.port, 4);
		if (!ep) {
			COUNT(kernel_no_endpoint, 1);
			return SK_ALLOW;
		}
		if (!intercept_remember(sk, &key, svc, SHOAL_ORIG_KERNEL))
			return SK_ALLOW;
		ctx->user_ip4 = ep->ip.ip6[3];
		ctx->user_port = ep->port;
		return SK_ALLOW;
	}
	if (svc->mode != SHOAL_SVC_PROXY || !proxy_usable(cfg, svc))
		return SK_ALLOW;
	if (addr_is_zero(&cfg->proxy_v4)) {
		COUNT(connect_no_proxy_addr, 1);
		return SK_ALLOW;
	}
	if (!intercept_remember(sk, &key, svc, 0))
		return SK_ALLOW;
	ctx->user_ip4 = cfg->proxy_v4.ip6[3];
	ctx->user_port = cfg->proxy_port;
	return SK_ALLOW;
}

/*
 * AF_INET6 sockets, including IPv4-mapped destinations (::ffff:VIP): those
 * go through tcp_v4_connect without running connect4, so they are handled
 * here and rewritten to the mapped IPv4 proxy address (or, in kernel
 * mode, to an IPv4 endpoint, mapped).
 */
SEC("cgroup/connect6")
int shoal_connect6(struct bpf_sock_addr *ctx)
{
	const struct shoal_kl4_endpoint *ep;
	const struct shoal_svc_val *svc;
	const struct shoal_addr *proxy;
	struct shoal_svc_key key = {};
	struct shoal_config *cfg;
	struct bpf_sock *sk = ctx->sk;
	bool mapped;

	if (!sk || ctx->protocol != IPPROTO_TCP)
		return SK_ALLOW;
	cfg = config_get();
	if (!cfg)
		return SK_ALLOW;
	key.vip.ip6[0] = ctx->user_ip6[0];
	key.vip.ip6[1] = ctx->user_ip6[1];
	key.vip.ip6[2] = ctx->user_ip6[2];
	key.vip.ip6[3] = ctx->user_ip6[3];
	key.port = (__be16)ctx->user_port;
	key.protocol = IPPROTO_TCP;
	svc = service_lookup(ctx, sk, cfg, &key);
	if (!svc)
		return SK_ALLOW;
	mapped = addr_is_v4mapped(key.vip.ip6);
	if (svc->mode == SHOAL_SVC_KERNEL) {
		ep = kl4_pick(svc, key.port, mapped ? 4 : 6);
		if (!ep) {
			COUNT(kernel_no_endpoint, 1);
			return SK_ALLOW;
		}
		if (!intercept_remember(sk, &key, svc, SHOAL_ORIG_KERNEL))
			return SK_ALLOW;
		ctx->user_ip6[0] = ep->ip.ip6[0];
		ctx->user_ip6[1] = ep->ip.ip6[1];
		ctx->user_ip6[2] = ep->ip.ip6[2];
		ctx->user_ip6[3] = ep->ip.ip6[3];
		ctx->user_port = ep->port;
		return SK_ALLOW;
	}
	if (svc->mode != SHOAL_SVC_PROXY || !proxy_usable(cfg, svc))
		return SK_ALLOW;
	proxy = mapped ? &cfg->proxy_v4 : &cfg->proxy_v6;
	if (addr_is_zero(proxy)) {
		COUNT(connect_no_proxy_addr, 1);
		return SK_ALLOW;
	}
	if (!intercept_remember(sk, &key, svc, 0))
		return SK_ALLOW;
	ctx->user_ip6[0] = proxy->ip6[0];
	ctx->user_ip6[1] = proxy->ip6[1];
	ctx->user_ip6[2] = proxy->ip6[2];
	ctx->user_ip6[3] = proxy->ip6[3];
	ctx->user_port = cfg->proxy_port;
	return SK_ALLOW;
}

SEC("cgroup/getpeername4")
int shoal_peername4(struct bpf_sock_addr *ctx)
{
	struct shoal_orig_dst *orig;

	if (!ctx->sk)
		return SK_ALLOW;
	orig = bpf_sk_storage_get(&shoal_sk_orig, ctx->sk, 0, 0);
	if (!orig)
		return SK_ALLOW;
	ctx->user_ip4 = orig->ip.ip6[3];
	ctx->user_port = orig->port;
	return SK_ALLOW;
}

SEC("cgroup/getpeername6")
int shoal_peername6(struct bpf_sock_addr *ctx)
{
	struct shoal_orig_dst *orig;

	if (!ctx->sk)
		return SK_ALLOW;
	orig = bpf_sk_storage_get(&shoal_sk_orig, ctx->sk, 0, 0);
	if (!orig)
		return SK_ALLOW;
	ctx->user_ip6[0] = orig->ip.ip6[0];
	ctx->user_ip6[1] = orig->ip.ip6[1];
	ctx->user_ip6[2] = orig->ip.ip6[2];
	ctx->user_ip6[3] = orig->ip.ip6[3];
	ctx->user_port = orig->port;
	return SK_ALLOW;
}

/*
 * This socket's own view of its connection. For AF_INET6 sockets talking
 * to a v4-mapped peer the kernel keeps the real addresses in the v4
 * fields, so those are read and mapped.
 */
static __always_inline void flow_from_sockops(struct bpf_sock_ops *ctx, struct shoal_flow_key *k)
{
	__u32 rip6[4] = { ctx->remote_ip6[0], ctx->remote_ip6[1], ctx->remote_ip6[2],
			  ctx->remote_ip6[3] };

	if (ctx->family == AF_INET || addr_is_v4mapped(rip6)) {
		addr_from_v4(&k->local_ip, ctx->local_ip4);
		addr_from_v4(&k->remote_ip, ctx->remote_ip4);
	} else {
		k->local_ip.ip6[0] = ctx->local_ip6[0];
		k->local_ip.ip6[1] = ctx->local_ip6[1];
		k->local_ip.ip6[2] = ctx->local_ip6[2];
		k->local_ip.ip6[3] = ctx->local_ip6[3];
		k->remote_ip.ip6[0] = rip6[0];
		k->remote_ip.ip6[1] = rip6[1];
		k->remote_ip.ip6[2] = rip6[2];
		k->remote_ip.ip6[3] = rip6[3];
	}
	k->local_port = local_port_be(ctx->local_port);
	k->remote_port = remote_port_be(ctx->remote_port);
}

static __always_inline bool is_proxy_addr(const struct shoal_config *cfg, const struct shoal_addr *a)
{
	return addr_equal(a, &cfg->proxy_v4) || addr_equal(a, &cfg->proxy_v6);
}

static __always_inline void shortcut_insert(struct bpf_sock_ops *ctx, struct shoal_flow_key *k)
{
	struct bpf_sock *sk = ctx->sk;

	if (bpf_sock_hash_update(ctx, &shoal_shortcut, k, BPF_NOEXIST) != 0) {
		COUNT(shortcut_full, 1);
		return;
	}
	COUNT(shortcut_inserted, 1);
	/* The socket's storage says "member" to the proxy, which looks it
	 * up by fd: a member's reads can come from two queues (opaque.c). */
	if (sk)
		bpf_sk_storage_get(&shoal_sk_shortcut, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
}

/*
 * If this socket was intercepted, publish its original destination under
 * its 4-tuple and return true. This runs before the final ACK of the
 * handshake is sent, so the entry exists before the proxy can accept() the
 * connection, and before the proxy's socket runs PASSIVE_ESTABLISHED.
 */
static __always_inline bool handoff_publish(struct bpf_sock_ops *ctx,
					    const struct shoal_flow_key *k)
{
	struct shoal_orig_dst *orig;
	struct bpf_sock *sk = ctx->sk;

	if (!sk)
		return false;
	orig = bpf_sk_storage_get(&shoal_sk_orig, sk, 0, 0);
	if (!orig)
		return false;
	if (bpf_map_update_elem(&shoal_handoff, k, orig, BPF_ANY) == 0)
		COUNT(handoff_stored, 1);
	else
		COUNT(handoff_full, 1);
	return true;
}

/* The same connection as its other endpoint sees it. */
static __always_inline void flow_mirror(const struct shoal_flow_key *k, struct shoal_flow_key *m)
{
	m->local_ip = k->remote_ip;
	m->remote_ip = k->local_ip;
	m->local_port = k->remote_port;
	m->remote_port = k->local_port;
	m->pad = 0;
}

/*
 * The proxy's upstream socket has connected: remember the connection under
 * the 4-tuple its peer sees, so that a local backend's accepted socket can
 * tell it from any other client with the node's address (kubelet probes,
 * NodePort and host-network clients), which must stay off the shortcut.
 * This runs before the final ACK of the handshake leaves, so before the
 * peer's PASSIVE_ESTABLISHED. LRU: a remote backend never consumes its
 * entry, and it ages out.
 */
static __always_inline void upstream_publish(const struct shoal_flow_key *k)
{
	struct shoal_upstream_val v = { .established_boot_ns = bpf_ktime_get_boot_ns() };
	struct shoal_flow_key m;

	flow_mirror(k, &m);
	bpf_map_update_elem(&shoal_upstream, &m, &v, BPF_ANY);
}

/*
 * Which accepted sockets join the SOCKHASH. Only two kinds may:
 *  - the proxy's own accepted socket, whose peer is an intercepted
 *    application socket (its hand-off is still pending: the proxy deletes
 *    it after accept(), which is later than this callback);
 *  - an enrolled pod's socket accepted from one of the proxy's upstream
 *    sockets (consumed from shoal_upstream).
 * Every other socket is never touched, however its peer's address looks.
 */
static __always_inline bool passive_meshed(struct bpf_sock_ops *ctx, const struct shoal_config *cfg,
					   const struct shoal_flow_key *k)
{
	struct shoal_flow_key m;

	if (k->local_port == cfg->proxy_port && is_proxy_addr(cfg, &k->local_ip)) {
		flow_mirror(k, &m);
		return bpf_map_lookup_elem(&shoal_handoff, &m) != NULL;
	}
	if (!bpf_map_lookup_elem(&shoal_upstream, k))
		return false;
	bpf_map_delete_elem(&shoal_upstream, k);
	return netns_enrolled(bpf_get_netns_cookie(ctx));
}

/*
 * Kernel mode: the cost entry of the endpoint this socket dialled (the
 * agent made it), or NULL.
 */
static __always_inline struct shoal_kl4_cost *kl4_cost_of(struct bpf_sock_ops *ctx)
{
	/* Every field read unconditionally, into scalars: a choice between
	 * two ctx fields compiled as a choice of pointer is refused by the
	 * verifier ("dereference of modified ctx ptr"). */
	__u32 rip6[4] = { ctx->remote_ip6[0], ctx->remote_ip6[1], ctx->remote_ip6[2],
			  ctx->remote_ip6[3] };
	__u32 rip4 = ctx->remote_ip4, family = ctx->family;
	struct shoal_kl4_cost_key ck = {};

	if (family == AF_INET || addr_is_v4mapped(rip6)) {
		addr_from_v4(&ck.ip, rip4);
	} else {
		ck.ip.ip6[0] = rip6[0];
		ck.ip.ip6[1] = rip6[1];
		ck.ip.ip6[2] = rip6[2];
		ck.ip.ip6[3] = rip6[3];
	}
	ck.port = remote_port_be(ctx->remote_port);
	return bpf_map_lookup_elem(&shoal_kl4_costs, &ck);
}

/* True if connect4/6 rewrote this socket in kernel mode. */
static __always_inline bool kl4_socket(struct bpf_sock_ops *ctx)
{
	struct shoal_orig_dst *orig;
	struct bpf_sock *sk = ctx->sk;

	if (!sk)
		return false;
	orig = bpf_sk_storage_get(&shoal_sk_orig, sk, 0, 0);
	return orig && (orig->flags & SHOAL_ORIG_KERNEL);
}

/*
 * Fold one sample (us) into an endpoint's cost: decay the estimate for
 * the time since its last sample (kl4_cost's rule), then the peak rule:
 * a sample above the estimate replaces it at once, one below moves it by
 * 1/2^SHOAL_KL4_EWMA_SHIFT.
 */
static __always_inline void kl4_fold(struct shoal_kl4_cost *c, __u64 sample_us)
{
	__u64 now = bpf_ktime_get_boot_ns(), est = c->est_us, age, halvings;

	age = now > c->updated_boot_ns ? now - c->updated_boot_ns : 0;
	halvings = age / SHOAL_KL4_HALF_LIFE_NS;
	est = halvings >= 63 ? 0 : est >> halvings;
	if (sample_us >= est)
		est = sample_us;
	else
		est = est - (est >> SHOAL_KL4_EWMA_SHIFT) + (sample_us >> SHOAL_KL4_EWMA_SHIFT);
	c->est_us = est;
	c->updated_boot_ns = now;
}

/*
 * Kernel mode, the measurements. TCP_CONNECT (the SYN is about to leave):
 * count the connect and ask for state callbacks. ACTIVE_ESTABLISHED: the
 * kernel's srtt (from the SYN-ACK) is the sample. RTO in SYN_SENT: the SYN
 * went unanswered for a retransmission timeout, which folds as
 * SHOAL_KL4_FAIL_COST_US at once. STATE SYN_SENT -> CLOSE: the connect
 * failed (refused, timed out, or given up by the application), counted,
 * and folds as SHOAL_KL4_FAIL_COST_US.
 */
static __always_inline void kl4_sockops(struct bpf_sock_ops *ctx)
{
	struct shoal_kl4_cost *c;
	__u32 rtt_us;

	switch (ctx->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		if (!kl4_socket(ctx))
			return;
		bpf_sock_ops_cb_flags_set(ctx, ctx->bpf_sock_ops_cb_flags |
						       BPF_SOCK_OPS_STATE_CB_FLAG |
						       BPF_SOCK_OPS_RTO_CB_FLAG);
		c = kl4_cost_of(ctx);
		if (c)
			__sync_fetch_and_add(&c->connects, 1);
		return;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		c = kl4_cost_of(ctx);
		if (!c)
			return;
		__sync_fetch_and_add(&c->established, 1);
		c->consecutive_failures = 0;
		rtt_us = ctx->srtt_us >> 3; /* tcp_sock.srtt_us holds 8 x srtt */
		if (!rtt_us)
			rtt_us = 1;
		c->last_rtt_us = rtt_us;
		kl4_fold(c, rtt_us);
		return;
	case BPF_SOCK_OPS_RTO_CB:
		/* The SYN timed out once (1 s): the endpoint may be gone.
		 * Penalise it now rather than when the connect gives up, so
		 * that the connects after this one go elsewhere; an answer
		 * later lowers the cost again by the peak rule's EWMA. */
		if (ctx->state != BPF_TCP_SYN_SENT)
			return;
		c = kl4_cost_of(ctx);
		if (c)
			kl4_fold(c, SHOAL_KL4_FAIL_COST_US);
		return;
	case BPF_SOCK_OPS_STATE_CB:
		if (ctx->args[0] != BPF_TCP_SYN_SENT || ctx->args[1] != BPF_TCP_CLOSE)
			return;
		c = kl4_cost_of(ctx);
		if (!c)
			return;
		__sync_fetch_and_add(&c->failures, 1);
		__sync_fetch_and_add(&c->consecutive_failures, 1);
		kl4_fold(c, SHOAL_KL4_FAIL_COST_US);
		return;
	}
}

SEC("sockops")
int shoal_sockops(struct bpf_sock_ops *ctx)
{
	struct shoal_flow_key k = {};
	struct shoal_config *cfg;
	struct bpf_sock *sk;
	bool shortcut;

	if (ctx->family != AF_INET && ctx->family != AF_INET6)
		return SK_ALLOW;
	if (ctx->op == BPF_SOCK_OPS_TCP_CONNECT_CB || ctx->op == BPF_SOCK_OPS_STATE_CB ||
	    ctx->op == BPF_SOCK_OPS_RTO_CB) {
		kl4_sockops(ctx);
		return SK_ALLOW;
	}
	if (ctx->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB &&
	    ctx->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return SK_ALLOW;
	cfg = config_get();
	if (!cfg)
		return SK_ALLOW;
	flow_from_sockops(ctx, &k);
	shortcut = cfg->flags & SHOAL_CFG_SHORTCUT;

	if (ctx->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB) {
		sk = ctx->sk;
		if (sk && sk->mark == cfg->socket_mark) {
			/* The proxy's upstream socket. */
			if (shortcut) {
				upstream_publish(&k);
				shortcut_insert(ctx, &k);
			}
			return SK_ALLOW;
		}
		if (k.remote_port != cfg->proxy_port || !is_proxy_addr(cfg, &k.remote_ip)) {
			/* Not to the proxy: maybe a kernel-mode connect. */
			if (kl4_socket(ctx))
				kl4_sockops(ctx);
			return SK_ALLOW;
		}
		/* An application socket rewritten to the proxy (connect4/6 left
		 * its original destination in its storage); any other socket
		 * that dials the proxy's address is left alone. */
		if (handoff_publish(ctx, &k) && shortcut)
			shortcut_insert(ctx, &k);
		return SK_ALLOW;
	}

	if (!shortcut)
		return SK_ALLOW;
	if (passive_meshed(ctx, cfg, &k))
		shortcut_insert(ctx, &k);
	else if (is_proxy_addr(cfg, &k.remote_ip))
		COUNT(shortcut_not_meshed, 1);
	return SK_ALLOW;
}

/* Kernel 6.2+ kfuncs: the kernel's struct behind a context, and a
 * read-only view of a kernel object by BTF id. */
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;

/* Low bits of sk_user_data that flag what it points to (include/net/sock.h). */
#define SK_USER_DATA_FLAG_BITS 7UL

/*
 * Bytes redirected to the peer that the kernel has just picked for MSG
 * (bpf_msg_redirect_hash sets it) and that the peer has not read yet,
 * and the peer's SO_RCVBUF. psock->msg_tot_len (kernel 6.8+) counts the
 * redirect queue; the reads are lockless, which only makes the bound
 * approximate by a message.
 */
static __always_inline void peer_backlog(struct sk_msg_md *msg, __u32 *queued, __u32 *rcvbuf)
{
	struct sk_msg *kmsg = bpf_cast_to_kern_ctx(msg);
	struct sock *peer = kmsg->sk_redir;
	struct sk_psock *psock;
	unsigned long udata;

	*queued = 0;
	*rcvbuf = 0;
	if (!peer)
		return;
	*rcvbuf = peer->sk_rcvbuf;
	udata = (unsigned long)peer->sk_user_data & ~SK_USER_DATA_FLAG_BITS;
	if (!udata)
		return;
	psock = bpf_rdonly_cast((void *)udata, bpf_core_type_id_kernel(struct sk_psock));
	*queued = psock->msg_tot_len;
}

SEC("sk_msg")
int shoal_sk_msg(struct sk_msg_md *msg)
{
	struct shoal_shortcut_state *st;
	struct shoal_flow_key peer = {};
	__u32 rip6[4] = { msg->remote_ip6[0], msg->remote_ip6[1], msg->remote_ip6[2],
			  msg->remote_ip6[3] };
	struct bpf_sock *sk = msg->sk;
	__u32 size = msg->size;

	if (!sk)
		return SK_PASS;
	st = bpf_sk_storage_get(&shoal_sk_shortcut, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st || st->mode == SHOAL_SHORTCUT_TCP)
		return SK_PASS;

	/* The peer socket is stored under its own view: mirror ours. */
	if (msg->family == AF_INET || addr_is_v4mapped(rip6)) {
		addr_from_v4(&peer.local_ip, msg->remote_ip4);
		addr_from_v4(&peer.remote_ip, msg->local_ip4);
	} else {
		peer.local_ip.ip6[0] = rip6[0];
		peer.local_ip.ip6[1] = rip6[1];
		peer.local_ip.ip6[2] = rip6[2];
		peer.local_ip.ip6[3] = rip6[3];
		peer.remote_ip.ip6[0] = msg->local_ip6[0];
		peer.remote_ip.ip6[1] = msg->local_ip6[1];
		peer.remote_ip.ip6[2] = msg->local_ip6[2];
		peer.remote_ip.ip6[3] = msg->local_ip6[3];
	}
	peer.local_port = remote_port_be(msg->remote_port);
	peer.remote_port = local_port_be(msg->local_port);

	if (bpf_msg_redirect_hash(msg, &shoal_shortcut, &peer, BPF_F_INGRESS) == SK_PASS) {
		__u32 queued, rcvbuf;

		st->mode = SHOAL_SHORTCUT_REDIRECT;
		COUNT(redirect_msgs, 1);
		COUNT(redirect_bytes, size);
		/*
		 * The redirect ignores the peer's SO_RCVBUF: a writer faster
		 * than its reader would queue without bound, until the node's
		 * TCP memory runs out. Once the queue passes the peer's buffer
		 * (at least SHOAL_SHORTCUT_QUEUE_MIN), later messages take TCP,
		 * whose window blocks the writer.
		 * Redirect-then-TCP keeps the byte order (the peer reads its
		 * redirect queue first); TCP-then-redirect would not, so the
		 * socket stays on TCP.
		 */
		peer_backlog(msg, &queued, &rcvbuf);
		if (rcvbuf < SHOAL_SHORTCUT_QUEUE_MIN)
			rcvbuf = SHOAL_SHORTCUT_QUEUE_MIN;
		if (queued && queued + size > rcvbuf) {
			st->mode = SHOAL_SHORTCUT_TCP;
			COUNT(redirect_backlog_tcp, 1);
		}
		return SK_PASS;
	}
	/* Not redirected: the message takes the TCP path, and so must every
	 * later one once any byte went that way (see enum shoal_shortcut_mode). */
	if (st->mode == SHOAL_SHORTCUT_UNDECIDED) {
		st->mode = SHOAL_SHORTCUT_TCP;
		COUNT(redirect_peer_miss, 1);
	} else {
		COUNT(redirect_failed, 1);
	}
	return SK_PASS;
}
