/* Building and producing AuditRecords (audit.h). */
#include "audit/audit.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <string.h>
#include <strings.h>

#include "core/macro.h"
#include "kafka/topics.h"
#include "paddock/v1/audit.pb-c.h"
#include "proto/envelope.h"

/* Suffixes (and whole names) of members that may hold a secret. Matching on
 * the end keeps identifiers such as "secret_name" or "token_id" auditable. */
static const char *const sensitive_suffixes[] = {
        "secret", "password", "passwd", "passphrase", "token", "value", "api_key", "apikey",
        "private_key", "credential", "credentials", "authorization", "cookie",
};

bool audit_key_is_sensitive(const char *key) {
        size_t n = strlen(key);
        for (size_t i = 0; i < ELEMENTSOF(sensitive_suffixes); i++) {
                size_t m = strlen(sensitive_suffixes[i]);
                if (n >= m && strcasecmp(key + n - m, sensitive_suffixes[i]) == 0)
                        return true;
        }
        return false;
}

size_t audit_scrub(json_t *v) {
        size_t dropped = 0;
        if (json_is_object(v)) {
                const char *key;
                json_t *member;
                void *tmp;
                json_object_foreach_safe(v, tmp, key, member) {
                        if (audit_key_is_sensitive(key)) {
                                json_object_del(v, key);
                                dropped++;
                        } else {
                                dropped += audit_scrub(member);
                        }
                }
        } else if (json_is_array(v)) {
                size_t i;
                json_t *item;
                json_array_foreach(v, i, item)
                        dropped += audit_scrub(item);
        }
        return dropped;
}


int audit_sha256_hex(const void *data, size_t len, char out[static AUDIT_HASH_HEX_LEN + 1]) {
        unsigned char md[32];
        unsigned int mdlen = 0;
        if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != sizeof md)
                return -EIO;
        hex_encode(md, sizeof md, out);
        return 0;
}

/* A scrubbed deep copy of v dumped canonically; NULL on failure. Caller frees. */
static char *dump_scrubbed(json_t *v, size_t flags) {
        _cleanup_(json_decrefp) json_t *copy = json_deep_copy(v);
        if (!copy)
                return NULL;
        audit_scrub(copy);
        return json_dumps(copy, flags);
}

int audit_change_hash(json_t *change, char out[static AUDIT_HASH_HEX_LEN + 1]) {
        out[0] = '\0';
        if (!change)
                return 0;
        _cleanup_free_ char *canon = dump_scrubbed(change, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY);
        if (!canon)
                return -EINVAL;
        return audit_sha256_hex(canon, strlen(canon), out);
}

static bool is_word(const char *s, const char *extra) {
        for (; *s; s++)
                if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || strchr(extra, *s)))
                        return false;
        return true;
}

static bool is_printable(const char *s) {
        for (; *s; s++)
                if ((unsigned char)*s < 0x20 || *s == 0x7f)
                        return false;
        return true;
}

static int check_optional(const char *v, size_t max, const char *field, struct err_detail *reterr) {
        if (v && (strlen(v) > max || !is_printable(v)))
                return err_set(reterr, -EINVAL, "invalid_field", "%s must be at most %zu printable characters",
                               field, max);
        return 0;
}

