#include "policy/policy_engine.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/macro.h"

#define POLICY_GLOB_MAX 1024
#define POLICY_RULES_MAX 1024
#define POLICY_SOURCE_MAX 200

/* ---- globs: one token at a time over a bitmap of reachable subject
 * positions, so matching costs O(tokens × subject length) whatever the
 * pattern (no backtracking to blow up) ---- */

enum tok_kind { TOK_CHAR, TOK_ANY1, TOK_CLASS, TOK_STAR, TOK_GLOBSTAR, TOK_DIRS };

struct tok {
        enum tok_kind kind;
        unsigned char c;          /* TOK_CHAR */
        const char *cls;          /* TOK_CLASS: between the brackets, borrowed */
        size_t cls_len;
        bool negate;
};

static bool fold_eq(unsigned char a, unsigned char b, bool fold) {
        return fold ? tolower(a) == tolower(b) : a == b;
}

static bool class_has(const struct tok *t, unsigned char c, bool fold) {
        bool in = false;
        for (size_t i = 0; i < t->cls_len && !in; i++) {
                unsigned char lo = (unsigned char)t->cls[i];
                if (lo == '\\' && i + 1 < t->cls_len)
                        lo = (unsigned char)t->cls[++i];
                if (i + 2 < t->cls_len && t->cls[i + 1] == '-') {
                        unsigned char hi = (unsigned char)t->cls[i + 2];
                        i += 2;
                        unsigned char x = fold ? (unsigned char)tolower(c) : c;
                        in = (c >= lo && c <= hi) ||
                             (fold && x >= (unsigned char)tolower(lo) && x <= (unsigned char)tolower(hi));
                } else
                        in = fold_eq(lo, c, fold);
        }
        return in != t->negate;
}

/* Splits pattern into toks (at most strlen(pattern)); -1 when malformed. */
static int tokenize(const char *p, enum policy_glob_kind kind, struct tok *toks) {
        int n = 0;
        while (*p) {
                struct tok t = {.kind = TOK_CHAR};
                if (*p == '\\') {
                        if (!p[1])
                                return -1;
                        t.c = (unsigned char)p[1];
                        p += 2;
                } else if (*p == '?') {
                        t.kind = TOK_ANY1;
                        p++;
                } else if (*p == '[') {
                        const char *q = p + 1;
                        t.kind = TOK_CLASS;
                        if (*q == '!' || *q == '^') {
                                t.negate = true;
                                q++;
                        }
                        const char *start = q;
                        if (*q == ']')
                                q++; /* a leading ] is a member */
                        while (*q && *q != ']') {
                                if (*q == '\\' && q[1])
                                        q++;
                                q++;
                        }
                        if (*q != ']')
                                return -1;
                        t.cls = start;
                        t.cls_len = (size_t)(q - start);
                        p = q + 1;
                } else if (*p == '*') {
                        size_t stars = strspn(p, "*");
                        p += stars;
                        if (kind != POLICY_GLOB_PATH || stars == 1)
                                t.kind = TOK_STAR;
                        else if (*p == '/') {
                                t.kind = TOK_DIRS; /* "**" "/": zero or more whole directories */
                                p++;
                        } else
                                t.kind = TOK_GLOBSTAR;
                } else
                        t.c = (unsigned char)*p++;
                /* "*" then "**" and the like collapse: one star token is enough */
                if (n > 0 && t.kind == TOK_STAR && toks[n - 1].kind == TOK_STAR)
                        continue;
                toks[n++] = t;
        }
        return n;
}

