/* Help rendered from the command table (cli.h): the top-level --help, a
 * group's and a command's. `paddock help X SUB` and `paddock X SUB --help`
 * both end here, so they print the same text by construction. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* The options every command takes, before or after its name. */
const struct cli_option cli_global_options[] = {
        {"api", 0, "URL", "API base URL (default: $PADDOCK_API_URL, the context's, the local stack's)"},
        {"context", 0, "NAME", "use the saved login NAME (else $PADDOCK_CONTEXT, else the current context)"},
        {"json", 0, NULL, "print the API's JSON answer instead of text (see below)"},
        {"help", 'h', NULL, "show help: of the CLI, or of the command it follows"},
        {"version", 0, NULL, "print the version and exit"},
        {0},
};

static const char top_intro[] = "Run AI coding agents in governed, isolated, ephemeral sandboxes.\n";

static const char top_footer[] =
        "--json prints the API's JSON answer as it came. A list prints every page's items\n"
        "as one {\"items\": [...], \"next_cursor\": null} (a cursor instead of null only when\n"
        "--limit stopped it early); an event stream prints one event per line; a command\n"
        "whose API answer has no body (a delete, a revoke) prints an object saying what it\n"
        "did.\n"
        "\n"
        "Contexts: each login is saved as a context (API URL, tenant, user, token) in\n"
        "$PADDOCK_CONFIG_DIR/contexts/NAME.json (default ~/.config/paddock). `paddock login\n"
        "--context NAME` adds one, `paddock context use NAME` switches, --context NAME or\n"
        "$PADDOCK_CONTEXT picks one for a command. $PADDOCK_TOKEN, when set, is used instead\n"
        "of the context's token (for service accounts and CI).\n"
        "\n"
        "The local stack's URL is PADDOCK_API_URL in $PADDOCK_STATE_DIR/endpoints.env\n"
        "(default ./.paddock/endpoints.env).\n"
        "\n"
        "environment: PADDOCK_API_URL, PADDOCK_CONTEXT, PADDOCK_CONFIG_DIR, PADDOCK_TOKEN,\n"
        "PADDOCK_STATE_DIR, PADDOCK_TENANT, PADDOCK_USER, PADDOCK_PASSWORD\n"
        "\n"
        "exit status: 0 ok, 1 the API said no (printed as `error: <detail> (<code>)`) or a\n"
        "watched run did not succeed, 2 the command line was wrong. `run wait` exits with\n"
        "the run's outcome: 0 succeeded, the agent's exit code for a failed run (1 if it\n"
        "has none), 124 timed_out, 125 limit_exceeded, 126 rejected, 130 cancelled, and\n"
        "75 when its --timeout passed first\n"
        "\n"
        "`paddock help COMMAND [SUBCOMMAND]` (the same as `paddock COMMAND [SUBCOMMAND]\n"
        "--help`) describes one command.\n";

static const char global_hint[] = "global options: --json, --context NAME, --api URL (see `paddock --help`)\n";

const struct cli_command *cli_command_find(const char *name) {
        for (size_t i = 0; cli_commands[i]; i++) {
                const struct cli_command *c = cli_commands[i];
                if (strcmp(c->name, name) == 0 || (c->alias && strcmp(c->alias, name) == 0))
                        return c;
        }
        return NULL;
}

const struct cli_command *cli_subcommand_find(const struct cli_command *group, const char *name) {
        for (const struct cli_command *c = group->subs; c && c->name; c++)
                if (strcmp(c->name, name) == 0 || (c->alias && strcmp(c->alias, name) == 0))
                        return c;
        return NULL;
}

/* Optimal string alignment distance (edits, with adjacent swaps as one). */
static size_t distance(const char *a, const char *b) {
        size_t n = strlen(a), m = strlen(b);
        if (n > 64 || m > 64)
                return (size_t)-1;
        size_t d[65][65];
        for (size_t i = 0; i <= n; i++)
                d[i][0] = i;
        for (size_t j = 0; j <= m; j++)
                d[0][j] = j;
        for (size_t i = 1; i <= n; i++)
                for (size_t j = 1; j <= m; j++) {
                        size_t cost = a[i - 1] != b[j - 1];
                        size_t v = d[i - 1][j] + 1;
                        if (d[i][j - 1] + 1 < v)
                                v = d[i][j - 1] + 1;
                        if (d[i - 1][j - 1] + cost < v)
                                v = d[i - 1][j - 1] + cost;
                        if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
                                v = d[i - 2][j - 2] + 1;
                        d[i][j] = v;
                }
        return d[n][m];
}

static void consider(const char *name, const char *typo, const char **best, size_t *best_d) {
        if (!name)
                return;
        size_t d = distance(typo, name);
        /* a prefix of at least three letters is as good as one typo */
        if (strlen(typo) >= 3 && strncmp(name, typo, strlen(typo)) == 0 && d > 1)
                d = 1;
        if (d < *best_d) {
                *best = name;
                *best_d = d;
        }
}

const char *cli_suggest(const struct cli_command *group, const char *typo) {
        const char *best = NULL;
        size_t best_d = (size_t)-1;
        if (group) {
                for (const struct cli_command *c = group->subs; c && c->name; c++) {
                        consider(c->name, typo, &best, &best_d);
                        consider(c->alias, typo, &best, &best_d);
                }
        } else {
                for (size_t i = 0; cli_commands[i]; i++) {
                        consider(cli_commands[i]->name, typo, &best, &best_d);
                        consider(cli_commands[i]->alias, typo, &best, &best_d);
                }
        }
        size_t len = strlen(typo);
        /* close enough: at most two edits, and fewer than the word has letters */
        if (!best || best_d > 2 || best_d >= len)
                return NULL;
        return best;
}

