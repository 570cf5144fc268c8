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

/* ---------------------------------------------------------------- bash */

static void bash_fill(FILE *f, enum fill fill, const char *words, const char *indent) {
        switch (fill) {
        case FILL_FILES:
                fprintf(f, "%sCOMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n", indent);
                break;
        case FILL_CONTEXTS:
                fprintf(f, "%sCOMPREPLY=($(compgen -W \"$(\"${COMP_WORDS[0]}\" context list --quiet 2>/dev/null)\" "
                           "-- \"$cur\")); return ;;\n", indent);
                break;
        case FILL_WORDS:
                fprintf(f, "%sCOMPREPLY=($(compgen -W \"%s\" -- \"$cur\")); return ;;\n", indent, words);
                break;
        case FILL_COMMANDS:
                fprintf(f, "%sCOMPREPLY=($(compgen -W \"", indent);
                print_names(f, NULL);
                fputs("\" -- \"$cur\")); return ;;\n", f);
                break;
        case FILL_NONE:
                fprintf(f, "%sreturn ;;\n", indent);
                break;
        }
}

static void bash_leaf(FILE *f, const struct cli_command *cmd, const char *indent) {
        const char *words;
        bool any = false;
        for (const struct cli_option *o = cmd->options; o && o->name; o++)
                any = any || o->arg;
        if (any) {
                fprintf(f, "%scase $prev in\n", indent);
                for (const struct cli_option *o = cmd->options; o && o->name; o++) {
                        if (!o->arg)
                                continue;
                        if (o->key)
                                fprintf(f, "%s    --%s|-%c)\n", indent, o->name, o->key);
                        else
                                fprintf(f, "%s    --%s)\n", indent, o->name);
                        char in[64];
                        snprintf(in, sizeof in, "%s        ", indent);
                        bash_fill(f, fill_of(o->arg, &words), words, in);
                }
                fprintf(f, "%sesac\n", indent);
        }
        char pos[32];
        first_positional(cmd->args, pos, sizeof pos);
        enum fill fill = fill_of(pos, &words);
        if (fill != FILL_NONE) {
                fprintf(f, "%sif [[ $cur != -* ]]; then\n", indent);
                fprintf(f, "%s    case 1 in 1)\n", indent);
                char in[64];
                snprintf(in, sizeof in, "%s        ", indent);
                bash_fill(f, fill, words, in);
                fprintf(f, "%s    esac\n%sfi\n", indent, indent);
        }
        fprintf(f, "%swords=\"", indent);
        print_option_words(f, cmd);
        fputs("\"\n", f);
}

static void print_bash(FILE *f) {
        fputs("# bash completion for paddock, generated by `paddock completion bash` from its\n"
              "# command table. Load it with: source <(paddock completion bash)\n"
              "_paddock() {\n"
              "    local cur=${COMP_WORDS[COMP_CWORD]} prev=\"\" cmd=\"\" sub=\"\" words=\"\" i w\n"
              "    ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD-1]}\n"
              "    COMPREPLY=()\n"
              "    # the command and subcommand words, past global options and their values\n"
              "    for ((i = 1; i < COMP_CWORD; i++)); do\n"
              "        w=${COMP_WORDS[i]}\n"
              "        case $w in\n"
              "            --api|--context) ((i++)) ;;\n"
              "            -*) ;;\n"
              "            *) if [[ -z $cmd ]]; then cmd=$w; elif [[ -z $sub ]]; then sub=$w; fi ;;\n"
              "        esac\n"
              "    done\n"
              "    case $prev in\n"
              "        --context)\n",
              f);
        bash_fill(f, FILL_CONTEXTS, NULL, "            ");
        fputs("        --api) return ;;\n"
              "    esac\n"
              "    case $cmd in\n"
              "        \"\")\n"
              "            if [[ $cur == -* ]]; then\n"
              "                words=\"--api --context --json --help --version\"\n"
              "            else\n"
              "                words=\"",
              f);
        print_names(f, NULL);
        fputs("\"\n"
              "            fi ;;\n",
              f);
        for (size_t i = 0; cli_commands[i]; i++) {
                const struct cli_command *c = cli_commands[i];
                fputs("        ", f);
                print_case_label(f, c);
                fputc('\n', f);
                if (!c->subs) {
                        bash_leaf(f, c, "            ");
                        fputs("            ;;\n", f);
                        continue;
                }
                fputs("            case $sub in\n"
                      "                \"\") words=\"",
                      f);
                print_names(f, c);
                fputs("\" ;;\n", f);
                for (const struct cli_command *s = c->subs; s->name; s++) {
                        fputs("                ", f);
                        print_case_label(f, s);
                        fputc('\n', f);
                        bash_leaf(f, s, "                    ");
                        fputs("                    ;;\n", f);
                }
                fputs("            esac ;;\n", f);
        }
        fputs("    esac\n"
              "    COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n"
              "}\n"
              "complete -F _paddock paddock\n",
              f);
}

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