bool policy_glob_match(const char *pattern, const char *subject, enum policy_glob_kind kind) {
        if (!pattern || !subject)
                return false;
        size_t pl = strlen(pattern), n = strlen(subject);
        if (pl > POLICY_GLOB_MAX)
                return false;
        bool path = kind == POLICY_GLOB_PATH, fold = kind == POLICY_GLOB_HOST;
        struct tok toks[POLICY_GLOB_MAX];
        int nt = tokenize(pattern, kind, toks);
        if (nt < 0)
                return false;
        _cleanup_free_ uint8_t *cur = calloc(n + 1, 1), *next = calloc(n + 1, 1);
        if (!cur || !next)
                return false;
        cur[0] = 1;
        for (int k = 0; k < nt; k++) {
                const struct tok *t = &toks[k];
                memset(next, 0, n + 1);
                bool any = false;
                switch (t->kind) {
                case TOK_CHAR:
                case TOK_ANY1:
                case TOK_CLASS:
                        for (size_t j = 0; j < n; j++) {
                                if (!cur[j])
                                        continue;
                                unsigned char c = (unsigned char)subject[j];
                                bool ok = t->kind == TOK_CHAR  ? fold_eq(t->c, c, fold)
                                          : t->kind == TOK_ANY1 ? !(path && c == '/')
                                                                : !(path && c == '/') && class_has(t, c, fold);
                                if (ok) {
                                        next[j + 1] = 1;
                                        any = true;
                                }
                        }
                        break;
                case TOK_STAR: /* any run, within a segment for paths */
                        for (size_t j = 0; j <= n; j++) {
                                next[j] = cur[j] || (j > 0 && next[j - 1] && !(path && subject[j - 1] == '/'));
                                any |= next[j];
                        }
                        break;
                case TOK_GLOBSTAR: /* any run, across segments */
                        for (size_t j = 0; j <= n; j++) {
                                next[j] = cur[j] || (j > 0 && next[j - 1]);
                                any |= next[j];
                        }
                        break;
                case TOK_DIRS: { /* "" or any run ending in "/" */
                        bool seen = false; /* some cur[i] with i < j */
                        for (size_t j = 0; j <= n; j++) {
                                next[j] = cur[j] || (j > 0 && subject[j - 1] == '/' && seen);
                                seen |= cur[j];
                                any |= next[j];
                        }
                        break;
                }
                }
                if (!any)
                        return false;
                uint8_t *tmp = cur;
                cur = next;
                next = tmp;
        }
        return cur[n];
}

/* ---- rules ---- */

enum match_field { M_TOOL, M_COMMAND, M_PATH, M_HOST, M_MCP_SERVER, M_MCP_TOOL, M_N };

static const struct {
        const char *name;
        enum policy_glob_kind kind;
} match_fields[M_N] = {
        [M_TOOL] = {"tool", POLICY_GLOB_NAME},     [M_COMMAND] = {"command", POLICY_GLOB_NAME},
        [M_PATH] = {"path", POLICY_GLOB_PATH},     [M_HOST] = {"host", POLICY_GLOB_HOST},
        [M_MCP_SERVER] = {"mcp_server", POLICY_GLOB_NAME}, [M_MCP_TOOL] = {"mcp_tool", POLICY_GLOB_NAME},
};

struct rule {
        char *glob[M_N];       /* NULL: the rule does not look at this field */
        enum policy_action action;
        char *source;          /* where the rule came from, NULL: not said */
};

struct policy_engine {
        struct rule *rules;
        size_t n;
};

const char *policy_action_name(enum policy_action a) {
        return a == POLICY_DENY ? "deny" : a == POLICY_ASK ? "ask" : "allow";
}

struct policy_engine *policy_engine_free(struct policy_engine *pe) {
        if (!pe)
                return NULL;
        for (size_t i = 0; i < pe->n; i++)
                for (int f = 0; f < M_N; f++)
                        free(pe->rules[i].glob[f]);
        for (size_t i = 0; i < pe->n; i++)
                free(pe->rules[i].source);
        free(pe->rules);
        free(pe);
        return NULL;
}

static int parse_rule(json_t *js, const char *field, size_t i, bool allow_source, struct rule *r,
                      struct err_detail *e) {
        if (!json_is_object(js))
                return err_set(e, -EINVAL, "policy", "%s[%zu] must be an object {match, action}", field, i);
        const char *key;
        json_t *v;
        json_object_foreach(js, key, v) {
                if (strcmp(key, "match") && strcmp(key, "action") && (!allow_source || strcmp(key, "source")))
                        return err_set(e, -EINVAL, "policy", "%s[%zu].%s is not a known field", field, i, key);
        }
        json_t *src = json_object_get(js, "source");
        if (src) {
                if (!json_is_string(src) || json_string_length(src) == 0 || json_string_length(src) > POLICY_SOURCE_MAX ||
                    strlen(json_string_value(src)) != json_string_length(src))
                        return err_set(e, -EINVAL, "policy", "%s[%zu].source must be a string of 1-%d characters",
                                       field, i, POLICY_SOURCE_MAX);
                if (!(r->source = strdup(json_string_value(src))))
                        return -ENOMEM;
        }
        json_t *match = json_object_get(js, "match");
        if (!json_is_object(match) || json_object_size(match) == 0)
                return err_set(e, -EINVAL, "policy", "%s[%zu].match must be an object naming at least one field", field,
                               i);
        json_object_foreach(match, key, v) {
                int f = 0;
                while (f < M_N && strcmp(match_fields[f].name, key))
                        f++;
                if (f == M_N)
                        return err_set(e, -EINVAL, "policy", "%s[%zu].match.%s is not a known field", field, i, key);
                struct tok probe[POLICY_GLOB_MAX];
                const char *g = json_string_value(v);
                if (!g || !*g || strlen(g) != json_string_length(v) || strlen(g) > POLICY_GLOB_MAX ||
                    tokenize(g, match_fields[f].kind, probe) < 0)
                        return err_set(e, -EINVAL, "policy",
                                       "%s[%zu].match.%s must be a glob of 1-%d characters (brackets closed, no "
                                       "trailing backslash)",
                                       field, i, key, POLICY_GLOB_MAX);
                if (!(r->glob[f] = strdup(g)))
                        return -ENOMEM;
        }
        const char *a = json_string_value(json_object_get(js, "action"));
        if (!a || (strcmp(a, "allow") && strcmp(a, "ask") && strcmp(a, "deny")))
                return err_set(e, -EINVAL, "policy", "%s[%zu].action must be \"allow\", \"ask\" or \"deny\"", field,
                               i);
        r->action = !strcmp(a, "deny") ? POLICY_DENY : !strcmp(a, "ask") ? POLICY_ASK : POLICY_ALLOW;
        return 0;
}

