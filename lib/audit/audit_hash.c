/* The audit chain's record hash (audit_hash.h). */
#include "audit/audit_hash.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "core/ids.h"
#include "core/macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_MD_CTX *, EVP_MD_CTX_free);

static int netstring_update(EVP_MD_CTX *ctx, const char *s) {
        char len[24];
        size_t n = strlen(s);
        int k = snprintf(len, sizeof len, "%zu:", n);
        if (EVP_DigestUpdate(ctx, len, (size_t)k) != 1 || EVP_DigestUpdate(ctx, s, n) != 1 ||
            EVP_DigestUpdate(ctx, ",", 1) != 1)
                return -EIO;
        return 0;
}

int audit_chain_hash(const char *prev_hash, const struct audit_chain_fields *f,
                     char out[static AUDIT_HASH_HEX_LEN + 1]) {
        _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        if (!ctx)
                return -ENOMEM;
        char seq[24];
        snprintf(seq, sizeof seq, "%" PRIu64, f->seq);
        const char *fields[] = {"paddock.audit.v1", f->tenant_id, seq, f->message_id, f->ts,
                                f->actor, f->action, f->object_type, f->object_id, f->source_ip,
                                f->outcome, f->change_sha256, f->detail};
        if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
            EVP_DigestUpdate(ctx, prev_hash, strlen(prev_hash)) != 1)
                return -EIO;
        for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                if (netstring_update(ctx, fields[i]) < 0)
                        return -EIO;
        unsigned char md[32];
        unsigned int mdlen = 0;
        if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != sizeof md)
                return -EIO;
        hex_encode(md, sizeof md, out);
        return 0;
}
