/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Byte-level text helpers the HTTP/1 parser (http1_parser.c) and the head
 * rewriter (http1_rewrite.c) share. Private to those two.
 */
#ifndef SHOAL_PROXY_HTTP1_TEXT_H
#define SHOAL_PROXY_HTTP1_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

static inline char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* Case-insensitive compare of @len bytes at @s with the lowercase @word. */
static inline bool eq_nocase(const char *s, size_t len, const char *word)
{
	if (strlen(word) != len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (lower(s[i]) != word[i])
			return false;
	return true;
}

#endif
