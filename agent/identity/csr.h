/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What the issued source sends shoal-identity and reads back
 * (notes: the API is POST /v1/certificates, docs/identity.md): a P-256
 * key made in memory, a CSR whose one URI SAN is the SPIFFE ID asked
 * for, and the decoding of the JSON answer.
 */
#ifndef SHOAL_IDENTITY_CSR_H
#define SHOAL_IDENTITY_CSR_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/* An answer larger than this is refused: a leaf and a few intermediates are ~4 KiB. */
#define ID_MAX_RESPONSE_BYTES (64 * 1024)

/*
 * A new EC P-256 key, in memory only (never encoded here; OpenSSL keeps
 * the private scalar in its secure heap when one is set up). 0 and *out,
 * or -EIO with OpenSSL's reason in why.
 */
int id_key_new(EVP_PKEY **out, char *why, size_t why_len);

/*
 * A PEM certificate signing request for key: an empty subject, one
 * subjectAltName, the URI spiffe_id, signed with ECDSA-SHA256. *pem is
 * malloc'd (free it). 0, or -EINVAL/-ENOMEM/-EIO with the reason in why.
 */
int id_csr_make(EVP_PKEY *key, const char *spiffe_id, char **pem, char *why, size_t why_len);

/*
 * The JSON request body, {"csr": "<PEM>", "lifetime_s": N}, malloc'd;
 * NULL on -ENOMEM. lifetime_s is a hint: the issuer grants what its own
 * policy allows, and renewal follows the certificate it returns.
 */
char *id_csr_request_body(const char *pem, uint32_t lifetime_s);

/*
 * Decode a 200 answer {"certificate": "<PEM leaf>", "chain": "<PEM
 * intermediates>", "expires": <unix s>}: *leaf and *chain (possibly
 * empty) with one reference each, *expires. The leaf must carry key's
 * public key (the answer is for this request). 0, or -EINVAL with the
 * reason (which field, what is wrong) in why.
 */
int id_issue_decode(const char *body, size_t len, EVP_PKEY *key, X509 **leaf,
		    STACK_OF(X509) * *chain, int64_t *expires, char *why, size_t why_len);

/*
 * The "error" string of a 4xx answer into why (printable ASCII, cut to
 * why_len), or a note that there was none. Always returns why.
 */
const char *id_issue_error(const char *body, size_t len, char *why, size_t why_len);

#endif
