/* paddock completion bash|zsh: shell completion scripts generated from the
 * command table, so every command, subcommand and option the CLI has is
 * completed, and nothing it does not have. Context names (--context, and
 * the CONTEXT arguments) are asked of the same binary at completion time. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* What a placeholder (an option's value or the first positional argument)
 * completes to: files, the saved contexts, a fixed list, or the commands. */
enum fill { FILL_NONE, FILL_FILES, FILL_CONTEXTS, FILL_WORDS, FILL_COMMANDS };

static enum fill fill_of(const char *placeholder, const char **words) {
        *words = NULL;
        if (!placeholder)
                return FILL_NONE;
        if (strcmp(placeholder, "FILE") == 0 || strcmp(placeholder, "DIR") == 0)
                return FILL_FILES;
        if (strcmp(placeholder, "CONTEXT") == 0)
                return FILL_CONTEXTS;
        if (strcmp(placeholder, "SHELL") == 0) {
                *words = "bash zsh";
                return FILL_WORDS;
        }
        if (strcmp(placeholder, "COMMAND") == 0)
                return FILL_COMMANDS;
        return FILL_NONE;
}

/* The first positional placeholder of a synopsis ("[CONTEXT]" -> CONTEXT). */
static void first_positional(const char *args, char *buf, size_t size) {
        buf[0] = '\0';
        if (!args)
                return;
        while (*args == '[')
                args++;
        size_t n = strcspn(args, " ]");
        if (n >= size)
                n = size - 1;
        memcpy(buf, args, n);
        buf[n] = '\0';
}

static void print_names(FILE *f, const struct cli_command *group) {
        bool first = true;
        if (group) {
                for (const struct cli_command *c = group->subs; c->name; c++, first = false)
                        fprintf(f, "%s%s", first ? "" : " ", c->name);
        } else {
                for (size_t i = 0; cli_commands[i]; i++, first = false)
                        fprintf(f, "%s%s", first ? "" : " ", cli_commands[i]->name);
        }
}

static void print_option_words(FILE *f, const struct cli_command *cmd) {
        for (const struct cli_option *o = cmd->options; o && o->name; o++)
                fprintf(f, "--%s ", o->name);
        fputs("--json --context --api --help", f);
}

/* `case $w in NAME|ALIAS)` */
static void print_case_label(FILE *f, const struct cli_command *c) {
        fprintf(f, "%s%s%s)", c->name, c->alias ? "|" : "", c->alias ? c->alias : "");
}

/* What the two shells spell differently; the walk over the command table
 * (print_script, print_leaf, print_fill) is one for both. */
struct shell {
        const char *head;         /* up to the loop's `w=` word */
        const char *tail;         /* after the `case $cmd` */
        const char *empty;        /* the empty word as a case label */
        const char *offer_open;   /* offer a list of words ... */
        const char *offer_close;  /* ... ending the line */
        const char *reply_files;  /* complete to files */
        const char *reply_contexts;
        const char *reply_open;   /* complete to a list of words ... */
        const char *reply_close;
        /* offer the commands of group (NULL: the top-level ones), a line or more at indent */
        void (*offer_commands)(FILE *f, const struct cli_command *group, const char *indent);
};

/* One `case` branch body: complete to what fill names, then return. */
static void print_fill(FILE *f, const struct shell *sh, enum fill fill, const char *words, const char *indent) {
        fputs(indent, f);
        switch (fill) {
        case FILL_FILES:
                fprintf(f, "%s return ;;\n", sh->reply_files);
                break;
        case FILL_CONTEXTS:
                fprintf(f, "%s return ;;\n", sh->reply_contexts);
                break;
        case FILL_WORDS:
                fprintf(f, "%s%s%s return ;;\n", sh->reply_open, words, sh->reply_close);
                break;
        case FILL_COMMANDS:
                fputs(sh->reply_open, f);
                print_names(f, NULL);
                fprintf(f, "%s return ;;\n", sh->reply_close);
                break;
        case FILL_NONE:
                fputs("return ;;\n", f);
                break;
        }
}

