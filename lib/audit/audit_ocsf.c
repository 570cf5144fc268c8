/* OCSF mapping of audit records (audit_ocsf.h). */
#include "audit/audit_ocsf.h"

#include <jansson.h>
#include <errno.h>
#include <stdio.h>
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
        /* src_endpoint is required by API Activity (OCSF 1.1.0): the caller's
         * address, or for a service acting on its own (the retention sweeper)
         * the producing service, network_endpoint's svc_name */
        if (*rec->source_ip) {
                if (json_object_set_new(o, "src_endpoint", json_pack("{ss}", "ip", rec->source_ip)) < 0)
                        return NULL;
        } else if (!auth && json_object_set_new(o, "src_endpoint",
                                                json_pack("{ss}", "svc_name",
                                                          *rec->env->producer ? rec->env->producer : "paddock")) < 0) {
                return NULL;
        }
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

/* ---- run events (docs/CONTRACTS.md "SIEM feed: run events") ---- */

#define CLASS_APPLICATION_LIFECYCLE 6002
#define CLASS_DETECTION_FINDING 2004

static bool is_terminal(const char *s) {
        static const char *const t[] = {"succeeded", "failed", "cancelled", "timed_out", "limit_exceeded", "rejected"};
        for (size_t i = 0; i < ELEMENTSOF(t); i++)
                if (strcmp(s, t[i]) == 0)
                        return true;
        return false;
}

/* The fields every run event record shares: classification, time (ms),
 * metadata with the deterministic uid, and unmapped with what Paddock knows
 * beyond OCSF. */
static json_t *run_base(const Paddock__V1__RunEvent *ev, const char *uid, int class_uid, int category_uid,
                        const char *class_name, int activity_id, const char *activity, int severity_id, json_t *data) {
        json_t *o = json_pack("{s:i, s:i, s:s, s:i, s:s, s:i, s:I, s:i,"
                              " s:{s:{s:s, s:s}, s:s, s:s, s:s, s:s},"
                              " s:{s:s, s:s, s:I, s:s, s:s, s:s, s:s}}",
                              "class_uid", class_uid, "category_uid", category_uid, "class_name", class_name,
                              "activity_id", activity_id, "activity_name", activity, "type_uid",
                              class_uid * 100 + activity_id, "time", (json_int_t)(ev->env->ts_unix_us / 1000),
                              "severity_id", severity_id,
                              "metadata", "product", "name", "Paddock", "vendor_name", "Paddock", "version",
                              AUDIT_OCSF_VERSION, "uid", uid, "tenant_uid", ev->env->tenant_id, "log_name",
                              "paddock.runs.events",
                              "unmapped", "run_id", ev->env->run_id, "team_id", ev->team_id, "seq",
                              (json_int_t)ev->env->seq, "kind", ev->kind, "actor", ev->actor, "producer",
                              ev->env->producer, "tenant_id", ev->env->tenant_id);
        if (o && data) {
                audit_scrub(data);
                json_object_set(json_object_get(o, "unmapped"), "data", data);
        }
        return o;
}

static const char *str_of(json_t *data, const char *key) {
        const char *s = json_string_value(json_object_get(data, key));
        return s ? s : "";
}

/* Actor of a run event: the agent, the platform (a service), or a person. */
static json_t *run_actor(const Paddock__V1__RunEvent *ev) {
        if (strncmp(ev->actor, "user:", 5) == 0)
                return json_pack("{s:o}", "user", user_object(ev->actor));
        bool agent = strcmp(ev->actor, "agent") == 0;
        return json_pack("{s:{ss ss si ss}}", "user", "uid", agent ? "agent" : "platform", "name",
                         agent ? "agent" : "platform", "type_id", agent ? 99 : 3, "type", agent ? "Other" : "System");
}

/* Application Lifecycle (6002): a run is an application instance the
 * platform installs (provisioning: the sandbox is set up on its node),
 * starts (running) and stops (its terminal status, status Success only for
 * succeeded). app is the run (product object: uid = run id). */
