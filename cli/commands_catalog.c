/* paddock catalog list / show / create / update / approve: the tenant's
 * governance catalog. Items are named by id or by name within their kind. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/ids.h"

static const char *const kinds[] = {"images", "skills", "prompt-templates", "egress-profiles", "connectors", "models",
                                   "policy-packs"};

/* The API's kind for what was typed ("egress-profile" or "egress-profiles"),
 * or NULL after saying what is wrong. */
static const char *parse_kind(const char *what, const char *s) {
        for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
                size_t n = strlen(kinds[i]);
                if (strcmp(s, kinds[i]) == 0 || (strlen(s) == n - 1 && strncmp(s, kinds[i], n - 1) == 0))
                        return kinds[i];
        }
        cli_error("%s: unknown catalog kind \"%s\" (images, skills, prompt-templates, egress-profiles, connectors, "
                  "models, policy-packs)",
                  what, s);
        return NULL;
}

/* The id of item ref (an id, or a name looked up in the kind's list). */
static char *resolve_item(const struct cli_ctx *ctx, const char *kind, const char *ref) {
        if (id_is_uuid(ref))
                return strdup(ref);
        _cleanup_free_ char *path = NULL;
        _cleanup_json_ json_t *items = NULL;
        if (asprintf(&path, "/v1/catalog/%s", kind) < 0 || api_get_all(ctx, path, &items) < 0)
                return NULL;
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it) {
                const char *name = json_string_value(json_object_get(it, "name"));
                const char *id = json_string_value(json_object_get(it, "id"));
                if (name && id && strcmp(name, ref) == 0 && cli_valid_id(id))
                        return strdup(id);
        }
        cli_error("no %s catalog item named \"%s\" (not_found)", kind, ref);
        return NULL;
}

static int catalog_list(struct cli_ctx *ctx, int argc, char **argv) {
        const char *state = NULL;
        const struct cli_bind binds[] = {{.name = "state", .str = &state}, {0}};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        const char *kind = parse_kind("catalog list", pos[0]);
        if (!kind)
                return CLI_EXIT_USAGE;
        if (state && strcmp(state, "draft") != 0 && strcmp(state, "approved") != 0) {
                cli_error("catalog list: --state: expected draft or approved, got \"%s\"", state);
                return CLI_EXIT_USAGE;
        }
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *path = NULL;
        _cleanup_json_ json_t *items = NULL;
        if (asprintf(&path, "/v1/catalog/%s%s%s", kind, state ? "?state=" : "", state ? state : "") < 0)
                return CLI_EXIT_FAIL;
        if ((r = cli_fetch_list(ctx, path, &items)) >= 0)
                return r;
        _cleanup_json_ json_t *t = cli_table_new(5, "ID", "NAME", "STATE", "MANAGED", "UPDATED");
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it) {
                cli_table_add(t, json_string_value(json_object_get(it, "id")),
                              json_string_value(json_object_get(it, "name")),
                              json_string_value(json_object_get(it, "state")),
                              json_is_true(json_object_get(it, "managed")) ? "yes" : "no",
                              json_string_value(json_object_get(it, "updated_at")));
        }
        cli_table_print(t);
        return CLI_EXIT_OK;
}

static int catalog_show(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        const char *kind = parse_kind("catalog show", pos[0]);
        if (!kind)
                return CLI_EXIT_USAGE;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *id = resolve_item(ctx, kind, pos[1]);
        _cleanup_free_ char *path = NULL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (!id || asprintf(&path, "/v1/catalog/%s/%s", kind, id) < 0 || api_get(ctx, path, &resp) < 0)
                return CLI_EXIT_FAIL;
        cli_print_json(resp.body);
        return CLI_EXIT_OK;
}

/* The request of create/update from FILE and --name: FILE is the request
 * when it has "body" (or is only {"name"}), else the body. */
static json_t *item_request(const char *what, const char *file, const char *name) {
        _cleanup_json_ json_t *doc = cli_load_json_object(what, file);
        if (!doc)
                return NULL;
        json_t *req;
        bool is_request = json_object_get(doc, "body") ||
                          (json_object_size(doc) == 1 && json_is_string(json_object_get(doc, "name")));
        if (is_request) {
                req = TAKE_PTR(doc);
        } else if (name) {
                req = json_pack("{s:O}", "body", doc);
        } else {
                cli_error("%s: %s has no \"body\": pass --name NAME to use it as the item body", what,
                          strcmp(file, "-") ? file : "stdin");
                return NULL;
        }
        if (req && name)
                json_object_set_new(req, "name", json_string(name));
        return req;
}

