/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Retry budget, per service: retries may add at most `ratio` of the
 * original requests, plus a floor of `min_per_s` retries per second, over
 * a sliding window of `ttl`. The semantics of tower's TpsBudget with
 * Linkerd's defaults; this is what keeps a failing service from getting a
 * retry storm on top of its load. Docs: docs/resilience.md.
 *
 * Accounting, in milli-retries: each original request deposits
 * ratio * 1000 into the bucket of its time slot; each retry withdraws 1000
 * from it, allowed while reserve + the sum of the live buckets is at least
 * 1000. The reserve is min_per_s * ttl retries and is never used up, so a
 * window can hold at most ratio * requests + min_per_s * ttl retries.
 * Buckets older than ttl drop out: both deposits and withdrawals expire.
 *
 * Thread-safe and lock-free: each bucket is one 64-bit word (its slot
 * generation and its balance), updated by CAS. withdraw() checks the sum,
 * then withdraws, so workers racing on the last token can each get one:
 * the budget may be exceeded by at most one retry per concurrent worker.
 */
#ifndef SHOAL_RESILIENCE_RETRY_BUDGET_H
#define SHOAL_RESILIENCE_RETRY_BUDGET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* Linkerd's defaults: 20 % extra load, 10 retries/s, a 10 s window. */
#define RETRY_BUDGET_DEFAULT_RATIO_MILLI 200 /* 0.2 */
#define RETRY_BUDGET_DEFAULT_MIN_PER_S 10
#define RETRY_BUDGET_DEFAULT_TTL_NS (10 * 1000000000ull)

/*
 * The window is cut into this many buckets: it slides in steps of ttl/10
 * (1 s by default), and a bucket expires between 0.9 and 1.0 ttl after
 * its first deposit. Finer costs more words to sum on every withdraw.
 */
#define RETRY_BUDGET_BUCKETS 10
/*
 * Above 10 retries per request a budget bounds nothing; the cap also
 * keeps a busy bucket's balance in 32 bits (200 k requests per bucket at
 * the cap, 10 M at the default ratio; beyond that deposits saturate, which
 * errs towards fewer retries).
 */
#define RETRY_BUDGET_MAX_RATIO_MILLI 10000
/* The reserve is kept below 2^31 milli-retries (2 M retries per window). */
#define RETRY_BUDGET_MAX_RESERVE_MILLI INT32_MAX
/* Window shorter than this is no window: 10 ms buckets at the least. */
#define RETRY_BUDGET_MIN_TTL_NS (100 * 1000000ull)

/* One retry, in the budget's unit. */
#define RETRY_BUDGET_MILLI 1000

/* Knobs, per service. Fill with retry_budget_cfg_default(). */
struct retry_budget_cfg {
	uint32_t ratio_milli; /* retries per original request, x1000: 200 = 0.2 */
	uint32_t min_per_s;   /* retries per second always allowed */
	uint64_t ttl_ns;      /* window length */
};

struct retry_budget {
	/* generation (ns / bucket_ns, 32 bits) << 32 | int32 balance */
	_Atomic uint64_t bucket[RETRY_BUDGET_BUCKETS];
	uint64_t bucket_ns;    /* ttl / RETRY_BUDGET_BUCKETS */
	int64_t reserve_milli; /* min_per_s * ttl, in milli-retries */
	int32_t deposit_milli; /* ratio_milli */
};

/* The defaults above. */
void retry_budget_cfg_default(struct retry_budget_cfg *cfg);

/*
 * 0, or -EINVAL when ratio exceeds RETRY_BUDGET_MAX_RATIO_MILLI, ttl is
 * below RETRY_BUDGET_MIN_TTL_NS, or the reserve exceeds its maximum.
 */
int retry_budget_cfg_check(const struct retry_budget_cfg *cfg);

/* An empty budget from cfg. Returns 0, or -EINVAL as retry_budget_cfg_check(). */
int retry_budget_init(struct retry_budget *b, const struct retry_budget_cfg *cfg);

/* An original request (not a retry) was sent at now_ns. Never fails. */
void retry_budget_deposit(struct retry_budget *b, uint64_t now_ns);

/*
 * May a retry be sent at now_ns? True: it is charged to the budget and
 * must be sent (or the charge is simply lost). False: the budget is spent.
 */
bool retry_budget_withdraw(struct retry_budget *b, uint64_t now_ns);

/* Would withdraw() say yes at now_ns? Nothing is charged. */
bool retry_budget_has_room(struct retry_budget *b, uint64_t now_ns);

/* What withdraw() can still take at now_ns, in milli-retries (>= 0). */
int64_t retry_budget_balance_milli(struct retry_budget *b, uint64_t now_ns);

/* Whole retries withdraw() would allow right now, for debug and metrics. */
uint64_t retry_budget_balance(struct retry_budget *b, uint64_t now_ns);

#endif