static void zsh_fill(FILE *f, enum fill fill, const char *words, const char *indent) {
        switch (fill) {
        case FILL_FILES:
                fprintf(f, "%s_files; return ;;\n", indent);
                break;
        case FILL_CONTEXTS:
                fprintf(f, "%scompadd -- ${(f)\"$(${words[1]} context list --quiet 2>/dev/null)\"}; return ;;\n",
                        indent);
                break;
        case FILL_WORDS:
                fprintf(f, "%scompadd -- %s; return ;;\n", indent, words);
                break;
        case FILL_COMMANDS:
                fprintf(f, "%scompadd -- ", indent);
                print_names(f, NULL);
                fputs("; return ;;\n", f);
                break;
        case FILL_NONE:
                fprintf(f, "%sreturn ;;\n", indent);
                break;
        }
}

static void zsh_leaf(FILE *f, const struct cli_command *cmd, const char *indent) {
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
                        zsh_fill(f, fill_of(o->arg, &words), words, in);
                }
                fprintf(f, "%sesac\n", indent);
        }
        char pos[32];
        first_positional(cmd->args, pos, sizeof pos);
        enum fill fill = fill_of(pos, &words);
        if (fill != FILL_NONE) {
                fprintf(f, "%sif [[ $cur != -* ]]; then\n", indent);
                fprintf(f, "%s    case 1 in 1)\n", indent);
                zsh_fill(f, fill, words, in);
                fprintf(f, "%s    esac\n%sfi\n", indent, indent);
        }
        fprintf(f, "%scompadd -- ", indent);
        print_option_words(f, cmd);
        fputc('\n', f);
}

static void print_zsh(FILE *f) {
        fputs("#compdef paddock\n"
              "# zsh completion for paddock, generated by `paddock completion zsh` from its\n"
              "# command table. Load it with: source <(paddock completion zsh) (after compinit),\n"
              "# or save it as _paddock in a directory of $fpath.\n"
              "_paddock() {\n"
              "    local cur=${words[CURRENT]} prev=${words[CURRENT-1]} cmd=\"\" sub=\"\" i w\n"
              "    local -a cands\n"
              "    for ((i = 2; i < CURRENT; i++)); do\n"
              "        w=${words[i]}\n"
              "        case $w in\n"
              "            --api|--context) ((i++)) ;;\n"
              "            -*) ;;\n"
              "            *) if [[ -z $cmd ]]; then cmd=$w; elif [[ -z $sub ]]; then sub=$w; fi ;;\n"
              "        esac\n"
              "    done\n"
              "    case $prev in\n"
              "        --context)\n",
              f);
        zsh_fill(f, FILL_CONTEXTS, NULL, "            ");
        fputs("        --api) return ;;\n"
              "    esac\n"
              "    case $cmd in\n"
              "        '')\n"
              "            if [[ $cur == -* ]]; then\n"
              "                compadd -- --api --context --json --help --version\n"
              "            else\n"
              "                cands=(",
              f);
        for (size_t i = 0; cli_commands[i]; i++)
                zsh_entry(f, cli_commands[i]->name, cli_commands[i]->summary);
        fputs(" )\n"
              "                _describe -t commands 'paddock command' cands\n"
              "            fi ;;\n",
              f);
        for (size_t i = 0; cli_commands[i]; i++) {
                const struct cli_command *c = cli_commands[i];
                fputs("        ", f);
                print_case_label(f, c);
                fputc('\n', f);
                if (!c->subs) {
                        zsh_leaf(f, c, "            ");
                        fputs("            ;;\n", f);
                        continue;
                }
                fputs("            case $sub in\n"
                      "                '')\n"
                      "                    cands=(",
                      f);
                for (const struct cli_command *s = c->subs; s->name; s++)
                        zsh_entry(f, s->name, s->summary);
                fprintf(f, " )\n"
                           "                    _describe -t commands '%s command' cands ;;\n",
                        c->name);
                for (const struct cli_command *s = c->subs; s->name; s++) {
                        fputs("                ", f);
                        print_case_label(f, s);
                        fputc('\n', f);
                        zsh_leaf(f, s, "                    ");
                        fputs("                    ;;\n", f);
                }
                fputs("            esac ;;\n", f);
        }
        fputs("    esac\n"
              "}\n"
              "if [[ ${zsh_eval_context[-1]} == loadautofunc ]]; then\n"
              "    _paddock \"$@\"\n"
              "elif (( $+functions[compdef] )); then\n"
              "    compdef _paddock paddock\n"
              "fi\n",
              f);
}

static int completion_main(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        if (strcmp(pos[0], "bash") == 0) {
                print_bash(stdout);
        } else if (strcmp(pos[0], "zsh") == 0) {
                print_zsh(stdout);
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
