/* Artifact chunks on paddock.artifacts (key run id): at most 256 KiB each,
 * total_chunks >= 1 (an empty artifact is one empty chunk), the SHA-256 and
 * total size of the whole artifact on every chunk. */
#pragma once
#include <stddef.h>

#include "core/err.h"

struct kafka_producer;

#define ARTIFACT_CHUNK_MAX (256 * 1024)

struct artifact {
        const char *name;          /* [A-Za-z0-9._-] */
        const char *kind;          /* "diff" | "file" | "log" | "transcript" */
        const char *content_type;
        const void *data;          /* borrowed */
        size_t size;
        char sha256[65];           /* filled by artifacts_send */
};

/* Hashes and sends every chunk, then flushes the producer so all chunks are
 * acknowledged before returning. Thread-safe (the producer is). Returns 0 or a
 * negative errno with reterr. */
int artifacts_send(struct kafka_producer *p, const char *producer_name, const char *tenant_id,
                   const char *run_id, struct artifact *art, struct err_detail *reterr);
