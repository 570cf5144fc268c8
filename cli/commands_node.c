/* paddock node list / show: the runner nodes as the scheduler last heard of
 * them (GET /v1/nodes): their state, free capacity and the sandbox images
 * each has, which is what decides where (and whether) a run can be placed.
 * The nodes are the platform's, so any logged-in user may look. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands_node_drain.h"

/* "used/capacity" of one resource of a node: integers as they are, cpus
 * (fractional) as %g. */
static void used_of(char *buf, size_t size, json_t *node, const char *key) {
        json_t *used = json_object_get(json_object_get(node, "used"), key);
        json_t *cap = json_object_get(json_object_get(node, "capacity"), key);
        if (json_is_integer(used) && json_is_integer(cap))
                snprintf(buf, size, "%" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT, json_integer_value(used),
                         json_integer_value(cap));
        else
                snprintf(buf, size, "%g/%g", json_number_value(used), json_number_value(cap));
}

static int node_list(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_login(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        _cleanup_json_ json_t *items = NULL;
        if ((r = cli_fetch_list(ctx, "/v1/nodes", &items)) >= 0)
                return r;
        _cleanup_json_ json_t *t =
                cli_table_new(7, "NODE", "STATE", "LAST_SEEN", "SLOTS", "CPUS", "MEMORY_MB", "IMAGES");
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it) {
                char slots[48], cpus[48], mem[48];
                used_of(slots, sizeof slots, it, "slots");
                used_of(cpus, sizeof cpus, it, "cpus");
                used_of(mem, sizeof mem, it, "memory_mb");
                _cleanup_free_ char *images = cli_join(json_object_get(it, "images"));
                cli_table_add(t, json_string_value(json_object_get(it, "id")),
                              json_string_value(json_object_get(it, "state")),
                              json_string_value(json_object_get(it, "last_seen")), slots, cpus, mem, images);
        }
        cli_print_list_table(t, NULL, "nodes");
        return CLI_EXIT_OK;
}

static int node_show(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_login(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        /* the API has no GET /v1/nodes/{id}: the list is short, and the one source */
        _cleanup_json_ json_t *items = NULL;
        if (api_get_all(ctx, "/v1/nodes", &items) < 0)
                return CLI_EXIT_FAIL;
        json_t *node = NULL, *it;
        size_t i;
        json_array_foreach(items, i, it) {
                const char *id = json_string_value(json_object_get(it, "id"));
                if (id && strcmp(id, pos[0]) == 0)
                        node = it;
        }
        if (!node) {
                cli_error("no node \"%s\" (not_found; see `paddock node list`)", pos[0]);
                return CLI_EXIT_FAIL;
        }
        if (ctx->json) {
                cli_print_json(node);
                return CLI_EXIT_OK;
        }
        char slots[48], cpus[48], mem[48];
        used_of(slots, sizeof slots, node, "slots");
        used_of(cpus, sizeof cpus, node, "cpus");
        used_of(mem, sizeof mem, node, "memory_mb");
        _cleanup_free_ char *images = cli_join(json_object_get(node, "images"));
        printf("id:         %s\n", json_string_value(json_object_get(node, "id")) ?: "?");
        printf("state:      %s\n", json_string_value(json_object_get(node, "state")) ?: "?");
        printf("last seen:  %s\n", json_string_value(json_object_get(node, "last_seen")) ?: "?");
        printf("version:    %s\n", json_string_value(json_object_get(node, "version")) ?: "-");
        printf("slots:      %s used\n", slots);
        printf("cpus:       %s used\n", cpus);
        printf("memory_mb:  %s used\n", mem);
        printf("images:     %s\n", images ? images : "-");
        return CLI_EXIT_OK;
}

static const struct cli_command node_subs[] = {
        {.name = "list", .alias = "ls", .summary = "list the runner nodes: state, used/capacity, images",
         .fn = node_list},
        {.name = "show", .alias = "get", .args = "NODE", .summary = "show one node", .fn = node_show},
        {.name = "drain", .args = "NODE", .summary = "place no new run on NODE; its runs finish (tenant_admin)",
         .fn = cli_node_drain},
        {.name = "undrain", .alias = "uncordon", .args = "NODE", .summary = "place runs on NODE again (tenant_admin)",
         .fn = cli_node_undrain},
        {0},
};

const struct cli_command cli_cmd_node = {
        .name = "node",
        .alias = "nodes",
        .summary = "the runner nodes: list, show, drain, undrain",
        .description =
                "As the scheduler last heard of them. STATE is ready (heard from lately),\n"
                "draining (as ready, but drained: no new run), stale (silent for a while)\n"
                "or dead (its runs were failed or moved). SLOTS,\n"
                "CPUS and MEMORY_MB are used/capacity. IMAGES are the sandbox images the\n"
                "node has built: a run is placed only on a ready node that has its image, and\n"
                "a launch whose image no ready or draining node has is refused.\n",
        .subs = node_subs,
};
