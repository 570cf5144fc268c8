/* One policy engine (issue 12 §1): a definition's `policy.rules` (API.md "A
 * spec") decide an agent action. The engine is pure (no I/O, no globals):
 * build it once from the rules, then decide from any thread.
 *
 * A rule is {match: {tool?, command?, path?, host?, mcp_server?, mcp_tool?},
 * action: allow | ask | deny}. It matches a request when EVERY field it names
 * is present in the request and matches (a rule about paths never matches an
 * action without a path). Order (documented in docs/CONTRACTS.md "Policy
 * engine"): among the matching rules deny wins over ask, ask over allow,
 * whatever their order; the rule that decided is the first matching rule of
 * the winning action, in the order given (a definition's rules first, then
 * approved packs: the caller concatenates). No rule matches: allow, with no
 * rule (the platform's own floors, e.g. the egress proxy's, still apply).
 *
 * Globs: `tool`, `mcp_server` and `mcp_tool` are case-sensitive globs over the
 * whole name; `command` a glob over the whole command line where `*` also
 * crosses "/" and spaces ("git push*"); `path` a path glob: `*` and `?` stay
 * within one segment, `**` crosses segments and a leading or inner `**\/` also
 * matches no directory at all ("**\/.env" matches ".env", "a/b/.env" and
 * "/etc/.env"); `host` a case-insensitive glob over the host name. All globs
 * know `[abc]`, `[a-z]`, `[!x]` / `[^x]` and `\` escapes. Matching is O(pattern
 * length × subject length), never exponential: a hostile pattern cannot stall
 * the runner. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"

enum policy_action { POLICY_ALLOW, POLICY_ASK, POLICY_DENY };

enum policy_glob_kind {
        POLICY_GLOB_NAME,    /* `*` crosses everything, case-sensitive */
        POLICY_GLOB_PATH,    /* `*` stays in a segment, `**` crosses them */
        POLICY_GLOB_HOST,    /* like NAME, case-insensitive */
};

/* What an action is about; NULL fields are absent. Borrowed. Paths are the
 * caller's to normalise: workspace-relative inside the workspace, absolute
 * elsewhere. */
struct policy_request {
        const char *tool, *command, *path, *host, *mcp_server, *mcp_tool;
};

struct policy_decision {
        enum policy_action action;
        int rule;            /* index of the deciding rule, -1: no rule matched (allow) */
};

struct policy_engine;

/* Builds an engine from rules (a JSON array as in a spec; borrowed, copied).
 * field names the array in error messages ("spec.policy.rules"). Returns 0 and
 * *ret (caller frees with policy_engine_free), or -EINVAL with reterr naming
 * the first bad rule field ("spec.policy.rules[2].action ..."), or -ENOMEM. */
int policy_engine_new(json_t *rules, const char *field, struct policy_engine **ret, struct err_detail *reterr);
struct policy_engine *policy_engine_free(struct policy_engine *pe);

/* The same for effective rules (GET .../effective-policy, the run snapshot's
 * policy_json): each rule may also carry "source", where it came from
 * ("spec.policy.rules[0]", "pack:<catalog id>.rules[2]"), which decisions name
 * (policy_rule_source). A definition's own rules may not. */
int policy_engine_new_effective(json_t *rules, const char *field, struct policy_engine **ret,
                                struct err_detail *reterr);

/* The source of rule (policy_decision.rule), NULL if not said or no rule. */
const char *policy_rule_source(const struct policy_engine *pe, int rule);

/* True if a rule whose action is at_least or stricter names match_field
 * ("path", "command", ...): e.g. file permission events are only set up when
 * a path rule can deny or ask. */
bool policy_engine_has(const struct policy_engine *pe, const char *match_field, enum policy_action at_least);

/* The decision for req (see the header comment for the order). */
struct policy_decision policy_decide(const struct policy_engine *pe, const struct policy_request *req);

size_t policy_engine_n_rules(const struct policy_engine *pe);
const char *policy_action_name(enum policy_action a);

/* True if subject matches pattern under kind's rules; a malformed pattern
 * (an unclosed `[`, a trailing `\`) matches nothing. Both borrowed. */
bool policy_glob_match(const char *pattern, const char *subject, enum policy_glob_kind kind);
