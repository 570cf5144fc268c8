/* OCSF mapping of audit records (audit_ocsf.h). */
#include "audit/audit_ocsf.h"

#include <jansson.h>
#include <string.h>

#include "audit/audit.h"
#include "core/macro.h"


#define CLASS_AUTHENTICATION 3002
#define CLASS_API_ACTIVITY 6003

struct verb_activity {
        const char *verb;
        int activity_id;
        const char *activity;
};

/* Authentication: 1 Logon, 2 Logoff; API Activity: 1 Create, 3 Update, 4 Delete. */
static const struct verb_activity auth_verbs[] = {
        {"login", 1, "Logon"}, {"login_failed", 1, "Logon"}, {"oidc_login", 1, "Logon"}, {"logout", 2, "Logoff"},
};
static const struct verb_activity api_verbs[] = {
        {"create", 1, "Create"},   {"launch", 1, "Create"},  {"put", 1, "Create"},    {"import", 1, "Create"},
        {"grant", 1, "Create"},    {"update", 3, "Update"},  {"publish", 3, "Update"}, {"approve", 3, "Update"},
        {"decide", 3, "Update"},   {"cancel", 3, "Update"},  {"disable", 3, "Update"}, {"delete", 4, "Delete"},
        {"revoke", 4, "Delete"},   {"remove", 4, "Delete"},
        {"set", 1, "Create"},      {"lift", 4, "Delete"}, /* legal_hold.set, legal_hold.lift */
};

static void activity_of(const char *action, const struct verb_activity *table, size_t n, int *id, const char **name) {
        const char *dot = strrchr(action, '.');
        const char *verb = dot ? dot + 1 : action;
        *id = 99;
        *name = "Other";
        for (size_t i = 0; i < n; i++)
                if (strcmp(verb, table[i].verb) == 0) {
                        *id = table[i].activity_id;
                        *name = table[i].activity;
                        return;
                }
}

/* actor.user: uid without the "user:"/"service:" prefix; services are OCSF
 * type "System". */
static json_t *user_object(const char *actor) {
        bool service = strncmp(actor, "service:", 8) == 0;
        const char *uid = service ? actor + 8 : strncmp(actor, "user:", 5) == 0 ? actor + 5 : actor;
        return json_pack("{ss si ss}", "uid", uid, "type_id", service ? 3 : 1, "type", service ? "System" : "User");
}

char *audit_ocsf_json(const Paddock__V1__AuditRecord *rec, const struct audit_chain_position *pos) {
        bool auth = strncmp(rec->action, "auth.", 5) == 0;
        bool success = strcmp(rec->outcome, "success") == 0;
        int class_uid = auth ? CLASS_AUTHENTICATION : CLASS_API_ACTIVITY, activity_id;
        const char *activity;
        if (auth)
                activity_of(rec->action, auth_verbs, ELEMENTSOF(auth_verbs), &activity_id, &activity);
        else
                activity_of(rec->action, api_verbs, ELEMENTSOF(api_verbs), &activity_id, &activity);

        _cleanup_(json_decrefp) json_t *o = json_pack(
                "{s:i, s:i, s:s, s:i, s:i, s:I, s:s, s:s, s:i, s:i, s:{s:o}, s:{s:s},"
                " s:{s:{s:s, s:s}, s:s, s:s, s:s, s:s}, s:{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s}}",
                "class_uid", class_uid,
                "category_uid", auth ? 3 : 6,
                "class_name", auth ? "Authentication" : "API Activity",
                "activity_id", activity_id,
                "type_uid", class_uid * 100 + activity_id,
                "time", (json_int_t)(pos->ts_us / 1000), /* OCSF timestamp_t: ms since the epoch */
                "activity_name", activity,
                "status", success ? "Success" : "Failure",
                "status_id", success ? 1 : 2,
                "severity_id", success ? 1 : 3,
                "actor", "user", user_object(rec->actor),
                "api", "operation", rec->action,
                "metadata", "product", "name", "Paddock", "vendor_name", "Paddock",
                "version", AUDIT_OCSF_VERSION, "uid", rec->env->message_id, "tenant_uid", rec->env->tenant_id,
                "log_name", "paddock.audit",
                "unmapped", "paddock_seq", (json_int_t)pos->seq, "hash", pos->hash, "tenant_id", rec->env->tenant_id,
                "actor", rec->actor, "object_type", rec->object_type, "object_id", rec->object_id,
                "change_sha256", rec->change_sha256, "ts", pos->ts);
        if (!o)
                return NULL;
        if (*rec->source_ip && json_object_set_new(o, "src_endpoint", json_pack("{ss}", "ip", rec->source_ip)) < 0)
                return NULL;
        if (auth && json_object_set_new(o, "user", user_object(rec->actor)) < 0)
                return NULL;
        if (!auth && *rec->object_type &&
            json_object_set_new(o, "resources",
                                json_pack("[{ss ss}]", "type", rec->object_type, "uid", rec->object_id)) < 0)
                return NULL;
        json_t *detail = *rec->detail_json ? json_loads(rec->detail_json, 0, NULL) : NULL;
        if (json_is_object(detail)) {
                audit_scrub(detail);
                json_object_set_new(json_object_get(o, "unmapped"), "detail", detail);
        } else {
                json_decref(detail);
        }
        return json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
}
