/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What the identity module's functions say when they refuse something: a
 * reason into the caller's buffer, and OpenSSL's own reason as text. Shared
 * by store.c and csr.c (private to agent/identity/).
 */
#ifndef SHOAL_IDENTITY_WHY_H
#define SHOAL_IDENTITY_WHY_H

#include <stdarg.h>
#include <stdio.h>

#include <openssl/err.h>

/* Format the reason into why (why_len bytes); a NULL or empty buffer is fine. */
static inline void __attribute__((format(printf, 3, 4)))
id_why(char *why, size_t why_len, const char *fmt, ...)
{
	va_list ap;

	if (!why || !why_len)
		return;
	va_start(ap, fmt);
	vsnprintf(why, why_len, fmt, ap);
	va_end(ap);
}

/* OpenSSL's newest queued error as text into buf, and clear the queue. */
static inline const char *id_ossl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();

	if (e)
		ERR_error_string_n(e, buf, len);
	else
		snprintf(buf, len, "no reason given");
	ERR_clear_error();
	return buf;
}

#endif
