/* The egress proxy's look at the first bytes a client sends into a CONNECT
 * tunnel (lib/net/tls_sni.h, called by hello_verdict in
 * services/runner-agent/proxy.c on at most TLS_RECORD_MAX bytes, again as
 * more arrive: each prefix is a call of its own). */
#include <string.h>

#include "fuzz.h"
#include "net/tls_sni.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > TLS_RECORD_MAX)
                size = TLS_RECORD_MAX;
        char sni[TLS_SNI_MAX + 1];
        enum tls_hello_result r = tls_parse_client_hello(data, size, sni);
        size_t n = strnlen(sni, sizeof sni);
        if (n > TLS_SNI_MAX || (r != TLS_HELLO_SNI && n != 0))
                __builtin_trap(); /* the contract: NUL-terminated, "" unless a name was found */
        /* the proxy's earlier call saw a prefix: one byte short of the whole */
        if (size > 1)
                (void)tls_parse_client_hello(data, size - 1, sni);
        return 0;
}
