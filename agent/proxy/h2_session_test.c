// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* What the HTTP/2 kinds share (h2_session.c): the bucket of the resets we send. */
#include <criterion/criterion.h>

#include "config/config.h"
#include "proxy/h2_int.h"

#define S 1000000000ull

/* Tokens h2_reset_take gives at now_ns until the first refusal. */
static int takes(struct h2_down *d, const struct config *cfg, uint64_t now_ns)
{
	int n = 0;

	while (h2_reset_take(d, cfg, now_ns) && n < 1000000)
		n++;
	return n;
}

Test(h2_session, sent_resets_burst_then_rate)
{
	struct config cfg = {0};
	struct h2_down d = {0};
	uint64_t t = 5 * S;

	cfg.http2.max_sent_resets = 100;
	cfg.http2.reset_rate = 10;
	/* A new session has the whole burst, and no more. */
	cr_assert_eq(takes(&d, &cfg, t), 100);
	cr_assert_not(h2_reset_take(&d, &cfg, t));
	/* 10 per second after it: none in 50 ms, one in 100 ms... */
	cr_assert_eq(takes(&d, &cfg, t + S / 20), 0);
	cr_assert_eq(takes(&d, &cfg, t + S / 10), 1);
	/* ...and what a refill leaves over counts on: 150 ms after that gives 1,
	 * and 50 ms more another (100 ms since the first refill's remainder). */
	cr_assert_eq(takes(&d, &cfg, t + S / 10 + 3 * S / 20), 1);
	cr_assert_eq(takes(&d, &cfg, t + S / 10 + 4 * S / 20), 1);
	/* A quiet session fills up again, to the burst only. */
	cr_assert_eq(takes(&d, &cfg, t + 60 * S), 100);
	/* Days later (the product of time and rate must not wrap). */
	cr_assert_eq(takes(&d, &cfg, t + 60 * S + 86400 * 30 * S), 100);
}

Test(h2_session, sent_resets_high_rate)
{
	struct config cfg = {0};
	struct h2_down d = {0};

	cfg.http2.max_sent_resets = CONFIG_MAX_H2_RESETS;
	cfg.http2.reset_rate = CONFIG_MAX_H2_RESETS;
	cr_assert_eq(takes(&d, &cfg, S), CONFIG_MAX_H2_RESETS);
	cr_assert_eq(takes(&d, &cfg, S + S / 1000), CONFIG_MAX_H2_RESETS / 1000);
}
