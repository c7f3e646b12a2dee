// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "resilience/backoff.h"

#include <errno.h>

uint64_t backoff_ceiling(uint64_t base_ns, uint64_t max_ns, uint32_t attempt)
{
	uint64_t c = base_ns;

	/* Stops doubling at max_ns, so the loop is short and cannot overflow. */
	while (attempt-- && c < max_ns)
		c = c > UINT64_MAX / 2 ? UINT64_MAX : c * 2;
	return c < max_ns ? c : max_ns;
}

uint64_t backoff_full_jitter(struct rng *rng, uint64_t base_ns, uint64_t max_ns, uint32_t attempt)
{
	uint64_t c = backoff_ceiling(base_ns, max_ns, attempt);

	return c == UINT64_MAX ? rng_next(rng) : rng_below(rng, c + 1);
}

uint64_t backoff_jitter(struct rng *rng, uint64_t base_ns, double jitter)
{
	double f;

	if (jitter < 0)
		jitter = 0;
	if (jitter > 1)
		jitter = 1;
	f = 1 + jitter * (2 * rng_unit(rng) - 1);
	/* Converting a double of 2^64 or more is undefined: clamp instead. */
	if ((double)base_ns * f >= 0x1.0p64)
		return UINT64_MAX;
	return (uint64_t)((double)base_ns * f);
}

uint64_t backoff_double(uint64_t cur_ns, uint64_t max_ns)
{
	if (cur_ns >= max_ns / 2)
		return max_ns;
	return cur_ns * 2;
}

uint64_t deadline_after(uint64_t now_ns, uint64_t timeout_ns)
{
	if (timeout_ns == 0 || timeout_ns >= DEADLINE_NONE - now_ns)
		return DEADLINE_NONE;
	return now_ns + timeout_ns;
}

uint64_t deadline_min(uint64_t a_ns, uint64_t b_ns)
{
	return a_ns < b_ns ? a_ns : b_ns;
}

bool deadline_expired(uint64_t deadline_ns, uint64_t now_ns)
{
	return deadline_ns != DEADLINE_NONE && now_ns >= deadline_ns;
}

uint64_t deadline_remaining(uint64_t deadline_ns, uint64_t now_ns)
{
	if (deadline_ns == DEADLINE_NONE)
		return UINT64_MAX;
	return now_ns >= deadline_ns ? 0 : deadline_ns - now_ns;
}

uint64_t deadline_try(uint64_t request_deadline_ns, uint64_t per_try_ns, uint64_t now_ns)
{
	return deadline_min(request_deadline_ns, deadline_after(now_ns, per_try_ns));
}

/* HTTP's optional whitespace around a field value. */
static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

int deadline_parse_header(const char *val, size_t len, uint64_t *timeout_ns)
{
	size_t i = 0, end = len;
	uint64_t ms = 0;

	while (i < end && is_ows(val[i]))
		i++;
	while (end > i && is_ows(val[end - 1]))
		end--;
	if (i == end)
		return -EINVAL;
	for (; i < end; i++) {
		if (val[i] < '0' || val[i] > '9')
			return -EINVAL;
		ms = ms * 10 + (uint64_t)(val[i] - '0');
		if (ms > DEADLINE_HEADER_MAX_MS)
			return -EINVAL;
	}
	if (ms == 0)
		return -EINVAL;
	*timeout_ns = ms * BACKOFF_NS_PER_MS;
	return 0;
}
