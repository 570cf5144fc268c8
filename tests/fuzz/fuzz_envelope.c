/* Protobuf decode of what the consumers take off the bus (lib/proto,
 * proto/paddock/v1): every message that carries the common Envelope, and
 * RunEventBatch, unpacked with protobuf-c as each consumer does
 * (paddock__v1__<message>__unpack, e.g. services/api/status_consumer.c,
 * services/evidence/events_store.c), then the envelope read as they read it,
 * packed again (what is decoded must encode) and freed. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "paddock/v1/approvals.pb-c.h"
#include "paddock/v1/artifacts.pb-c.h"
#include "paddock/v1/audit.pb-c.h"
#include "paddock/v1/envelope.pb-c.h"
#include "paddock/v1/events.pb-c.h"
#include "paddock/v1/nodes.pb-c.h"
#include "paddock/v1/runs.pb-c.h"
#include "paddock/v1/usage.pb-c.h"

static const ProtobufCMessageDescriptor *const messages[] = {
        &paddock__v1__envelope__descriptor,      &paddock__v1__run_event__descriptor,
        &paddock__v1__run_event_batch__descriptor, &paddock__v1__run_requested__descriptor,
        &paddock__v1__run_assigned__descriptor,  &paddock__v1__run_control__descriptor,
        &paddock__v1__node_heartbeat__descriptor, &paddock__v1__audit_record__descriptor,
        &paddock__v1__artifact_chunk__descriptor, &paddock__v1__usage_record__descriptor,
        &paddock__v1__approval_notice__descriptor,
};

static size_t read_envelope(const Paddock__V1__Envelope *env) {
        if (!env)
                return 0;
        /* proto3 strings decode to "" when absent, never NULL */
        return strlen(env->tenant_id) + strlen(env->run_id) + strlen(env->producer) + strlen(env->message_id) +
               (size_t)(env->seq + (uint64_t)env->ts_unix_us + env->schema_version);
}

static void repack(const ProtobufCMessage *m) {
        size_t n = protobuf_c_message_get_packed_size(m);
        uint8_t *out = malloc(n ? n : 1);
        if (!out)
                return;
        if (protobuf_c_message_pack(m, out) != n)
                __builtin_trap(); /* pack writes what get_packed_size promised */
        free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        for (size_t i = 0; i < sizeof messages / sizeof messages[0]; i++) {
                ProtobufCMessage *m = protobuf_c_message_unpack(messages[i], NULL, size, data);
                if (!m)
                        continue;
                volatile size_t sink = 0;
                if (messages[i] == &paddock__v1__envelope__descriptor)
                        sink += read_envelope((Paddock__V1__Envelope *)m);
                else if (messages[i] == &paddock__v1__run_event_batch__descriptor) {
                        Paddock__V1__RunEventBatch *b = (Paddock__V1__RunEventBatch *)m;
                        for (size_t k = 0; k < b->n_events; k++)
                                sink += read_envelope(b->events[k]->env) + strlen(b->events[k]->kind);
                } else {
                        /* env is field 1 of every other message listed */
                        const ProtobufCFieldDescriptor *f =
                                protobuf_c_message_descriptor_get_field_by_name(messages[i], "env");
                        if (!f)
                                __builtin_trap();
                        sink += read_envelope(*(Paddock__V1__Envelope **)((char *)m + f->offset));
                }
                (void)sink;
                repack(m);
                protobuf_c_message_free_unpacked(m, NULL);
        }
        return 0;
}
