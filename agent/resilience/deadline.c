// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "resilience/deadline.h"

#include <errno.h>

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
	*timeout_ns = ms * DEADLINE_NS_PER_MS;
	return 0;
}
