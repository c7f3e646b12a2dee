// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Renewal and back-off times (sched.h). */
#include "identity/sched.h"

int64_t id_sched_renew_at(const struct id_sched_params *p, int64_t nb, int64_t na, double u)
{
	double life = (double)(na - nb), delay = life * p->renew_fraction;
	int64_t at;

	delay *= 1.0 + p->jitter * (2.0 * u - 1.0);
	at = nb + (int64_t)delay;
	/* a jitter or fraction that reaches the end still renews before it */
	if (at >= na)
		at = na - 1;
	if (at < nb)
		at = nb;
	return at;
}

int64_t id_sched_renew_after(const struct id_sched_params *p, int64_t received, int64_t nb,
			     int64_t na, double u)
{
	if (received > nb && received < na)
		nb = received;
	return id_sched_renew_at(p, nb, na, u);
}

int64_t id_sched_retry_at(const struct id_sched_params *p, int64_t now, unsigned attempt,
			  int64_t na, double u)
{
	uint64_t base = p->backoff_min_ms ? p->backoff_min_ms : 1;
	int64_t delay;

	for (unsigned i = 1; i < attempt && base < p->backoff_max_ms; i++)
		base *= 2;
	if (base > p->backoff_max_ms)
		base = p->backoff_max_ms;
	delay = (int64_t)(base / 2.0 + u * (base / 2.0));
	if (na > now && delay > (na - now) / 2) {
		delay = (na - now) / 2;
		if (delay < ID_SCHED_MIN_RETRY_MS)
			delay = ID_SCHED_MIN_RETRY_MS;
	}
	if (delay < 1)
		delay = 1;
	return now + delay;
}
