/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Checks on a peer's X.509-SVID (docs/identity.md): the chain to one of
 * the trust anchors (one root, two during a root rotation), its validity
 * period, and the one URI SAN that names a SPIFFE ID of our trust domain.
 * Used by the tunnel on both ends of a connection and by shoal-identity
 * on the certificate requests it signs. No locking: an X509_STORE is safe
 * to share between threads for verification once it is built.
 */
#ifndef SHOAL_IDENTITY_VERIFY_H
#define SHOAL_IDENTITY_VERIFY_H

#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stddef.h>

#include "identity/spiffe.h"

/* Room for a reason string: the longest we write is OpenSSL's plus a prefix. */
#define ID_WHY_MAX 256
/*
 * Anchors in one PEM bundle: one root, two during a rotation; a few more
 * are allowed so that a rotation that overlaps another is not refused.
 */
#define ID_ANCHORS_MAX 4
/* A PEM bundle of anchors or a chain: a few certificates of ~1 KiB each. */
#define ID_PEM_MAX (64 * 1024)

/*
 * Verify a peer's leaf (and its untrusted intermediates, chain may be
 * NULL) against anchors, at the current time; then that the leaf is an
 * end entity (not a CA; keyUsage, if present, allows digitalSignature and
 * not keyCertSign) with exactly one URI SAN, a SPIFFE ID whose trust
 * domain is trust_domain. On success 0 and *out is the peer's ID. On
 * failure *out is zeroed, why (if why_len) names the cause, and:
 *   -EKEYEXPIRED   a certificate of the chain is expired or not yet valid
 *   -EKEYREJECTED  no chain to an anchor (unknown issuer, self-signed, bad signature, ...)
 *   -EPERM         a valid SVID, but of another trust domain
 *   -EINVAL        not an SVID: no, two, or a malformed URI SAN; a CA; wrong key usage
 *   -ENOMEM
 */
int id_verify_peer(X509_STORE *anchors, X509 *leaf, STACK_OF(X509) * chain,
		   const char *trust_domain, struct spiffe_id *out, char *why, size_t why_len);

/*
 * The one URI SAN in names (a certificate's or a CSR's subjectAltName)
 * as a SPIFFE ID of trust_domain (NULL: any). 0, or -EINVAL (none, more
 * than one, malformed), -EPERM (another trust domain), with why.
 */
int id_san_spiffe_id(const GENERAL_NAMES *names, const char *trust_domain, struct spiffe_id *out,
		     char *why, size_t why_len);

/*
 * A new X509_STORE holding every certificate of the PEM bundle pem[0..len)
 * as a trust anchor (1..ID_ANCHORS_MAX, each a CA). 0 and *out (free with
 * X509_STORE_free), or -EINVAL/-E2BIG/-ENOMEM with why.
 */
int id_anchors_from_pem(const char *pem, size_t len, X509_STORE **out, char *why, size_t why_len);

/*
 * Every certificate of the PEM bundle pem[0..len) (at most ID_ANCHORS_MAX
 * * 4, a chain's worth), in order. 0 and *out (free with
 * sk_X509_pop_free(.., X509_free)), or -EINVAL/-E2BIG/-ENOMEM with why.
 * An empty bundle is an empty stack.
 */
int id_certs_from_pem(const char *pem, size_t len, STACK_OF(X509) * *out, char *why,
		      size_t why_len);

/*
 * Room for a serial as id_cert_serial writes it: RFC 5280 caps a serial
 * at 20 octets, two hex digits each; a sign and slack for a certificate
 * that breaks the rule.
 */
#define ID_SERIAL_MAX 48
/*
 * x's serial number into buf, as `openssl x509 -serial` prints it: every
 * octet of the integer as two upper-case hex digits, a leading zero digit
 * kept ("0A1B", never "A1B"), "-" before a negative one. A serial too long
 * for buf is cut and ends in "..". Returns buf, so that it can be a
 * printf argument; "?" when x has none.
 */
const char *id_cert_serial(const X509 *x, char *buf, size_t len);

#endif
