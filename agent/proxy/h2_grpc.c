// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "proxy/h2_grpc.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

bool grpc_is_content_type(const char *v, size_t len)
{
	static const char ct[] = "application/grpc";
	size_t n = sizeof(ct) - 1;

	if (len < n || strncasecmp(v, ct, n))
		return false;
	return len == n || v[n] == '+' || v[n] == ';';
}

int grpc_timeout_parse(const char *v, size_t len, uint64_t *ns)
{
	uint64_t n = 0, unit;

	/* "TimeoutValue: 1*8 digits", "TimeoutUnit: one of H M S m u n". */
	if (len < 2 || len > 9)
		return -EINVAL;
	for (size_t i = 0; i + 1 < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -EINVAL;
		n = n * 10 + (uint64_t)(v[i] - '0');
	}
	switch (v[len - 1]) {
	case 'H':
		unit = 3600ull * 1000000000;
		break;
	case 'M':
		unit = 60ull * 1000000000;
		break;
	case 'S':
		unit = 1000000000;
		break;
	case 'm':
		unit = 1000000;
		break;
	case 'u':
		unit = 1000;
		break;
	case 'n':
		unit = 1;
		break;
	default:
		return -EINVAL;
	}
	/* 99999999 H overflows 64 bits of ns: saturate, it means "no hurry". */
	*ns = n > UINT64_MAX / unit ? UINT64_MAX : n * unit;
	return 0;
}

int grpc_status_parse(const char *v, size_t len)
{
	int code = 0;

	if (len < 1 || len > 2)
		return GRPC_STATUS_NONE;
	for (size_t i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return GRPC_STATUS_NONE;
		code = code * 10 + (v[i] - '0');
	}
	return code;
}

int grpc_status_from_http(int status)
{
	if (status <= 200)
		return GRPC_STATUS_NONE;
	switch (status) {
	case 400:
		return GRPC_STATUS_INTERNAL;
	case 401:
		return GRPC_STATUS_UNAUTHENTICATED;
	case 403:
		return GRPC_STATUS_PERMISSION_DENIED;
	case 404:
		return GRPC_STATUS_UNIMPLEMENTED;
	case 429:
	case 502:
	case 503:
	case 504:
		return GRPC_STATUS_UNAVAILABLE;
	default:
		return GRPC_STATUS_UNKNOWN;
	}
}

bool grpc_status_is_failure(int code)
{
	switch (code) {
	case 2:	 /* UNKNOWN */
	case 4:	 /* DEADLINE_EXCEEDED */
	case 8:	 /* RESOURCE_EXHAUSTED */
	case 13: /* INTERNAL */
	case 14: /* UNAVAILABLE */
	case 15: /* DATA_LOSS */
		return true;
	default:
		return false;
	}
}
