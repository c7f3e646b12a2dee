/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Text written into a caller's fixed-size buffer (trace_inject's header
 * lines, the OTLP exporter's request body). A write that does not fit
 * writes nothing and marks the buffer over; later writes are dropped too,
 * so a caller checks once, at the end, and never sees a torn tail. A
 * caller may cut back to an earlier len (and clear over) to drop what
 * followed it. Nothing is allocated and nothing is NUL-terminated.
 */
#ifndef SHOAL_COMMON_FIXED_BUF_H
#define SHOAL_COMMON_FIXED_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

struct fixed_buf {
	char *p;
	size_t cap, len;
	bool over; /* something did not fit: the output is unusable */
};

/* Append the n bytes at s, or mark b over when they do not fit. */
static inline void fixed_buf_put(struct fixed_buf *b, const char *s, size_t n)
{
	if (b->over || b->cap - b->len < n) {
		b->over = true;
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

/* Append the string s (without its NUL). */
static inline void fixed_buf_puts(struct fixed_buf *b, const char *s)
{
	fixed_buf_put(b, s, strlen(s));
}

#endif
