#include "auth/oidc_roles.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

static const char *const auth_role_names[AUTH_ROLE_COUNT] = {
        "tenant_admin", "security_admin", "sandbox_author", "launcher", "approver", "reviewer", "viewer",
};

int auth_role_from_string(const char *s, enum auth_role *ret) {
        if (!s)
                return -EINVAL;
        for (unsigned i = 0; i < AUTH_ROLE_COUNT; i++)
                if (strcmp(s, auth_role_names[i]) == 0) {
                        *ret = (enum auth_role)(1u << i);
                        return 0;
                }
        return -EINVAL;
}

const char *auth_role_to_string(enum auth_role role) {
        for (unsigned i = 0; i < AUTH_ROLE_COUNT; i++)
                if ((unsigned)role == 1u << i)
                        return auth_role_names[i];
        return NULL;
}

struct oidc_role_entry {
        char *value;            /* claim value to match */
        char *team;
        unsigned roles;
};

struct oidc_role_map {
        char *claim;            /* dotted path */
        size_t n;
        struct oidc_role_entry *entries;
};

struct oidc_role_map *oidc_role_map_free(struct oidc_role_map *m) {
        if (!m)
                return NULL;
        for (size_t i = 0; i < m->n; i++) {
                free(m->entries[i].value);
                free(m->entries[i].team);
        }
        free(m->entries);
        free(m->claim);
        free(m);
        return NULL;
}

/* Team ids are opaque (UUIDs in practice); allow the characters ids and slugs
 * use so that a typo'd or injected value is caught at configuration time. */
static bool team_id_valid(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n > 128)
                return false;
        if (strcmp(s, OIDC_TEAM_ALL) == 0)
                return true;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                      c == '_' || c == '.'))
                        return false;
        }
        return true;
}

static int oidc_entry_parse(const char *key, json_t *v, struct oidc_role_entry *e, struct err_detail *reterr) {
        if (!json_is_object(v))
                return err_set(reterr, -EINVAL, "role_mapping", "map.\"%s\" must be an object", key);
        const char *member;
        json_t *mv;
        json_object_foreach(v, member, mv)
                if (strcmp(member, "team") != 0 && strcmp(member, "roles") != 0)
                        return err_set(reterr, -EINVAL, "role_mapping", "map.\"%s\" has unknown member \"%s\"", key,
                                       member);
        json_t *team = json_object_get(v, "team");
        if (!json_is_string(team) || !team_id_valid(json_string_value(team)))
                return err_set(reterr, -EINVAL, "role_mapping",
                               "map.\"%s\".team must be \"*\" or a team id (letters, digits, '-', '_', '.')", key);
        json_t *roles = json_object_get(v, "roles");
        if (!json_is_array(roles) || json_array_size(roles) == 0)
                return err_set(reterr, -EINVAL, "role_mapping", "map.\"%s\".roles must be a non-empty array", key);
        unsigned mask = 0;
        size_t i;
        json_t *r;
        json_array_foreach(roles, i, r) {
                enum auth_role role;
                if (auth_role_from_string(json_string_value(r), &role) < 0)
                        return err_set(reterr, -EINVAL, "role_mapping", "map.\"%s\".roles[%zu] is not a known role",
                                       key, i);
                if (mask & role)
                        return err_set(reterr, -EINVAL, "role_mapping", "map.\"%s\".roles[%zu] is a duplicate", key,
                                       i);
                mask |= role;
        }
        if ((mask & AUTH_ROLE_TENANT_ADMIN) && strcmp(json_string_value(team), OIDC_TEAM_ALL) != 0)
                return err_set(reterr, -EINVAL, "role_mapping",
                               "map.\"%s\": tenant_admin can only be granted with team \"*\"", key);
        e->value = strdup(key);
        e->team = strdup(json_string_value(team));
        e->roles = mask;
        if (!e->value || !e->team)
                return -ENOMEM;
        return 0;
}

