#include "proto/envelope.h"

#include "core/timeutil.h"

int envelope_init(Paddock__V1__Envelope *env, const char *tenant_id, const char *run_id,
                  uint64_t seq, const char *producer, char msgid_buf[static UUID_STR_LEN]) {
        paddock__v1__envelope__init(env);
        int r = id_new_uuid(msgid_buf);
        if (r < 0)
                return r;
        env->tenant_id = (char *)(tenant_id ? tenant_id : "");
        env->run_id = (char *)(run_id ? run_id : "");
        env->seq = seq;
        env->ts_unix_us = time_now_us();
        env->producer = (char *)(producer ? producer : "");
        env->schema_version = 1;
        env->message_id = msgid_buf;
        return 0;
}
