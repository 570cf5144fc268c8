/* Helpers for the common protobuf envelope (proto/paddock/v1/envelope.proto). */
#pragma once
#include <stdint.h>

#include "core/ids.h"
#include "paddock/v1/envelope.pb-c.h"

/* Initialises env for a new message: schema version 1, now, a fresh message id
 * written into msgid_buf (which env then points to, like the other strings:
 * env borrows tenant, run and producer, so they must outlive the packing).
 * Returns 0 or -EIO if no random id could be made. */
int envelope_init(Paddock__V1__Envelope *env, const char *tenant_id, const char *run_id,
                  uint64_t seq, const char *producer, char msgid_buf[static UUID_STR_LEN]);