int oidc_role_map_parse(const json_t *config_c, struct oidc_role_map **ret, struct err_detail *reterr) {
        json_t *config = (json_t *)config_c;    /* jansson getters are not const-correct */
        if (!json_is_object(config))
                return err_set(reterr, -EINVAL, "role_mapping", "role mapping must be an object");
        const char *member;
        json_t *mv;
        json_object_foreach(config, member, mv)
                if (strcmp(member, "claim") != 0 && strcmp(member, "map") != 0)
                        return err_set(reterr, -EINVAL, "role_mapping", "role mapping has unknown member \"%s\"",
                                       member);
        json_t *claim = json_object_get(config, "claim");
        if (!json_is_string(claim) || json_string_length(claim) == 0 || json_string_length(claim) > OIDC_MAX_NAME_LEN)
                return err_set(reterr, -EINVAL, "role_mapping", "claim must be a non-empty string of at most %d bytes",
                               OIDC_MAX_NAME_LEN);
        const char *c = json_string_value(claim);
        if (c[0] == '.' || c[strlen(c) - 1] == '.' || strstr(c, ".."))
                return err_set(reterr, -EINVAL, "role_mapping", "claim path has an empty component");
        json_t *map = json_object_get(config, "map");
        if (!json_is_object(map))
                return err_set(reterr, -EINVAL, "role_mapping", "map must be an object");
        if (json_object_size(map) > OIDC_MAX_MAP_ENTRIES)
                return err_set(reterr, -EINVAL, "role_mapping", "map has more than %d entries", OIDC_MAX_MAP_ENTRIES);

        _cleanup_(oidc_role_map_freep) struct oidc_role_map *m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        m->claim = strdup(c);
        m->entries = calloc(json_object_size(map) ? json_object_size(map) : 1, sizeof *m->entries);
        if (!m->claim || !m->entries)
                return -ENOMEM;
        const char *key;
        json_t *v;
        json_object_foreach(map, key, v) {
                if (*key == 0 || strlen(key) > OIDC_MAX_NAME_LEN)
                        return err_set(reterr, -EINVAL, "role_mapping",
                                       "map keys must be non-empty strings of at most %d bytes", OIDC_MAX_NAME_LEN);
                int r = oidc_entry_parse(key, v, &m->entries[m->n], reterr);
                m->n++;         /* counted even on failure so that free releases partial strings */
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(m);
        return 0;
}

struct oidc_grants *oidc_grants_free(struct oidc_grants *g) {
        if (!g)
                return NULL;
        for (size_t i = 0; i < g->n; i++)
                free(g->v[i].team);
        free(g->v);
        free(g);
        return NULL;
}

/* Follows a dotted path through nested objects; NULL when any step is missing. */
static json_t *claim_lookup(json_t *claims, const char *path) {
        json_t *cur = claims;
        const char *p = path;
        for (;;) {
                const char *dot = strchr(p, '.');
                size_t n = dot ? (size_t)(dot - p) : strlen(p);
                if (!json_is_object(cur))
                        return NULL;
                char name[OIDC_MAX_NAME_LEN + 1];
                memcpy(name, p, n);
                name[n] = 0;
                /* A flat claim literally named "a.b" wins over the path. */
                json_t *flat = p == path ? json_object_get(cur, path) : NULL;
                if (flat)
                        return flat;
                cur = json_object_get(cur, name);
                if (!dot)
                        return cur;
                p = dot + 1;
        }
}

static int oidc_grant_add(struct oidc_grants *g, const char *team, unsigned roles, size_t cap) {
        for (size_t i = 0; i < g->n; i++)
                if (strcmp(g->v[i].team, team) == 0) {
                        g->v[i].roles |= roles;
                        return 0;
                }
        if (g->n >= cap)
                return 0;       /* cannot happen: at most one grant per map entry */
        g->v[g->n].team = strdup(team);
        if (!g->v[g->n].team)
                return -ENOMEM;
        g->v[g->n++].roles = roles;
        return 0;
}

static int oidc_match_value(const struct oidc_role_map *m, const char *value, struct oidc_grants *g) {
        for (size_t i = 0; i < m->n; i++)
                if (strcmp(m->entries[i].value, value) == 0) {
                        int r = oidc_grant_add(g, m->entries[i].team, m->entries[i].roles, m->n);
                        if (r < 0)
                                return r;
                }
        return 0;
}

int oidc_role_map_apply(const struct oidc_role_map *m, const json_t *claims, struct oidc_grants **ret) {
        _cleanup_(oidc_grants_freep) struct oidc_grants *g = calloc(1, sizeof *g);
        if (!g)
                return -ENOMEM;
        g->v = calloc(m->n ? m->n : 1, sizeof *g->v);
        if (!g->v)
                return -ENOMEM;
        json_t *v = claim_lookup((json_t *)claims, m->claim);
        int r = 0;
        if (json_is_string(v))
                r = oidc_match_value(m, json_string_value(v), g);
        else if (json_is_array(v)) {
                size_t i;
                json_t *e;
                json_array_foreach(v, i, e) {
                        if (!json_is_string(e))
                                continue;
                        r = oidc_match_value(m, json_string_value(e), g);
                        if (r < 0)
                                break;
                }
        }
        if (r < 0)
                return r;
        *ret = TAKE_PTR(g);
        return 0;
}

json_t *oidc_grants_to_json(const struct oidc_grants *g) {
        json_t *a = json_array();
        if (!a)
                return NULL;
        for (size_t i = 0; i < g->n; i++) {
                json_t *roles = json_array();
                if (!roles)
                        goto fail;
                for (unsigned b = 0; b < AUTH_ROLE_COUNT; b++)
                        if (g->v[i].roles & (1u << b))
                                json_array_append_new(roles, json_string(auth_role_names[b]));
                if (json_array_append_new(a, json_pack("{s:s, s:o}", "team", g->v[i].team, "roles", roles)) < 0)
                        goto fail;
        }
        return a;
fail:
        json_decref(a);
        return NULL;
}