static void print_leaf(FILE *f, const struct shell *sh, const struct cli_command *cmd, const char *indent) {
        const char *words;
        bool any = false;
        for (const struct cli_option *o = cmd->options; o && o->name; o++)
                any = any || o->arg;
        char in[64];
        snprintf(in, sizeof in, "%s        ", indent);
        if (any) {
                fprintf(f, "%scase $prev in\n", indent);
                for (const struct cli_option *o = cmd->options; o && o->name; o++) {
                        if (!o->arg)
                                continue;
                        if (o->key)
                                fprintf(f, "%s    --%s|-%c)\n", indent, o->name, o->key);
                        else
                                fprintf(f, "%s    --%s)\n", indent, o->name);
                        /* fill_of sets words: call it before words is read (argument
                         * evaluation order is unspecified) */
                        enum fill of = fill_of(o->arg, &words);
                        print_fill(f, sh, of, words, in);
                }
                fprintf(f, "%sesac\n", indent);
        }
        char pos[32];
        first_positional(cmd->args, pos, sizeof pos);
        enum fill fill = fill_of(pos, &words);
        if (fill != FILL_NONE) {
                fprintf(f, "%sif [[ $cur != -* ]]; then\n", indent);
                fprintf(f, "%s    case 1 in 1)\n", indent);
                print_fill(f, sh, fill, words, in);
                fprintf(f, "%s    esac\n%sfi\n", indent, indent);
        }
        fprintf(f, "%s%s", indent, sh->offer_open);
        print_option_words(f, cmd);
        fputs(sh->offer_close, f);
}

static void print_script(FILE *f, const struct shell *sh) {
        fputs(sh->head, f);
        fputs("        case $w in\n"
              "            --api|--context) ((i++)) ;;\n"
              "            -*) ;;\n"
              "            *) if [[ -z $cmd ]]; then cmd=$w; elif [[ -z $sub ]]; then sub=$w; fi ;;\n"
              "        esac\n"
              "    done\n"
              "    case $prev in\n"
              "        --context)\n",
              f);
        print_fill(f, sh, FILL_CONTEXTS, NULL, "            ");
        fprintf(f,
                "        --api) return ;;\n"
                "    esac\n"
                "    case $cmd in\n"
                "        %s)\n"
                "            if [[ $cur == -* ]]; then\n"
                "                %s--api --context --json --help --version%s"
                "            else\n",
                sh->empty, sh->offer_open, sh->offer_close);
        sh->offer_commands(f, NULL, "                ");
        fputs("            fi ;;\n", f);
        for (size_t i = 0; cli_commands[i]; i++) {
                const struct cli_command *c = cli_commands[i];
                fputs("        ", f);
                print_case_label(f, c);
                fputc('\n', f);
                if (!c->subs) {
                        print_leaf(f, sh, c, "            ");
                        fputs("            ;;\n", f);
                        continue;
                }
                fprintf(f, "            case $sub in\n"
                           "                %s)\n",
                        sh->empty);
                sh->offer_commands(f, c, "                    ");
                fputs("                    ;;\n", f);
                for (const struct cli_command *s = c->subs; s->name; s++) {
                        fputs("                ", f);
                        print_case_label(f, s);
                        fputc('\n', f);
                        print_leaf(f, sh, s, "                    ");
                        fputs("                    ;;\n", f);
                }
                fputs("            esac ;;\n", f);
        }
        fputs("    esac\n", f);
        fputs(sh->tail, f);
}

/* ---------------------------------------------------------------- bash */

static void bash_offer_commands(FILE *f, const struct cli_command *group, const char *indent) {
        fprintf(f, "%swords=\"", indent);
        print_names(f, group);
        fputs("\"\n", f);
}

