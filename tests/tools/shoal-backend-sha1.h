/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* SHA-1 and base64 for shoal-backend's WebSocket handshake. */
#ifndef SHOAL_BACKEND_SHA1_H
#define SHOAL_BACKEND_SHA1_H

#include <stddef.h>
#include <stdint.h>

#define SHA1_DIGEST_LEN 20
/* base64 of n bytes is 4 * ceil(n / 3) characters, plus the NUL. */
#define BASE64_LEN(n) (4 * (((n) + 2) / 3) + 1)

/* Hashes len bytes of data into out. Never fails. */
void backend_sha1(const void *data, size_t len, uint8_t out[SHA1_DIGEST_LEN]);

/*
 * Encodes len bytes as padded base64 into out, which must hold
 * BASE64_LEN(len) bytes. Returns the length written, without the NUL.
 */
size_t backend_base64(const uint8_t *in, size_t len, char *out);

#endif