static json_t *run_lifecycle(const Paddock__V1__RunEvent *ev, const char *uid, json_t *data) {
        const char *st = *ev->status ? ev->status : str_of(data, "status");
        int activity_id;
        const char *activity;
        if (strcmp(st, "provisioning") == 0)
                activity_id = 1, activity = "Install";
        else if (strcmp(st, "running") == 0)
                activity_id = 3, activity = "Start";
        else if (is_terminal(st))
                activity_id = 4, activity = "Stop";
        else
                return NULL;
        bool ok = activity_id != 4 || strcmp(st, "succeeded") == 0;
        bool bad = activity_id == 4 && strcmp(st, "succeeded") != 0 && strcmp(st, "cancelled") != 0;
        json_t *o = run_base(ev, uid, CLASS_APPLICATION_LIFECYCLE, 6, "Application Lifecycle", activity_id, activity,
                             bad ? 3 : 1, data);
        if (!o)
                return NULL;
        json_object_set_new(o, "app", json_pack("{ss ss ss}", "name", "paddock run", "uid", ev->env->run_id,
                                                "vendor_name", "Paddock"));
        json_object_set_new(o, "status", json_string(ok ? "Success" : "Failure"));
        json_object_set_new(o, "status_id", json_integer(ok ? 1 : 2));
        json_object_set_new(o, "status_detail", json_string(st));
        json_object_set_new(o, "actor", run_actor(ev));
        return o;
}

/* Detection Finding (2004) with the Security Control profile: a policy
 * decision is the policy engine (a security control) finding an action of
 * the agent and allowing, denying or holding it; an approval is the finding
 * of a held action, created on approval_requested and closed on
 * approval_decided (finding_info.uid = approval id, so a SIEM correlates
 * the two). */
static json_t *run_finding(const Paddock__V1__RunEvent *ev, const char *uid, json_t *data) {
        const char *kind = ev->kind;
        int activity_id = 1, action_id, disposition_id, severity_id, status_id = 1;
        const char *activity = "Create", *action, *disposition, *status = "New";
        char title[512], fuid[256];
        if (strcmp(kind, "policy_decision") == 0) {
                const char *a = str_of(data, "action");
                if (strcmp(a, "allow") == 0)
                        action_id = 1, action = "Allowed", disposition_id = 1, disposition = "Allowed", severity_id = 1;
                else if (strcmp(a, "deny") == 0)
                        action_id = 2, action = "Denied", disposition_id = 2, disposition = "Blocked", severity_id = 3;
                else if (strcmp(a, "ask") == 0)
                        action_id = 2, action = "Denied", disposition_id = 14, disposition = "Delayed", severity_id = 2;
                else
                        return NULL;
                snprintf(title, sizeof title, "policy %s at level %s by rule %s", a, str_of(data, "level"),
                         *str_of(data, "rule") ? str_of(data, "rule") : "(default)");
                snprintf(fuid, sizeof fuid, "%s", uid);
        } else if (strcmp(kind, "approval_requested") == 0) {
                action_id = 2, action = "Denied", disposition_id = 14, disposition = "Delayed", severity_id = 2;
                snprintf(title, sizeof title, "approval requested: %s", str_of(data, "kind"));
                snprintf(fuid, sizeof fuid, "%s", str_of(data, "approval_id"));
        } else if (strcmp(kind, "approval_decided") == 0) {
                const char *d = str_of(data, "decision"), *by = str_of(data, "by");
                bool approved = strcmp(d, "approve") == 0;
                bool expired = strcmp(by, "timeout") == 0;
                activity_id = 3, activity = "Close", status_id = 4, status = "Resolved";
                action_id = approved ? 1 : 2;
                action = approved ? "Allowed" : "Denied";
                disposition_id = approved ? 8 : expired ? 25 : 2;
                disposition = approved ? "Approved" : expired ? "Rejected" : "Blocked";
                severity_id = 1;
                snprintf(title, sizeof title, "approval %s", approved ? "approved" : expired ? "expired" : "denied");
                snprintf(fuid, sizeof fuid, "%s", str_of(data, "approval_id"));
        } else {
                return NULL;
        }
        if (!*fuid)
                return NULL; /* an approval event without its id cannot be correlated: not a finding */
        json_t *o = run_base(ev, uid, CLASS_DETECTION_FINDING, 2, "Detection Finding", activity_id, activity,
                             severity_id, data);
        if (!o)
                return NULL;
        json_t *types = json_pack("[s]", kind);
        json_t *fi = json_pack("{ss ss so}", "uid", fuid, "title", title, "types", types);
        const char *rule = str_of(data, "rule");
        if (fi && *rule)
                json_object_set_new(fi, "analytic", json_pack("{ss si ss}", "name", rule, "type_id", 1, "type", "Rule"));
        json_object_set_new(o, "finding_info", fi);
        json_object_set_new(o, "action_id", json_integer(action_id));
        json_object_set_new(o, "action", json_string(action));
        json_object_set_new(o, "disposition_id", json_integer(disposition_id));
        json_object_set_new(o, "disposition", json_string(disposition));
        json_object_set_new(o, "status_id", json_integer(status_id));
        json_object_set_new(o, "status", json_string(status));
        json_object_set_new(o, "resources", json_pack("[{ss ss}]", "type", "run", "uid", ev->env->run_id));
        json_object_set_new(o, "actor", run_actor(ev));
        return o;
}