static int catalog_write(struct cli_ctx *ctx, int argc, char **argv, bool create) {
        const char *what = ctx->what;
        const char *file = NULL, *name = NULL;
        const struct cli_bind binds[] = {
                {.name = "file", .str = &file},
                {.name = "name", .str = &name},
                {0},
        };
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        const char *kind = parse_kind(what, pos[0]);
        if (!kind)
                return CLI_EXIT_USAGE;
        if (!file) {
                cli_error("%s: --file FILE is required (- reads stdin)", what);
                return CLI_EXIT_USAGE;
        }
        if (name && !*name) {
                cli_error("%s: --name must not be empty", what);
                return CLI_EXIT_USAGE;
        }
        _cleanup_json_ json_t *req = item_request(what, file, name);
        if (!req)
                return CLI_EXIT_USAGE;
        if (create && !json_object_get(req, "name")) {
                cli_error("%s: the item needs a name: put \"name\" in the file or pass --name NAME", what);
                return CLI_EXIT_USAGE;
        }
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *id = create ? NULL : resolve_item(ctx, kind, pos[1]);
        _cleanup_free_ char *path = NULL;
        if (!create && !id)
                return CLI_EXIT_FAIL;
        if ((create ? asprintf(&path, "/v1/catalog/%s", kind) : asprintf(&path, "/v1/catalog/%s/%s", kind, id)) < 0)
                return CLI_EXIT_FAIL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (api_request(ctx, create ? "POST" : "PATCH", path, req, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json) {
                cli_print_json(resp.body);
                return CLI_EXIT_OK;
        }
        const char *rid = json_string_value(json_object_get(resp.body, "id"));
        if (create)
                printf("%s\n", rid ? rid : "?");
        else
                printf("%s %s updated, state %s\n", kind,
                       json_string_value(json_object_get(resp.body, "name")) ?: "?",
                       json_string_value(json_object_get(resp.body, "state")) ?: "?");
        return CLI_EXIT_OK;
}

static int catalog_create(struct cli_ctx *ctx, int argc, char **argv) {
        return catalog_write(ctx, argc, argv, true);
}

static int catalog_update(struct cli_ctx *ctx, int argc, char **argv) {
        return catalog_write(ctx, argc, argv, false);
}

static int catalog_approve(struct cli_ctx *ctx, int argc, char **argv) {
        const char *comment = NULL, *sha = NULL;
        const struct cli_bind binds[] = {{.name = "comment", .str = &comment}, {.name = "sha256", .str = &sha}, {0}};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        const char *kind = parse_kind("catalog approve", pos[0]);
        if (!kind)
                return CLI_EXIT_USAGE;
        /* approved by content: the hash the reviewer saw, never what is there now */
        if (!sha) {
                cli_error("catalog approve: --sha256 HASH is required: the content_sha256 of the item as you "
                          "reviewed it (paddock catalog show %s %s)",
                          kind, pos[1]);
                return CLI_EXIT_USAGE;
        }
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *id = resolve_item(ctx, kind, pos[1]);
        _cleanup_free_ char *path = NULL;
        _cleanup_json_ json_t *body = json_pack("{s:s}", "content_sha256", sha);
        if (!body || (comment && json_object_set_new(body, "comment", json_string(comment)) < 0))
                return CLI_EXIT_FAIL;
        if (!id || asprintf(&path, "/v1/catalog/%s/%s/approve", kind, id) < 0)
                return CLI_EXIT_FAIL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (api_request(ctx, "POST", path, body, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json) {
                cli_print_json(resp.body);
                return CLI_EXIT_OK;
        }
        printf("approved %s %s (%s)\n", kind, json_string_value(json_object_get(resp.body, "name")) ?: "?", id);
        return CLI_EXIT_OK;
}

static const char item_file_help[] =
        "FILE (- for stdin) is either the request {\"name\": ..., \"body\": {...}} or, with\n"
        "--name, the item body alone, e.g. for an egress profile\n"
        "{\"description\": \"...\", \"rules\": [\"pypi.org:443\"]}.\n";

static const struct cli_command catalog_subs[] = {
        {.name = "list", .alias = "ls", .args = "KIND", .summary = "list the catalog items of a kind",
         .options = (const struct cli_option[]){{"state", 0, "STATE", "only draft or only approved items"}, {0}},
         .fn = catalog_list},
        {.name = "show", .alias = "get", .args = "KIND ITEM", .summary = "print an item as JSON", .fn = catalog_show},
        {.name = "create",
         .args = "KIND",
         .summary = "create a draft item; prints its id (sandbox_author in some team)",
         .description = item_file_help,
         .options = (const struct cli_option[]){{"file", 'f', "FILE", "the item (required)"},
                                                {"name", 'n', "NAME", "its name, overriding the file's"},
                                                {0}},
         .fn = catalog_create},
        {.name = "update",
         .args = "KIND ITEM",
         .summary = "change an item's name and/or body; it returns to draft",
         .description = item_file_help,
         .options = (const struct cli_option[]){{"file", 'f', "FILE", "the new item (required)"},
                                                {"name", 'n', "NAME", "its new name"},
                                                {0}},
         .fn = catalog_update},
        {.name = "approve",
         .args = "KIND ITEM",
         .summary = "approve an item as you reviewed it (security_admin or tenant_admin)",
         .description = "--sha256 names the content_sha256 that `catalog show` printed for the item you\n"
                        "reviewed; if the item changed since, the API answers 409 (conflict) and\n"
                        "nothing is approved.\n",
         .options = (const struct cli_option[]){{"sha256", 's', "HASH", "the reviewed content_sha256 (required)"},
                                                {"comment", 'm', "TEXT", "why, for the audit log"},
                                                {0}},
         .fn = catalog_approve},
        {0},
};

const struct cli_command cli_cmd_catalog = {
        .name = "catalog",
        .summary = "the governance catalog: list, show, create, update, approve",
        .description = "KIND is images, skills, prompt-templates, egress-profiles, connectors, models or\n"
                       "policy-packs (the singular works too); ITEM an item id or name. Only approved items\n"
                       "can be used by a published sandbox definition.\n",
        .subs = catalog_subs,
};