static const struct shell shell_bash = {
        .head = "# bash completion for paddock, generated by `paddock completion bash` from its\n"
                "# command table. Load it with: source <(paddock completion bash)\n"
                "_paddock() {\n"
                "    local cur=${COMP_WORDS[COMP_CWORD]} prev=\"\" cmd=\"\" sub=\"\" words=\"\" i w\n"
                "    ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD-1]}\n"
                "    COMPREPLY=()\n"
                "    # the command and subcommand words, past global options and their values\n"
                "    for ((i = 1; i < COMP_CWORD; i++)); do\n"
                "        w=${COMP_WORDS[i]}\n",
        .tail = "    COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n"
                "}\n"
                "complete -F _paddock paddock\n",
        .empty = "\"\"",
        .offer_open = "words=\"",
        .offer_close = "\"\n",
        .reply_files = "COMPREPLY=($(compgen -f -- \"$cur\"));",
        .reply_contexts = "COMPREPLY=($(compgen -W \"$(\"${COMP_WORDS[0]}\" context list --quiet 2>/dev/null)\" "
                          "-- \"$cur\"));",
        .reply_open = "COMPREPLY=($(compgen -W \"",
        .reply_close = "\" -- \"$cur\"));",
        .offer_commands = bash_offer_commands,
};

/* ----------------------------------------------------------------- zsh */

/* A zsh single-quoted _describe entry "name:summary" (colons escaped). */
static void zsh_entry(FILE *f, const char *name, const char *summary) {
        fprintf(f, " '%s:", name);
        for (const char *p = summary ? summary : ""; *p; p++) {
                if (*p == '\'')
                        fputs("'\\''", f);
                else if (*p == ':')
                        fputs("\\:", f);
                else
                        fputc(*p, f);
        }
        fputc('\'', f);
}

static void zsh_offer_commands(FILE *f, const struct cli_command *group, const char *indent) {
        fprintf(f, "%scands=(", indent);
        if (group) {
                for (const struct cli_command *s = group->subs; s->name; s++)
                        zsh_entry(f, s->name, s->summary);
        } else {
                for (size_t i = 0; cli_commands[i]; i++)
                        zsh_entry(f, cli_commands[i]->name, cli_commands[i]->summary);
        }
        fprintf(f, " )\n%s_describe -t commands '%s command' cands\n", indent, group ? group->name : "paddock");
}

static const struct shell shell_zsh = {
        .head = "#compdef paddock\n"
                "# zsh completion for paddock, generated by `paddock completion zsh` from its\n"
                "# command table. Load it with: source <(paddock completion zsh) (after compinit),\n"
                "# or save it as _paddock in a directory of $fpath.\n"
                "_paddock() {\n"
                "    local cur=${words[CURRENT]} prev=${words[CURRENT-1]} cmd=\"\" sub=\"\" i w\n"
                "    local -a cands\n"
                "    for ((i = 2; i < CURRENT; i++)); do\n"
                "        w=${words[i]}\n",
        .tail = "}\n"
                "if [[ ${zsh_eval_context[-1]} == loadautofunc ]]; then\n"
                "    _paddock \"$@\"\n"
                "elif (( $+functions[compdef] )); then\n"
                "    compdef _paddock paddock\n"
                "fi\n",
        .empty = "''",
        .offer_open = "compadd -- ",
        .offer_close = "\n",
        .reply_files = "_files;",
        .reply_contexts = "compadd -- ${(f)\"$(${words[1]} context list --quiet 2>/dev/null)\"};",
        .reply_open = "compadd -- ",
        .reply_close = ";",
        .offer_commands = zsh_offer_commands,
};

static int completion_main(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        if (strcmp(pos[0], "bash") == 0) {
                print_script(stdout, &shell_bash);
        } else if (strcmp(pos[0], "zsh") == 0) {
                print_script(stdout, &shell_zsh);
        } else {
                cli_error("completion: unknown shell \"%s\" (bash or zsh)", pos[0]);
                return CLI_EXIT_USAGE;
        }
        return CLI_EXIT_OK;
}

const struct cli_command cli_cmd_completion = {
        .name = "completion",
        .section = "Shell",
        .args = "SHELL",
        .summary = "print a completion script for bash or zsh",
        .description = "bash:  source <(paddock completion bash)   (e.g. in ~/.bashrc)\n"
                       "zsh:   source <(paddock completion zsh)    (after compinit, e.g. in ~/.zshrc),\n"
                       "       or save it as _paddock in a directory of $fpath\n"
                       "The script completes commands, subcommands, options, files and context names.\n",
        .fn = completion_main,
};
