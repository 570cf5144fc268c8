/* paddock node drain / undrain (commands_node_drain.c), subcommands of
 * `paddock node` (commands_node.c). */
#pragma once
#include "cli.h"

int cli_node_drain(struct cli_ctx *ctx, int argc, char **argv);
int cli_node_undrain(struct cli_ctx *ctx, int argc, char **argv);
