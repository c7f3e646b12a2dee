/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The fields of struct shoal_counters (include/shoal/abi.h), in order, with
 * their meaning: declared once here for shoalctl, the metrics endpoint and
 * docs/metrics.md. abi.h holds types only, so the names live on this side.
 */
#ifndef SHOAL_TELEMETRY_KERNEL_COUNTERS_H
#define SHOAL_TELEMETRY_KERNEL_COUNTERS_H

#include "shoal/abi.h"

#define SHOAL_KERNEL_COUNTERS(X)                                                                   \
	X(connect_intercepted, "Connects of enrolled pods rewritten to the node proxy.")           \
	X(connect_svc_miss, "Enrolled connects to an address that is no service.")                 \
	X(connect_skipped_mark, "The proxy's own connects, left alone (loop avoidance).")          \
	X(connect_failed_open, "Connects left to their original path: the proxy was not alive.")   \
	X(connect_no_proxy_addr, "Intercepted connects with no proxy address of their family.")    \
	X(storage_full, "Socket storage could not be allocated; the connect was left alone.")      \
	X(handoff_stored, "Original destinations handed to the proxy.")                            \
	X(handoff_full, "The hand-off map refused an entry.")                                      \
	X(shortcut_inserted, "Sockets put in the sockmap shortcut.")                               \
	X(shortcut_full, "The shortcut SOCKHASH refused a socket.")                                \
	X(shortcut_not_meshed,                                                                     \
	  "Sockets accepted from the node's address that are no proxied connection, left "         \
	  "off the shortcut (kubelet probes, NodePort and host-network clients).")                 \
	X(redirect_msgs, "sendmsg calls the sockmap shortcut carried.")                            \
	X(redirect_bytes, "Bytes the sockmap shortcut carried.")                                   \
	X(redirect_peer_miss, "Sockets whose first message found no peer; they stay on TCP.")      \
	X(redirect_failed, "Redirects that failed after earlier ones worked (peer gone).")        \
	X(redirect_backlog_tcp,                                                                    \
	  "Sockets moved to the TCP path for good: their peer's redirect queue was full.")        \
	X(kernel_picked, "Kernel-mode connects rewritten by connect4/6 to an endpoint they picked.") \
	X(kernel_no_endpoint,                                                                      \
	  "Kernel-mode connects with no endpoint of their family, left to their original path.")   \
	X(kernel_all_ejected,                                                                      \
	  "Kernel-mode connects whose draws found only ejected endpoints; one of them was used.")

#define SHOAL_KERNEL_COUNTER_COUNT_ONE(name, help) +1
_Static_assert(0 SHOAL_KERNEL_COUNTERS(SHOAL_KERNEL_COUNTER_COUNT_ONE) ==
		       sizeof(struct shoal_counters) / sizeof(__u64),
	       "SHOAL_KERNEL_COUNTERS must list every field of struct shoal_counters, in order");
#undef SHOAL_KERNEL_COUNTER_COUNT_ONE

#endif
