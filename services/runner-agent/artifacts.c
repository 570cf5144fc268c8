#include "artifacts.h"

#include <errno.h>
#include <openssl/sha.h>
#include <string.h>

#include "core/ids.h"
#include "core/macro.h"
#include "kafka/kafka.h"
#include "kafka/topics.h"
#include "paddock/v1/artifacts.pb-c.h"
#include "proto/envelope.h"

#define ARTIFACT_FLUSH_TIMEOUT_MS 60000

int artifacts_send(struct kafka_producer *p, const char *producer_name, const char *tenant_id,
                   const char *run_id, struct artifact *art, struct err_detail *reterr) {
        unsigned char digest[SHA256_DIGEST_LENGTH];
        SHA256(art->data ? art->data : (const void *)"", art->size, digest);
        hex_encode(digest, sizeof digest, art->sha256);

        /* this artifact's chunks answer for themselves, not for what else
         * the producer carries */
        _cleanup_(kafka_tally_freep) struct kafka_tally *tally = kafka_tally_new(p);
        if (!tally)
                return err_set(reterr, -ENOMEM, "", "out of memory");
        uint32_t total = art->size == 0 ? 1 : (uint32_t)((art->size + ARTIFACT_CHUNK_MAX - 1) / ARTIFACT_CHUNK_MAX);
        for (uint32_t i = 0; i < total; i++) {
                Paddock__V1__Envelope env;
                Paddock__V1__ArtifactChunk chunk = PADDOCK__V1__ARTIFACT_CHUNK__INIT;
                char msgid[UUID_STR_LEN];
                int r = envelope_init(&env, tenant_id, run_id, 0, producer_name, msgid);
                if (r < 0)
                        return err_set(reterr, r, "artifact", "could not make a message id");
                size_t off = (size_t)i * ARTIFACT_CHUNK_MAX;
                size_t n = art->size - off < ARTIFACT_CHUNK_MAX ? art->size - off : ARTIFACT_CHUNK_MAX;
                chunk.env = &env;
                chunk.name = (char *)art->name;
                chunk.kind = (char *)art->kind;
                chunk.index = i;
                chunk.total_chunks = total;
                chunk.total_size = art->size;
                chunk.sha256 = art->sha256;
                chunk.data.data = n ? (uint8_t *)art->data + off : NULL;
                chunk.data.len = n;
                chunk.content_type = (char *)art->content_type;

                size_t len = paddock__v1__artifact_chunk__get_packed_size(&chunk);
                _cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
                if (!buf)
                        return -ENOMEM;
                paddock__v1__artifact_chunk__pack(&chunk, buf);
                r = kafka_produce_tallied(tally, TOPIC_ARTIFACTS, run_id, buf, len, reterr);
                if (r < 0) {
                        /* local queue full: let it drain once, then retry */
                        (void)kafka_producer_flush(p, ARTIFACT_FLUSH_TIMEOUT_MS);
                        r = kafka_produce_tallied(tally, TOPIC_ARTIFACTS, run_id, buf, len, reterr);
                }
                if (r < 0)
                        return r;
        }
        int r = kafka_tally_wait(tally, ARTIFACT_FLUSH_TIMEOUT_MS);
        if (r < 0)
                return err_set(reterr, r, "artifact", "artifact chunks were not acknowledged: %s", strerror(-r));
        return 0;
}
