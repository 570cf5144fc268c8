/* paddock node drain / undrain NODE (issue 16; docs/CONTRACTS.md "Node
 * drain"): POST / DELETE /v1/nodes/{id}/drain. A drained node takes no new
 * run, the runs it holds finish; `node list` shows it draining. */
#include <stdio.h>

#include "cli.h"
#include "commands_node_drain.h"

static char *drain_path(const char *node) {
        _cleanup_free_ char *n = cli_url_escape(node);
        char *p = NULL;
        if (!n || asprintf(&p, "/v1/nodes/%s/drain", n) < 0)
                return NULL;
        return p;
}

int cli_node_drain(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_login(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        _cleanup_free_ char *path = drain_path(pos[0]);
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (!path || api_request(ctx, "POST", path, NULL, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json)
                cli_print_json(resp.body);
        else
                printf("node %s draining since %s: no new runs; its runs finish (undo: paddock node undrain %s)\n",
                       pos[0], json_string_value(json_object_get(resp.body, "since")) ?: "?", pos[0]);
        return CLI_EXIT_OK;
}

int cli_node_undrain(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_login(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        _cleanup_free_ char *path = drain_path(pos[0]);
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (!path || api_request(ctx, "DELETE", path, NULL, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json) {
                _cleanup_json_ json_t *o = json_pack("{s:s, s:b}", "id", pos[0], "draining", 0);
                cli_print_json(o);
        } else
                printf("node %s takes runs again\n", pos[0]);
        return CLI_EXIT_OK;
}