static int entry_validate(const struct audit_entry *e, struct err_detail *reterr) {
        if (!e->tenant_id || !id_is_uuid(e->tenant_id))
                return err_set(reterr, -EINVAL, "invalid_field", "tenant_id is not a UUID");
        const char *a = e->actor ? e->actor : "";
        const char *name = strncmp(a, "user:", 5) == 0      ? a + 5
                           : strncmp(a, "service:", 8) == 0 ? a + 8
                                                            : NULL;
        if (!name || !*name || strlen(a) > AUDIT_ACTOR_MAX || !is_printable(a))
                return err_set(reterr, -EINVAL, "invalid_field",
                               "actor must be \"user:<id>\" or \"service:<name>\" of at most %d characters",
                               AUDIT_ACTOR_MAX);
        if (!e->action || !*e->action || strlen(e->action) > AUDIT_ACTION_MAX || !strchr(e->action, '.') ||
            !is_word(e->action, "._"))
                return err_set(reterr, -EINVAL, "invalid_field",
                               "action must be \"<object>.<verb>\" in [a-z0-9_.], at most %d characters",
                               AUDIT_ACTION_MAX);
        if (e->object_type && (strlen(e->object_type) > AUDIT_OBJECT_TYPE_MAX || !is_word(e->object_type, "_")))
                return err_set(reterr, -EINVAL, "invalid_field", "object_type must be [a-z0-9_], at most %d characters",
                               AUDIT_OBJECT_TYPE_MAX);
        int r = check_optional(e->object_id, AUDIT_OBJECT_ID_MAX, "object_id", reterr);
        if (r < 0)
                return r;
        r = check_optional(e->source_ip, AUDIT_SOURCE_IP_MAX, "source_ip", reterr);
        if (r < 0)
                return r;
        if (e->outcome != AUDIT_SUCCESS && e->outcome != AUDIT_FAILURE)
                return err_set(reterr, -EINVAL, "invalid_field", "outcome is neither success nor failure");
        if (e->detail && !json_is_object(e->detail))
                return err_set(reterr, -EINVAL, "invalid_field", "detail must be a JSON object");
        if (e->message_id && !id_is_uuid(e->message_id))
                return err_set(reterr, -EINVAL, "invalid_field", "message_id is not a UUID");
        return 0;
}

int audit_record_encode(const struct audit_entry *e, void **ret, size_t *ret_len,
                        char *msgid_out, struct err_detail *reterr) {
        int r = entry_validate(e, reterr);
        if (r < 0)
                return r;

        char change_hash[AUDIT_HASH_HEX_LEN + 1];
        r = audit_change_hash(e->change, change_hash);
        if (r < 0)
                return err_set(reterr, r, "invalid_field", "change cannot be serialized");
        _cleanup_free_ char *detail = NULL;
        if (e->detail) {
                detail = dump_scrubbed(e->detail, JSON_SORT_KEYS | JSON_COMPACT);
                if (!detail)
                        return err_set(reterr, -ENOMEM, "nomem", "could not serialize detail");
                if (strlen(detail) > AUDIT_DETAIL_MAX)
                        return err_set(reterr, -EINVAL, "invalid_field", "detail is larger than %d bytes",
                                       AUDIT_DETAIL_MAX);
        }

        Paddock__V1__Envelope env;
        char msgid[UUID_STR_LEN];
        r = envelope_init(&env, e->tenant_id, NULL, 0, e->producer, msgid);
        if (r < 0)
                return err_set(reterr, r, "random", "could not generate a message id");
        if (e->message_id)
                snprintf(msgid, sizeof msgid, "%s", e->message_id);

        Paddock__V1__AuditRecord rec;
        paddock__v1__audit_record__init(&rec);
        rec.env = &env;
        rec.actor = (char *)e->actor;
        rec.action = (char *)e->action;
        rec.object_type = (char *)(e->object_type ? e->object_type : "");
        rec.object_id = (char *)(e->object_id ? e->object_id : "");
        rec.source_ip = (char *)(e->source_ip ? e->source_ip : "");
        rec.outcome = (char *)(e->outcome == AUDIT_SUCCESS ? "success" : "failure");
        rec.change_sha256 = change_hash;
        rec.detail_json = detail ? detail : (char *)"";

        size_t len = paddock__v1__audit_record__get_packed_size(&rec);
        _cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
                return err_set(reterr, -ENOMEM, "nomem", "out of memory");
        paddock__v1__audit_record__pack(&rec, buf);
        if (msgid_out)
                memcpy(msgid_out, msgid, UUID_STR_LEN);
        *ret_len = len;
        *ret = TAKE_PTR(buf);
        return 0;
}

int audit_emit(struct kafka_producer *p, const struct audit_entry *e, struct err_detail *reterr) {
        _cleanup_free_ void *buf = NULL;
        size_t len = 0;
        int r = audit_record_encode(e, &buf, &len, NULL, reterr);
        if (r < 0)
                return r;
        return kafka_produce_sync(p, TOPIC_AUDIT, e->tenant_id, buf, len, e->timeout_ms > 0 ? e->timeout_ms : 5000,
                                  reterr);
}