bool audit_ocsf_run_event_kind(const char *kind) {
        return !strcmp(kind, "status") || !strcmp(kind, "policy_decision") || !strcmp(kind, "approval_requested") ||
               !strcmp(kind, "approval_decided");
}

int audit_ocsf_run_event_json(const Paddock__V1__RunEvent *ev, char **ret) {
        *ret = NULL;
        if (!ev->env || !*ev->env->run_id)
                return 0;
        if (!audit_ocsf_run_event_kind(ev->kind))
                return 0;
        bool status = strcmp(ev->kind, "status") == 0;
        /* deterministic uid: the same event delivered again gets the same
         * record; seq 0 (platform verdicts) has no place in the run's
         * sequence, its message id is stable across retries instead */
        char uid[160];
        if (ev->env->seq > 0)
                snprintf(uid, sizeof uid, "%s:%llu", ev->env->run_id, (unsigned long long)ev->env->seq);
        else
                snprintf(uid, sizeof uid, "%s:%s", ev->env->run_id, ev->env->message_id);
        json_t *data = *ev->data_json ? json_loads(ev->data_json, 0, NULL) : NULL;
        if (!json_is_object(data)) {
                json_decref(data);
                data = json_object();
                if (!data)
                        return -ENOMEM;
        }
        _cleanup_(json_decrefp) json_t *d = data;
        _cleanup_(json_decrefp) json_t *o = status ? run_lifecycle(ev, uid, d) : run_finding(ev, uid, d);
        if (!o)
                return 0;
        *ret = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
        return *ret ? 1 : -ENOMEM;
}

int audit_ocsf_run_queued_json(const Paddock__V1__AuditRecord *rec, const struct audit_chain_position *pos,
                               char **ret) {
        *ret = NULL;
        if (strcmp(rec->action, "run.launch") != 0 || strcmp(rec->outcome, "success") != 0 || !*rec->object_id)
                return 0;
        char uid[160];
        snprintf(uid, sizeof uid, "%s:queued", rec->env->message_id);
        /* 6002 has no activity for a queued application: 99 Other, named (OCSF: activity_name then says what) */
        _cleanup_(json_decrefp) json_t *o = json_pack(
                "{s:i, s:i, s:s, s:i, s:s, s:i, s:I, s:i, s:s, s:i, s:s, s:{s:o},"
                " s:{s:s, s:s, s:s},"
                " s:{s:{s:s, s:s}, s:s, s:s, s:s, s:s},"
                " s:{s:s, s:s, s:I, s:s}}",
                "class_uid", CLASS_APPLICATION_LIFECYCLE, "category_uid", 6, "class_name", "Application Lifecycle",
                "activity_id", 99, "activity_name", "Queue", "type_uid", CLASS_APPLICATION_LIFECYCLE * 100 + 99,
                "time", (json_int_t)(pos->ts_us / 1000), "severity_id", 1, "status", "Success", "status_id", 1,
                "status_detail", "queued", "actor", "user", user_object(rec->actor),
                "app", "name", "paddock run", "uid", rec->object_id, "vendor_name", "Paddock",
                "metadata", "product", "name", "Paddock", "vendor_name", "Paddock", "version", AUDIT_OCSF_VERSION,
                "uid", uid, "tenant_uid", rec->env->tenant_id, "log_name", "paddock.audit",
                "unmapped", "run_id", rec->object_id, "audit_message_id", rec->env->message_id, "paddock_seq",
                (json_int_t)pos->seq, "tenant_id", rec->env->tenant_id);
        if (!o)
                return -ENOMEM;
        *ret = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
        return *ret ? 1 : -ENOMEM;
}