static bool has_options(const struct cli_command *cmd) {
        return cmd->options && cmd->options[0].name;
}

void cli_usage_print(FILE *f, const struct cli_command *group, const struct cli_command *cmd) {
        fprintf(f, "usage: paddock");
        if (group)
                fprintf(f, " %s", group->name);
        fprintf(f, " %s", cmd->name);
        if (cmd->subs)
                fputs(" COMMAND [ARGS...]", f);
        else if (has_options(cmd))
                fputs(" [OPTIONS]", f);
        if (cmd->args && *cmd->args)
                fprintf(f, " %s", cmd->args);
        fputc('\n', f);
}

/* "  -f, --file FILE" / "      --state STATE" */
static int option_label(char *buf, size_t size, const struct cli_option *o) {
        char shortpart[8] = "    ";
        if (o->key)
                snprintf(shortpart, sizeof shortpart, "-%c, ", o->key);
        return snprintf(buf, size, "  %s--%s%s%s", shortpart, o->name, o->arg ? " " : "", o->arg ? o->arg : "");
}

/* Prints rows "LABEL  text" with the texts aligned; long labels get their
 * text on the next line. */
#define LABEL_MAX 30
static void print_row(FILE *f, const char *label, size_t width, const char *text) {
        size_t n = strlen(label);
        fputs(label, f);
        if (n + 2 > width) {
                fputc('\n', f);
                n = 0;
        }
        for (; n < width; n++)
                fputc(' ', f);
        fprintf(f, "%s\n", text ? text : "");
}

static void print_options(FILE *f, const char *heading, const struct cli_option *opts, bool with_help) {
        char label[128];
        size_t width = 0;
        for (const struct cli_option *o = opts; o && o->name; o++) {
                size_t n = (size_t)option_label(label, sizeof label, o) + 2;
                if (n > width && n <= LABEL_MAX)
                        width = n;
        }
        if (with_help && width < 20)
                width = 20;
        fprintf(f, "%s:\n", heading);
        for (const struct cli_option *o = opts; o && o->name; o++) {
                option_label(label, sizeof label, o);
                print_row(f, label, width, o->help);
        }
        if (with_help)
                print_row(f, "  -h, --help", width, "show this help");
}

static void print_text(FILE *f, const char *text) {
        if (!text || !*text)
                return;
        fputc('\n', f);
        fputs(text, f);
        if (text[strlen(text) - 1] != '\n')
                fputc('\n', f);
}

static void print_top(FILE *f) {
        fputs("usage: paddock [OPTIONS] COMMAND [ARGS...]\n\n", f);
        fputs(top_intro, f);
        size_t width = 0;
        for (size_t i = 0; cli_commands[i]; i++) {
                size_t n = strlen(cli_commands[i]->name) + 4;
                if (n > width)
                        width = n;
        }
        for (size_t i = 0; cli_commands[i]; i++) {
                const struct cli_command *c = cli_commands[i];
                if (c->section)
                        fprintf(f, "\n%s:\n", c->section);
                char label[64];
                snprintf(label, sizeof label, "  %s", c->name);
                print_row(f, label, width, c->summary);
        }
        fputc('\n', f);
        print_options(f, "options (before or after the command)", cli_global_options, false);
        fputc('\n', f);
        fputs(top_footer, f);
}

static void print_group(FILE *f, const struct cli_command *group) {
        cli_usage_print(f, NULL, group);
        print_text(f, group->summary);
        print_text(f, group->description);
        size_t width = 0;
        char label[128];
        for (const struct cli_command *c = group->subs; c->name; c++) {
                size_t n = (size_t)snprintf(label, sizeof label, "  %s%s%s", c->name, c->args ? " " : "",
                                            c->args ? c->args : "") + 2;
                if (n > width && n <= LABEL_MAX)
                        width = n;
        }
        fputs("\ncommands:\n", f);
        for (const struct cli_command *c = group->subs; c->name; c++) {
                snprintf(label, sizeof label, "  %s%s%s", c->name, c->args ? " " : "", c->args ? c->args : "");
                print_row(f, label, width, c->summary);
        }
        fprintf(f, "\n`paddock %s COMMAND --help` describes one of them.\n", group->name);
        if (group->alias)
                fprintf(f, "alias: paddock %s\n", group->alias);
        fputs(global_hint, f);
}

static void print_command(FILE *f, const struct cli_command *group, const struct cli_command *cmd) {
        cli_usage_print(f, group, cmd);
        print_text(f, cmd->summary);
        print_text(f, cmd->description);
        fputc('\n', f);
        print_options(f, "options", cmd->options, true);
        fputc('\n', f);
        if (cmd->alias)
                fprintf(f, "alias: paddock %s%s%s\n", group ? group->name : "", group ? " " : "", cmd->alias);
        fputs(global_hint, f);
}

void cli_help_print(FILE *f, const struct cli_command *group, const struct cli_command *cmd) {
        if (!group && !cmd)
                print_top(f);
        else if (!cmd)
                print_group(f, group);
        else if (cmd->subs)
                print_group(f, cmd);
        else
                print_command(f, group, cmd);
}
