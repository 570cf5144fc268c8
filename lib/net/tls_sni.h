/* Server Name Indication from the first bytes a client sends into a CONNECT
 * tunnel: the egress proxy compares it with the CONNECT host to refuse domain
 * fronting. Parses only a ClientHello that arrives whole in the first TLS
 * record (every mainstream client sends it so; a fragmented hello is reported
 * as such and the proxy refuses it, so fragmenting cannot hide the name).
 * Pure function, no I/O: thread-safe. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#define TLS_RECORD_MAX (5 + 16384)  /* the most the proxy ever buffers for the check */
#define TLS_SNI_MAX 253

enum tls_hello_result {
        TLS_HELLO_SNI = 1,        /* ClientHello with a server_name: copied to ret_sni */
        TLS_HELLO_NO_SNI = 0,     /* ClientHello without server_name */
        TLS_HELLO_NEED_MORE = -1, /* a TLS record has started but is incomplete */
        TLS_HELLO_NOT_TLS = -2,   /* the first byte is not a TLS handshake record */
        TLS_HELLO_MALFORMED = -3, /* bad lengths, not a ClientHello, fragmented
                                   * hello, duplicate or invalid server_name */
};

/* Looks at buf[0..len) (borrowed). ret_sni must hold TLS_SNI_MAX + 1 bytes; it
 * receives the lower-cased host name without a trailing dot on TLS_HELLO_SNI
 * and "" otherwise. */
enum tls_hello_result tls_parse_client_hello(const uint8_t *buf, size_t len, char ret_sni[TLS_SNI_MAX + 1]);
