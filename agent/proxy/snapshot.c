// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * A config snapshot's references (struct proxy_snap, proxy_int.h): taken
 * by the workers and their connections, dropped by any thread; the last
 * one frees it. Apart from proxy.c, which makes snapshots, because the
 * workers below it hold and drop them.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "proxy/proxy_int.h"
#include "proxy/timer.h"

void proxy_snap_get(struct proxy_snap *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void proxy_snap_put(struct proxy_snap *s)
{
	/* acq_rel: whoever frees sees every earlier holder's last use. */
	if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (s->es_view)
		es_view_retire(s->es, s->es_view, timer_now_ns());
	if (s->owned)
		config_free((struct config *)s->cfg);
	free(s);
}
