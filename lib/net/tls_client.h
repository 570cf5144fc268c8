/* TLS origination: the one path by which the runner-agent opens a TLS
 * connection to an origin it adds a secret to (the egress proxy's header
 * secrets, the model gateway's provider keys; issue 11 §3). The peer's
 * certificate is always verified, against the system store or a CA file, for
 * the host name (with SNI) or the IP literal; a connection that fails this is
 * never handed back, so no secret can go out on it. No logging; the caller
 * words its own message from the code and the detail. Thread-safe (an SSL_CTX
 * is shared read-only once made). */
#pragma once
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/* A client context: TLS 1.2 or later, peer verification on, no renegotiation,
 * partial writes. ca_bundle (borrowed) is a PEM file of trusted CAs, NULL or
 * "" for the system's; a file that does not load, or holds no CA, is -EINVAL
 * with reterr (component `component`) naming it. Returns the context (the
 * caller frees it with SSL_CTX_free) or NULL. */
SSL_CTX *tls_client_ctx_new(const char *ca_bundle, const char *component, struct err_detail *reterr);

/* A client SSL on the connected socket fd (not owned), set up for SNI and
 * certificate verification for host (a trailing dot ignored), or for the IP
 * literal when literal; the handshake is then driven by tls_client_handshake
 * (an event loop) or done by tls_client_connect. Returns the SSL (the
 * caller's, SSL_free) or NULL with *reterr -ENOMEM or -EINVAL. */
SSL *tls_client_new(SSL_CTX *ctx, int fd, const char *host, bool literal, int *reterr);

/* One step of ssl's handshake: 0 when done, -EAGAIN with *want (POLLIN or
 * POLLOUT) to wait for, -EPERM (certificate verification failed) or -EPROTO
 * (any other failure) with detail[0..detail_len) saying what OpenSSL
 * reported. */
int tls_client_handshake(SSL *ssl, short *want, char *detail, size_t detail_len);

/* tls_client_new and the whole handshake, waiting on fd: handshakes as a client on the connected socket fd (non-blocking or not;
 * not owned) until deadline_mono (time_mono_us clock): SNI and certificate
 * verification for host (lower case, a trailing dot ignored), or for the IP
 * literal when literal. Returns 0 with *ret (the caller's, freed with
 * SSL_free); -ENOMEM (no SSL object), -EINVAL (cannot set up the names),
 * -ETIMEDOUT, -EPERM (certificate verification failed) or -EPROTO (any other
 * handshake failure), with detail[0..detail_len) saying what OpenSSL
 * reported for the last two. */
int tls_client_connect(SSL_CTX *ctx, int fd, const char *host, bool literal, int64_t deadline_mono, SSL **ret,
                       char *detail, size_t detail_len);
