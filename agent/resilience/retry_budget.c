// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "resilience/retry_budget.h"

#include <errno.h>

#define NS_PER_MS 1000000ull

void retry_budget_cfg_default(struct retry_budget_cfg *cfg)
{
	cfg->ratio_milli = RETRY_BUDGET_DEFAULT_RATIO_MILLI;
	cfg->min_per_s = RETRY_BUDGET_DEFAULT_MIN_PER_S;
	cfg->ttl_ns = RETRY_BUDGET_DEFAULT_TTL_NS;
}

/* min_per_s * ttl in milli-retries (= per_s * ttl_ms), or -1 when too large. */
static int64_t reserve_of(const struct retry_budget_cfg *cfg)
{
	uint64_t ttl_ms = cfg->ttl_ns / NS_PER_MS;

	if (cfg->min_per_s && ttl_ms > RETRY_BUDGET_MAX_RESERVE_MILLI / cfg->min_per_s)
		return -1;
	return (int64_t)(ttl_ms * cfg->min_per_s);
}

int retry_budget_cfg_check(const struct retry_budget_cfg *cfg)
{
	if (cfg->ratio_milli > RETRY_BUDGET_MAX_RATIO_MILLI)
		return -EINVAL;
	if (cfg->ttl_ns < RETRY_BUDGET_MIN_TTL_NS)
		return -EINVAL;
	if (reserve_of(cfg) < 0)
		return -EINVAL;
	return 0;
}

int retry_budget_init(struct retry_budget *b, const struct retry_budget_cfg *cfg)
{
	int err = retry_budget_cfg_check(cfg);

	if (err)
		return err;
	b->bucket_ns = cfg->ttl_ns / RETRY_BUDGET_BUCKETS;
	b->reserve_milli = reserve_of(cfg);
	b->deposit_milli = (int32_t)cfg->ratio_milli;
	for (int i = 0; i < RETRY_BUDGET_BUCKETS; i++)
		atomic_init(&b->bucket[i], 0);
	return 0;
}

/* The bucket generation of now_ns, truncated to the 32 bits a word holds. */
static uint32_t gen_of(const struct retry_budget *b, uint64_t now_ns)
{
	return (uint32_t)(now_ns / b->bucket_ns);
}

/* The generation a bucket word belongs to. */
static uint32_t word_gen(uint64_t word)
{
	return (uint32_t)(word >> 32);
}

/* The balance in a bucket word, in milli-retries. */
static int32_t word_balance(uint64_t word)
{
	return (int32_t)(uint32_t)word;
}

/*
 * The balance a bucket word holds for a caller at generation gen: its own
 * when it is one of the last RETRY_BUDGET_BUCKETS generations, or one
 * ahead (a worker that read the clock a moment later opened it); 0 when
 * it has expired.
 */
static int32_t live_balance(uint64_t word, uint32_t gen)
{
	uint32_t age = gen - word_gen(word);

	if (age < RETRY_BUDGET_BUCKETS || age == UINT32_MAX)
		return word_balance(word);
	return 0;
}

/*
 * Add delta to the bucket of generation gen, opening it (balance 0) if
 * the slot still holds an expired generation. A deposit saturates at
 * INT32_MAX; a withdrawal that would go below INT32_MIN is refused
 * (returns false), so both limits err towards fewer retries.
 */
static bool bucket_add(struct retry_budget *b, uint32_t gen, int32_t delta)
{
	_Atomic uint64_t *slot = &b->bucket[gen % RETRY_BUDGET_BUCKETS];
	uint64_t old = atomic_load_explicit(slot, memory_order_relaxed), new;
	uint32_t wgen;
	int64_t bal;

	do {
		wgen = word_gen(old);
		if (wgen == gen || (int32_t)(wgen - gen) > 0) {
			/*
			 * Ours, or opened by a worker whose clock is ahead of
			 * ours (a stale now): count it there rather than
			 * wipe that bucket.
			 */
			bal = word_balance(old);
		} else {
			wgen = gen;
			bal = 0;
		}
		bal += delta;
		if (bal > INT32_MAX)
			bal = INT32_MAX;
		if (bal < INT32_MIN)
			return false;
		new = (uint64_t)wgen << 32 | (uint32_t)(int32_t)bal;
	} while (!atomic_compare_exchange_weak_explicit(slot, &old, new, memory_order_relaxed,
							memory_order_relaxed));
	return true;
}

void retry_budget_deposit(struct retry_budget *b, uint64_t now_ns)
{
	if (b->deposit_milli)
		bucket_add(b, gen_of(b, now_ns), b->deposit_milli);
}

int64_t retry_budget_balance_milli(struct retry_budget *b, uint64_t now_ns)
{
	uint32_t gen = gen_of(b, now_ns);
	int64_t sum = b->reserve_milli;

	for (int i = 0; i < RETRY_BUDGET_BUCKETS; i++)
		sum += live_balance(atomic_load_explicit(&b->bucket[i], memory_order_relaxed), gen);
	return sum > 0 ? sum : 0;
}

uint64_t retry_budget_balance(struct retry_budget *b, uint64_t now_ns)
{
	return (uint64_t)retry_budget_balance_milli(b, now_ns) / RETRY_BUDGET_MILLI;
}

bool retry_budget_has_room(struct retry_budget *b, uint64_t now_ns)
{
	return retry_budget_balance_milli(b, now_ns) >= RETRY_BUDGET_MILLI;
}

bool retry_budget_withdraw(struct retry_budget *b, uint64_t now_ns)
{
	if (!retry_budget_has_room(b, now_ns))
		return false;
	return bucket_add(b, gen_of(b, now_ns), -RETRY_BUDGET_MILLI);
}
