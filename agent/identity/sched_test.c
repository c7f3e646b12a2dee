// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include <criterion/criterion.h>

#include "balance/rng.h"
#include "identity/sched.h"

#define H (3600 * 1000LL)
static const struct id_sched_params def = {
    .renew_fraction = 0.5, .jitter = 0.1, .backoff_min_ms = 1000, .backoff_max_ms = 60000};

Test(identity_sched, renews_at_half_life_within_the_jitter)
{
	const int64_t nb = 1700000000000LL, na = nb + 24 * H;
	int64_t lo = INT64_MAX, hi = 0;
	struct rng r;

	/* the ends of u's range, and the middle */
	cr_assert_eq(id_sched_renew_at(&def, nb, na, 0.5), nb + 12 * H);
	cr_assert_eq(id_sched_renew_at(&def, nb, na, 0.0), nb + 12 * H - 72 * 60 * 1000);
	cr_assert_leq(id_sched_renew_at(&def, nb, na, 0.999999), nb + 12 * H + 72 * 60 * 1000);
	rng_seed(&r, 16);
	for (int i = 0; i < 100000; i++) {
		int64_t at = id_sched_renew_at(&def, nb, na, rng_unit(&r));

		lo = at < lo ? at : lo;
		hi = at > hi ? at : hi;
	}
	/* 10.8 h .. 13.2 h, and spread over nearly all of it */
	cr_assert_geq(lo, nb + 12 * H - 72 * 60 * 1000);
	cr_assert_leq(hi, nb + 12 * H + 72 * 60 * 1000);
	cr_assert_lt(lo, nb + 12 * H - 70 * 60 * 1000, "lo %lld", (long long)(lo - nb));
	cr_assert_gt(hi, nb + 12 * H + 70 * 60 * 1000, "hi %lld", (long long)(hi - nb));
	/* a 20 s test certificate */
	cr_assert_eq(id_sched_renew_at(&def, 0, 20000, 0.5), 10000);
}

Test(identity_sched, renewal_is_always_inside_the_life)
{
	const struct id_sched_params late = {.renew_fraction = 0.9, .jitter = 0.5};

	cr_assert_eq(id_sched_renew_at(&late, 0, 1000, 0.999999), 999);
	cr_assert_eq(id_sched_renew_at(&late, 0, 1000, 0.0), 450);
	cr_assert_eq(id_sched_renew_at(&late, 5, 6, 0.9), 5);
}

Test(identity_sched, a_backdated_certificate_counts_its_life_from_its_arrival)
{
	/* shoal-identity: notBefore 60 s in the past, 20 s of life from now */
	const int64_t now = 1000000, nb = now - 60000, na = now + 20000;

	cr_assert_eq(id_sched_renew_after(&def, now, nb, na, 0.5), now + 10000);
	cr_assert_geq(id_sched_renew_after(&def, now, nb, na, 0.0), now + 9000);
	cr_assert_leq(id_sched_renew_after(&def, now, nb, na, 0.999999), now + 11000);
	/* without it, the renewal would be due before the certificate arrived */
	cr_assert_lt(id_sched_renew_at(&def, nb, na, 0.5), now);
	/* a notBefore in the future (a clock behind the issuer's) counts from notBefore */
	cr_assert_eq(id_sched_renew_after(&def, now, now + 4000, now + 24000, 0.5), now + 14000);
}

Test(identity_sched, backoff_doubles_to_its_cap_with_equal_jitter)
{
	const int64_t now = 1000000;

	/* no certificate held (na 0): only the back-off */
	cr_assert_eq(id_sched_retry_at(&def, now, 1, 0, 0.0), now + 500);
	cr_assert_eq(id_sched_retry_at(&def, now, 1, 0, 0.999999), now + 999);
	cr_assert_eq(id_sched_retry_at(&def, now, 2, 0, 0.0), now + 1000);
	cr_assert_eq(id_sched_retry_at(&def, now, 3, 0, 0.0), now + 2000);
	cr_assert_eq(id_sched_retry_at(&def, now, 6, 0, 0.0), now + 16000);
	cr_assert_eq(id_sched_retry_at(&def, now, 7, 0, 0.0), now + 30000); /* 64 s -> cap 60 */
	for (unsigned a = 7; a < 200; a += 13) {
		int64_t at = id_sched_retry_at(&def, now, a, 0, 0.999999);

		cr_assert_leq(at, now + 60000, "attempt %u: %lld", a, (long long)(at - now));
		cr_assert_geq(at, now + 30000);
	}
	/* a huge attempt count does not overflow */
	cr_assert_leq(id_sched_retry_at(&def, now, 4000000000u, 0, 0.5), now + 60000);
}

Test(identity_sched, retries_come_before_the_held_certificate_expires)
{
	const int64_t now = 1000000;
	int64_t t = now, na = now + 90000; /* 90 s left */

	/* the cap would be 60 s; half of what is left is 45 s */
	cr_assert_eq(id_sched_retry_at(&def, now, 10, na, 0.999999), now + 45000);
	/* failing again and again: every try lands before the expiry, denser towards it */
	for (unsigned a = 1; a < 40; a++) {
		int64_t next = id_sched_retry_at(&def, t, a, na, 0.999999);

		cr_assert_gt(next, t);
		if (na - t > 2 * ID_SCHED_MIN_RETRY_MS)
			cr_assert_lt(next, na, "attempt %u at %lld", a, (long long)(t - now));
		t = next;
	}
	/* keep until expiry: held at na - 1, gone at na */
	cr_assert(id_sched_keep(na - 1, na));
	cr_assert_not(id_sched_keep(na, na));
	/* near the end the delay is at least the floor */
	cr_assert_eq(id_sched_retry_at(&def, na - 4, 20, na, 0.5), na - 4 + ID_SCHED_MIN_RETRY_MS);
}
