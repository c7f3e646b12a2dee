/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * When the issued source asks shoal-identity again (docs/identity.md,
 * "Renewal"): pure functions of times and a uniform random number, so
 * that the unit tests check the bounds exactly. Times are milliseconds
 * since the epoch.
 */
#ifndef SHOAL_IDENTITY_SCHED_H
#define SHOAL_IDENTITY_SCHED_H

#include <stdbool.h>
#include <stdint.h>

struct id_sched_params {
	double renew_fraction;	 /* of the life, e.g. 0.5 */
	double jitter;		 /* +- this fraction of the renewal delay, e.g. 0.1 */
	uint32_t backoff_min_ms; /* first retry */
	uint32_t backoff_max_ms; /* the cap */
};

/*
 * The retry delay never goes below this once a held certificate is near
 * its end: tighter would be a busy loop against an issuer that is down.
 */
#define ID_SCHED_MIN_RETRY_MS 10

/*
 * When to renew a certificate valid from nb to na (na > nb): nb plus
 * renew_fraction of the life, the delay spread by +- jitter with u
 * uniform in [0, 1), and always before na.
 */
int64_t id_sched_renew_at(const struct id_sched_params *p, int64_t nb, int64_t na, double u);

/*
 * The same for a certificate received at received: its life is counted
 * from max(nb, received), since an issuer backdates notBefore for clock
 * skew (shoal-identity by 60 s) and a 20 s certificate backdated by 60 s
 * would otherwise be due for renewal before it arrived.
 */
int64_t id_sched_renew_after(const struct id_sched_params *p, int64_t received, int64_t nb,
			     int64_t na, double u);

/*
 * When to try again after failure number attempt (1: the first failure)
 * at now: an exponential back-off from backoff_min_ms, doubled per
 * failure and capped at backoff_max_ms, with "equal jitter" (uniform in
 * [base/2, base], u in [0, 1)). While a certificate valid until na is
 * held (na > now), the delay is also at most half of what is left of it
 * (at least ID_SCHED_MIN_RETRY_MS), so that the tries get closer as its
 * expiry nears and the last ones come before it. na <= now: none held.
 */
int64_t id_sched_retry_at(const struct id_sched_params *p, int64_t now, unsigned attempt,
			  int64_t na, double u);

/* A certificate is kept, and handed out, while now < na: a failed renewal never drops it. */
static inline bool id_sched_keep(int64_t now, int64_t na)
{
	return now < na;
}

#endif