static int engine_new(json_t *rules, const char *field, bool allow_source, struct policy_engine **ret,
                      struct err_detail *reterr) {
        *ret = NULL;
        if (rules && !json_is_array(rules))
                return err_set(reterr, -EINVAL, "policy", "%s must be an array", field);
        size_t n = json_array_size(rules);
        if (n > POLICY_RULES_MAX)
                return err_set(reterr, -EINVAL, "policy", "%s holds more than %d rules", field, POLICY_RULES_MAX);
        struct policy_engine *pe = calloc(1, sizeof *pe);
        if (!pe || (n && !(pe->rules = calloc(n, sizeof *pe->rules)))) {
                free(pe);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                pe->n = i + 1; /* what policy_engine_free must release */
                int r = parse_rule(json_array_get(rules, i), field, i, allow_source, &pe->rules[i], reterr);
                if (r < 0) {
                        policy_engine_free(pe);
                        return r;
                }
        }
        pe->n = n;
        *ret = pe;
        return 0;
}

int policy_engine_new(json_t *rules, const char *field, struct policy_engine **ret, struct err_detail *reterr) {
        return engine_new(rules, field, false, ret, reterr);
}

int policy_engine_new_effective(json_t *rules, const char *field, struct policy_engine **ret,
                                struct err_detail *reterr) {
        return engine_new(rules, field, true, ret, reterr);
}

size_t policy_engine_n_rules(const struct policy_engine *pe) {
        return pe ? pe->n : 0;
}

const char *policy_rule_source(const struct policy_engine *pe, int rule) {
        return pe && rule >= 0 && (size_t)rule < pe->n ? pe->rules[rule].source : NULL;
}

bool policy_engine_has(const struct policy_engine *pe, const char *match_field, enum policy_action at_least) {
        int f = 0;
        while (f < M_N && strcmp(match_fields[f].name, match_field))
                f++;
        for (size_t i = 0; pe && f < M_N && i < pe->n; i++)
                if (pe->rules[i].glob[f] && pe->rules[i].action >= at_least)
                        return true;
        return false;
}

static bool rule_matches(const struct rule *r, const struct policy_request *req) {
        const char *subject[M_N] = {[M_TOOL] = req->tool, [M_COMMAND] = req->command, [M_PATH] = req->path,
                                    [M_HOST] = req->host, [M_MCP_SERVER] = req->mcp_server,
                                    [M_MCP_TOOL] = req->mcp_tool};
        for (int f = 0; f < M_N; f++)
                if (r->glob[f] && (!subject[f] || !policy_glob_match(r->glob[f], subject[f], match_fields[f].kind)))
                        return false;
        return true;
}

struct policy_decision policy_decide(const struct policy_engine *pe, const struct policy_request *req) {
        struct policy_decision d = {.action = POLICY_ALLOW, .rule = -1};
        for (size_t i = 0; pe && i < pe->n; i++) {
                const struct rule *r = &pe->rules[i];
                /* only a stronger action can change the decision: skip the match otherwise */
                if ((d.rule >= 0 && r->action <= d.action) || !rule_matches(r, req))
                        continue;
                d.action = r->action;
                d.rule = (int)i;
                if (d.action == POLICY_DENY)
                        break; /* nothing is stronger */
        }
        return d;
}
