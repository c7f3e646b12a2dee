// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "resilience/retry_policy.h"

#include <errno.h>
#include <string.h>

#include "resilience/backoff.h"
#include "resilience/deadline.h"

void retry_policy_cfg_default(struct retry_policy_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->statuses[0] = RETRY_DEFAULT_STATUS;
	cfg->n_statuses = 1;
	cfg->grpc_statuses = RETRY_GRPC_DEFAULT_MASK;
	cfg->route_retryable = false;
	cfg->connect_any_method = true;
	cfg->max_body_bytes = RETRY_DEFAULT_MAX_BODY_BYTES;
	cfg->max_retries = RETRY_DEFAULT_MAX_RETRIES;
}

int retry_policy_cfg_check(const struct retry_policy_cfg *cfg)
{
	if (cfg->n_statuses > RETRY_MAX_STATUSES)
		return -EINVAL;
	for (int i = 0; i < cfg->n_statuses; i++)
		if (cfg->statuses[i] < 400 || cfg->statuses[i] > 599)
			return -EINVAL;
	/* OK (bit 0) is no failure; bits above the last code name no code. */
	if (cfg->grpc_statuses & ~((2u << RETRY_GRPC_MAX_CODE) - 2))
		return -EINVAL;
	return 0;
}

bool retry_method_idempotent(const char *method, size_t len)
{
	static const char *const idempotent[] = {"GET",	  "HEAD", "OPTIONS",
						 "TRACE", "PUT",  "DELETE"};

	for (size_t i = 0; i < sizeof(idempotent) / sizeof(idempotent[0]); i++)
		if (len == strlen(idempotent[i]) && !memcmp(method, idempotent[i], len))
			return true;
	return false;
}

bool retry_status_listed(const struct retry_policy_cfg *cfg, uint16_t status)
{
	for (int i = 0; i < cfg->n_statuses && i < RETRY_MAX_STATUSES; i++)
		if (cfg->statuses[i] == status)
			return true;
	return false;
}

bool retry_grpc_status_listed(const struct retry_policy_cfg *cfg, int code)
{
	return code >= 0 && code <= RETRY_GRPC_MAX_CODE && (cfg->grpc_statuses & (1u << code));
}

/* Is t's kind of failure one that is retried at all (method aside)? */
static bool failure_retried(const struct retry_policy_cfg *cfg, const struct retry_try *t)
{
	switch (t->failure) {
	case RETRY_FAIL_CONNECT:
	case RETRY_FAIL_RESET_EARLY:
	case RETRY_FAIL_TIMEOUT:
	case RETRY_FAIL_REFUSED:
		return true;
	case RETRY_FAIL_GRPC_STATUS:
		return retry_grpc_status_listed(cfg, t->status);
	case RETRY_FAIL_STATUS:
		return retry_status_listed(cfg, t->status);
	case RETRY_FAIL_RESET_LATE:
		return false;
	}
	return false;
}

enum retry_verdict retry_decide(const struct retry_policy_cfg *cfg, const struct retry_try *t,
				struct retry_budget *budget, uint64_t now_ns)
{
	bool method_ok = cfg->route_retryable ||
			 retry_method_idempotent(t->method, t->method_len) ||
			 (t->failure == RETRY_FAIL_CONNECT && cfg->connect_any_method) ||
			 t->failure == RETRY_FAIL_REFUSED;

	if (!method_ok)
		return RETRY_NO_METHOD;
	if (!failure_retried(cfg, t))
		return RETRY_NO_FAILURE;
	if (t->has_body && (!t->body_buffered || t->body_bytes > cfg->max_body_bytes))
		return RETRY_NO_BODY;
	if (t->response_started)
		return RETRY_NO_STARTED;
	if (t->retries_done >= cfg->max_retries)
		return RETRY_NO_ATTEMPTS;
	if (deadline_expired(t->deadline_ns, now_ns))
		return RETRY_NO_DEADLINE;
	if (budget && !retry_budget_withdraw(budget, now_ns))
		return RETRY_NO_BUDGET;
	return RETRY_YES;
}

const char *retry_verdict_name(enum retry_verdict v)
{
	switch (v) {
	case RETRY_YES:
		return "yes";
	case RETRY_NO_METHOD:
		return "method";
	case RETRY_NO_FAILURE:
		return "failure";
	case RETRY_NO_BODY:
		return "body";
	case RETRY_NO_STARTED:
		return "response-started";
	case RETRY_NO_ATTEMPTS:
		return "max-retries";
	case RETRY_NO_DEADLINE:
		return "deadline";
	case RETRY_NO_BUDGET:
		return "budget";
	}
	return "unknown";
}
