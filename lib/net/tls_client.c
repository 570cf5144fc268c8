#include "net/tls_client.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "net/fd_wait.h"

SSL_CTX *tls_client_ctx_new(const char *ca_bundle, const char *component, struct err_detail *reterr) {
        SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx) {
                err_set(reterr, -ENOMEM, component, "cannot create a TLS context");
                return NULL;
        }
        (void)SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        /* an origin that closes without close_notify ends its answer; the
         * client checks the answer's own framing (Content-Length, chunked) */
        SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        bool file = ca_bundle && ca_bundle[0];
        int ok = file ? SSL_CTX_load_verify_locations(ctx, ca_bundle, NULL) : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
                char e[256];
                ERR_error_string_n(ERR_get_error(), e, sizeof e);
                ERR_clear_error();
                SSL_CTX_free(ctx);
                err_set(reterr, -EINVAL, component, "cannot load the CA certificates of %s: %s",
                        file ? ca_bundle : "the system", e);
                return NULL;
        }
        if (file && sk_X509_OBJECT_num(X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx))) == 0) {
                SSL_CTX_free(ctx);
                err_set(reterr, -EINVAL, component, "%s holds no CA certificate", ca_bundle);
                return NULL;
        }
        return ctx;
}

SSL *tls_client_new(SSL_CTX *ctx, int fd, const char *host, bool literal, int *reterr) {
        SSL *ssl = ctx ? SSL_new(ctx) : NULL;
        if (!ssl) {
                *reterr = -ENOMEM;
                return NULL;
        }
        char h[256];
        snprintf(h, sizeof h, "%s", host);
        size_t hl = strlen(h);
        if (hl && h[hl - 1] == '.')
                h[hl - 1] = 0;
        X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
        X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        bool set = SSL_set_fd(ssl, fd) == 1 &&
                   (literal ? X509_VERIFY_PARAM_set1_ip_asc(vp, h) == 1
                            : SSL_set_tlsext_host_name(ssl, h) == 1 && SSL_set1_host(ssl, h) == 1);
        if (!set) {
                ERR_clear_error();
                SSL_free(ssl);
                *reterr = -EINVAL;
                return NULL;
        }
        return ssl;
}

int tls_client_handshake(SSL *ssl, short *want, char *detail, size_t detail_len) {
        if (detail_len)
                detail[0] = 0;
        ERR_clear_error();
        int r = SSL_connect(ssl);
        if (r == 1)
                return 0;
        int e = SSL_get_error(ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                *want = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
                return -EAGAIN;
        }
        long v = SSL_get_verify_result(ssl);
        int res;
        if (v != X509_V_OK) {
                snprintf(detail, detail_len, "%s", X509_verify_cert_error_string(v));
                res = -EPERM;
        } else {
                ERR_error_string_n(ERR_peek_last_error(), detail, detail_len);
                res = -EPROTO;
        }
        ERR_clear_error();
        return res;
}

int tls_client_connect(SSL_CTX *ctx, int fd, const char *host, bool literal, int64_t deadline_mono, SSL **ret,
                       char *detail, size_t detail_len) {
        if (detail_len)
                detail[0] = 0;
        int r = 0;
        SSL *ssl = tls_client_new(ctx, fd, host, literal, &r);
        if (!ssl)
                return r;
        for (;;) {
                short want = 0;
                r = tls_client_handshake(ssl, &want, detail, detail_len);
                if (r == 0) {
                        *ret = ssl;
                        return 0;
                }
                if (r != -EAGAIN) {
                        SSL_free(ssl);
                        return r;
                }
                /* an error or hang-up on fd shows in SSL_connect's next step */
                r = fd_wait_until(fd, want, deadline_mono);
                if (r == 0 || r == -ECONNRESET)
                        continue;
                SSL_free(ssl);
                return -ETIMEDOUT;
        }
}
