/* Launching the agent CLIs: HOME / CODEX_HOME, argv and env (agent_cli.h). */
#include "agent_cli.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/macro.h"

#define SKILLS_PREFIX ".paddock/skills/" /* where the api lays out a definition's skills (api/policy.c) */

static const char *provider_of(enum agent_cli_kind kind) {
        return kind == AGENT_CLI_CODEX ? "openai" : "anthropic";
}

/* agent.model, else the first model id a route gives the agent's provider */
static const char *pick_model(enum agent_cli_kind kind, const Paddock__V1__SandboxSnapshot *snap) {
        if (snap->agent->model && snap->agent->model[0])
                return snap->agent->model;
        for (size_t i = 0; i < snap->n_model_routes; i++) {
                const Paddock__V1__ModelRoute *m = snap->model_routes[i];
                if (m->provider && !strcmp(m->provider, provider_of(kind)) && m->n_models > 0 && m->models[0][0])
                        return m->models[0];
        }
        return NULL;
}

/* Creates path (a file under the home, written by us as root) owned by the
 * sandbox user, so the CLI may rewrite its own settings. */
static int write_owned(const char *path, const void *data, size_t len, mode_t mode, uid_t uid, gid_t gid,
                       struct err_detail *reterr) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return err_set(reterr, -errno, "agent", "cannot create %s: %m", path);
        const char *p = data;
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int r = -errno;
                        close(fd);
                        return err_set(reterr, r, "agent", "cannot write %s: %s", path, strerror(-r));
                }
                p += n;
                len -= (size_t)n;
        }
        if (fchown(fd, uid, gid) < 0 || close(fd) < 0)
                return err_set(reterr, -errno, "agent", "cannot finish %s: %m", path);
        return 0;
}

/* mkdir -p below base (base exists), each new dir owned by uid:gid */
static int mkdirs_owned(const char *base, const char *rel, uid_t uid, gid_t gid, struct err_detail *reterr) {
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", base, rel) >= (int)sizeof path)
                return err_set(reterr, -ENAMETOOLONG, "agent", "path too long: %s", rel);
        for (char *p = path + strlen(base) + 1;; p++) {
                if (*p == '/' || !*p) {
                        char c = *p;
                        *p = 0;
                        if (mkdir(path, 0700) == 0) {
                                if (chown(path, uid, gid) < 0)
                                        return err_set(reterr, -errno, "agent", "cannot chown %s: %m", path);
                        } else if (errno != EEXIST)
                                return err_set(reterr, -errno, "agent", "cannot create %s: %m", path);
                        *p = c;
                        if (!c)
                                break;
                }
        }
        return 0;
}

/* A TOML basic string: model ids come from the catalog, quoted anyway. */
static void toml_string(FILE *f, const char *s) {
        fputc('"', f);
        for (; *s; s++) {
                if (*s == '"' || *s == '\\')
                        fprintf(f, "\\%c", *s);
                else if ((unsigned char)*s < 0x20)
                        fprintf(f, "\\u%04x", (unsigned char)*s);
                else
                        fputc(*s, f);
        }
        fputc('"', f);
}

/* CODEX_HOME/config.toml (AGENT-CLIS notes): the gateway as the only model
 * provider, no retries (a dead endpoint ends the run instead of a retry loop),
 * no analytics, plugins or unbounded reconnects (they reach github.com and
 * chatgpt.com). Codex's own sandbox is off: it needs user namespaces and
 * cannot nest in ours, which is the boundary (docs/CONTRACTS.md). */
/* The url a CLI is given for an http MCP server. An https origin that has a
 * header secret of the run (a connector's secret, docs/CONTRACTS.md "MCP
 * connectors") is asked for in plain http: the egress proxy then opens the
 * TLS itself, verifies it and adds the header (CONTRACTS "Egress proxy and
 * run secrets"); through a CONNECT tunnel it could add nothing. Other urls
 * (an IPv6 literal too) are given as they are. */
static const char *mcp_url(const Paddock__V1__SandboxSnapshot *snap, const char *url, char *out, size_t size) {
        static const char https[] = "https://";
        if (!url || strncasecmp(url, https, sizeof https - 1))
                return url ? url : "";
        const char *auth = url + sizeof https - 1;
        size_t alen = strcspn(auth, "/?#");
        const char *colon = memchr(auth, ':', alen);
        size_t hlen = colon ? (size_t)(colon - auth) : alen;
        unsigned long port = colon ? strtoul(colon + 1, NULL, 10) : 443;
        char host[256];
        if (auth[0] == '[' || hlen == 0 || hlen >= sizeof host)
                return url;
        memcpy(host, auth, hlen);
        host[hlen] = '\0';
        for (size_t i = 0; i < snap->n_secrets; i++) {
                const Paddock__V1__SecretRef *r = snap->secrets[i];
                if (r->header_host && !strcasecmp(r->header_host, host) &&
                    (r->header_port ? r->header_port : 443) == port && strlen(url) < size) {
                        snprintf(out, size, "http://%s", auth);
                        return out;
                }
        }
        return url;
}

static char *codex_config(const char *model, const char *effort, const Paddock__V1__SandboxSnapshot *snap) {
        char *s = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&s, &len);
        if (!f)
                return NULL;
        fputs("# generated by the Paddock runner-agent for this run\nmodel = ", f);
        toml_string(f, model);
        if (effort) {
                fputs("\nmodel_reasoning_effort = ", f);
                toml_string(f, effort);
        }
        fputs("\nmodel_provider = \"paddock\"\n"
              "approval_policy = \"never\"\n"
              "sandbox_mode = \"danger-full-access\"\n"
              "check_for_update_on_startup = false\n"
              "\n[model_providers.paddock]\n"
              "name = \"Paddock model gateway\"\n"
              "base_url = \"" AGENT_CLI_GATEWAY_URL "/v1\"\n"
              "wire_api = \"responses\"\n"
              "env_key = \"PADDOCK_GATEWAY_KEY\"\n"
              "request_max_retries = 0\n"
              "stream_max_retries = 0\n"
              "\n[analytics]\nenabled = false\n"
              "\n[features]\nplugins = false\nunbounded_connection_retries = false\n",
              f);
        /* the run's MCP servers, and only those (docs/CONTRACTS.md "MCP
         * connectors"): the file is read-only, so the agent adds none */
        for (size_t i = 0; i < snap->n_mcp_servers; i++) {
                const Paddock__V1__McpServer *m = snap->mcp_servers[i];
                fprintf(f, "\n[mcp_servers.%s]\n", m->name); /* [a-z0-9_-]: a bare TOML key (api/catalog.c) */
                if (m->transport && !strcmp(m->transport, "http")) {
                        char buf[2048];
                        fputs("url = ", f);
                        toml_string(f, mcp_url(snap, m->url, buf, sizeof buf));
                        fputc('\n', f);
                        continue;
                }
                if (m->n_command == 0)
                        continue;
                fputs("command = ", f);
                toml_string(f, m->command[0]);
                fputs("\nargs = [", f);
                for (size_t j = 1; j < m->n_command; j++) {
                        if (j > 1)
                                fputs(", ", f);
                        toml_string(f, m->command[j]);
                }
                fputs("]\n", f);
        }
        if (fclose(f) != 0) {
                free(s);
                return NULL;
        }
        return s;
}

/* The definition's skills (.paddock/skills/<name>/... in the managed files)
 * where each CLI loads them: ~/.claude/skills/<name>/ and
 * $CODEX_HOME/skills/<name>/. */
static int write_skills(struct agent_cli_launch *l, const Paddock__V1__SandboxSnapshot *snap, uid_t uid, gid_t gid,
                        struct err_detail *reterr) {
        const char *home = l->home_dir;
        static const char *const roots[] = {".claude/skills", ".codex/skills"};
        for (size_t i = 0; i < snap->n_files; i++) {
                const Paddock__V1__ManagedFile *mf = snap->files[i];
                if (!mf->path || strncmp(mf->path, SKILLS_PREFIX, strlen(SKILLS_PREFIX)) != 0)
                        continue;
                const char *rel = mf->path + strlen(SKILLS_PREFIX); /* <name>/SKILL.md ...; the api checked it */
                if (strstr(rel, "..") || rel[0] == '/')
                        continue;
                /* the run records which skills it was given (running's agent) */
                const char *sep = strchr(rel, '/');
                if (sep && !strcmp(sep, "/SKILL.md")) {
                        json_t *nm = json_stringn(rel, (size_t)(sep - rel));
                        if (!nm || json_array_append_new(l->skills, nm) < 0)
                                return err_set(reterr, -ENOMEM, "agent", "out of memory");
                }
                for (size_t k = 0; k < ELEMENTSOF(roots); k++) {
                        char dir[4096], path[4096];
                        snprintf(dir, sizeof dir, "%s/%s", roots[k], rel);
                        char *slash = strrchr(dir, '/');
                        *slash = 0;
                        int r = mkdirs_owned(home, dir, uid, gid, reterr);
                        if (r < 0)
                                return r;
                        snprintf(path, sizeof path, "%s/%s/%s", home, roots[k], rel);
                        r = write_owned(path, mf->content.data, mf->content.len, 0644, uid, gid, reterr);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

/* A root-owned read-only file of the hook config (cli-config). */
static int write_config(const char *dir, const char *name, json_t *j, struct err_detail *reterr) {
        _cleanup_free_ char *text = json_dumps(j, JSON_INDENT(2)), *path = NULL;
        if (!text || asprintf(&path, "%s/%s", dir, name) < 0)
                return err_set(reterr, -ENOMEM, "agent", "out of memory");
        unlink(path); /* a bundle written again (retried provisioning) */
        return write_owned(path, text, strlen(text), 0444, 0, 0, reterr);
}

/* Claude's --mcp-config (with --strict-mcp-config: these servers and no
 * other, not a workspace .mcp.json): {"mcpServers": {name: {type: stdio,
 * command, args} | {type: http, url}}} (docs/CONTRACTS.md "MCP connectors"). */
static json_t *mcp_config_json(const Paddock__V1__SandboxSnapshot *snap) {
        json_t *servers = json_object();
        for (size_t i = 0; servers && i < snap->n_mcp_servers; i++) {
                const Paddock__V1__McpServer *m = snap->mcp_servers[i];
                json_t *one;
                char buf[2048];
                if (m->transport && !strcmp(m->transport, "http"))
                        one = json_pack("{s:s, s:s}", "type", "http", "url", mcp_url(snap, m->url, buf, sizeof buf));
                else {
                        json_t *args = json_array();
                        for (size_t j = 1; args && j < m->n_command; j++)
                                json_array_append_new(args, json_string(m->command[j]));
                        one = json_pack("{s:s, s:s, s:o}", "type", "stdio", "command",
                                        m->n_command ? m->command[0] : "", "args", args);
                }
                if (!one || json_object_set_new(servers, m->name, one) < 0) {
                        json_decref(servers);
                        return NULL;
                }
        }
        return servers ? json_pack("{s:o}", "mcpServers", servers) : NULL;
}

int agent_cli_prepare(struct agent_cli_launch *l, const char *run_dir, uid_t uid, gid_t gid,
                      const Paddock__V1__SandboxSnapshot *snap, struct err_detail *reterr) {
        *l = (struct agent_cli_launch){.kind = agent_cli_kind_of(snap && snap->agent ? snap->agent->type : NULL)};
        if (l->kind == AGENT_CLI_NONE)
                return 0;
        const char *model = pick_model(l->kind, snap);
        if (!model)
                return err_set(reterr, -EINVAL, "agent",
                               "agent type %s has no model: spec.agent.model is unset and no %s model route names one",
                               agent_cli_type_name(l->kind), provider_of(l->kind));
        l->fixed_task = !(snap->prompt && snap->prompt->rendered && snap->prompt->rendered[0]);
        const char *effort = snap->agent->effort && snap->agent->effort[0] ? snap->agent->effort : NULL;
        if (!(l->model = strdup(model)) || (effort && !(l->effort = strdup(effort))) ||
            asprintf(&l->home_dir, "%s/home", run_dir) < 0 || asprintf(&l->config_dir, "%s/cli-config", run_dir) < 0)
                return err_set(reterr, -ENOMEM, "agent", "out of memory");
        if (mkdir(l->home_dir, 0700) < 0)
                return err_set(reterr, -errno, "agent", "cannot create %s: %m", l->home_dir);
        if (mkdir(l->config_dir, 0755) < 0) /* root's: the hook config the agent cannot change */
                return err_set(reterr, -errno, "agent", "cannot create %s: %m", l->config_dir);
        /* a tmpfs: what the CLI writes to its home is bounded and charged to
         * the run's memory cgroup, and goes with the run's mounts */
        char opts[128];
        snprintf(opts, sizeof opts, "size=%dm,mode=0700,uid=%u,gid=%u,nr_inodes=65536", AGENT_CLI_HOME_MB,
                 (unsigned)uid, (unsigned)gid);
        if (mount("paddock-home", l->home_dir, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
                return err_set(reterr, -errno, "agent", "cannot mount the home tmpfs on %s: %m", l->home_dir);
        int r = mkdirs_owned(l->home_dir, ".claude", uid, gid, reterr);
        if (r >= 0)
                r = mkdirs_owned(l->home_dir, ".codex", uid, gid, reterr);
        if (r < 0)
                return r;
        char path[4096];
        /* mount points of the read-only hook config (hook_files_write):
         * empty placeholders, covered by read-only binds at start */
        static const char *const placeholders[] = {".claude/settings.json", ".claude/paddock-settings.json",
                                                   ".claude/paddock-mcp.json", ".codex/hooks.json",
                                                   ".codex/config.toml"};
        for (size_t i = 0; i < ELEMENTSOF(placeholders); i++) {
                snprintf(path, sizeof path, "%s/%s", l->home_dir, placeholders[i]);
                r = write_owned(path, "", 0, 0444, 0, 0, reterr);
                if (r < 0)
                        return r;
        }
        /* config.toml is root's and read-only (bound over its placeholder):
         * it names the run's MCP servers, which the agent must not extend */
        _cleanup_free_ char *toml = codex_config(l->model, l->effort, snap);
        if (!toml)
                return err_set(reterr, -ENOMEM, "agent", "out of memory");
        snprintf(path, sizeof path, "%s/codex-config.toml", l->config_dir);
        unlink(path);
        r = write_owned(path, toml, strlen(toml), 0444, 0, 0, reterr);
        if (r < 0)
                return r;
        json_t *mcp = mcp_config_json(snap);
        if (!mcp)
                return err_set(reterr, -ENOMEM, "agent", "out of memory");
        r = write_config(l->config_dir, "claude-mcp.json", mcp, reterr);
        json_decref(mcp);
        if (r < 0)
                return r;
        if (!(l->skills = json_array()) || !(l->mcp_servers = json_array()))
                return err_set(reterr, -ENOMEM, "agent", "out of memory");
        for (size_t i = 0; i < snap->n_mcp_servers; i++)
                json_array_append_new(l->mcp_servers, json_string(snap->mcp_servers[i]->name));
        return write_skills(l, snap, uid, gid, reterr);
}

/* The hooks of both CLIs: PreToolUse and PostToolUse on every tool, each
 * running paddock-hook (hook_server.h). Codex reads Claude's format from
 * hooks.json. The timeout (seconds) outlasts the approval deadline. */
static json_t *hooks_json(const char *cli, unsigned timeout_s) {
        json_t *hooks = json_object();
        static const char *const events[] = {"PreToolUse", "PostToolUse"};
        for (size_t i = 0; hooks && i < ELEMENTSOF(events); i++) {
                char cmd[256];
                snprintf(cmd, sizeof cmd, "%s %s %s", AGENT_CLI_HOOK_BINARY, cli, events[i]);
                json_object_set_new(hooks, events[i],
                                    json_pack("[{s:s, s:[{s:s, s:s, s:i}]}]", "matcher", "*", "hooks", "type",
                                              "command", "command", cmd, "timeout", (int)timeout_s));
        }
        return hooks;
}

static int hook_files_write(const struct agent_cli_launch *l, struct err_detail *reterr) {
        unsigned t = l->hook_timeout_s ? l->hook_timeout_s : 300 + AGENT_CLI_HOOK_SLACK_S;
        /* --settings (flag settings) outranks the user, project and local
         * settings, so a `disableAllHooks: true` the agent writes into the
         * workspace's .claude/ cannot turn these off */
        json_t *flag = json_pack("{s:b, s:o}", "disableAllHooks", 0, "hooks", hooks_json("claude-code", t));
        json_t *user = json_pack("{s:b}", "disableAllHooks", 0);
        json_t *codex = json_pack("{s:o}", "hooks", hooks_json("codex", t));
        int r = !flag || !user || !codex ? err_set(reterr, -ENOMEM, "agent", "out of memory") : 0;
        if (r >= 0)
                r = write_config(l->config_dir, "claude-paddock-settings.json", flag, reterr);
        if (r >= 0)
                r = write_config(l->config_dir, "claude-settings.json", user, reterr);
        if (r >= 0)
                r = write_config(l->config_dir, "codex-hooks.json", codex, reterr);
        json_decref(flag);
        json_decref(user);
        json_decref(codex);
        return r;
}

/* The version the image's npm package says (images.c pins it). */
static char *cli_version(const char *image_root, enum agent_cli_kind kind) {
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/usr/local/lib/node_modules/%s/package.json", image_root,
                     kind == AGENT_CLI_CODEX ? "@openai/codex" : "@anthropic-ai/claude-code") < 0)
                return NULL;
        json_t *pj = json_load_file(path, 0, NULL);
        const char *v = json_string_value(json_object_get(pj, "version"));
        char *out = v ? strdup(v) : NULL;
        json_decref(pj);
        return out;
}

/* Sets NAME=value in the env array, replacing an entry of that name. */
static int env_set(json_t *env, const char *name, const char *value) {
        char *kv = NULL;
        if (asprintf(&kv, "%s=%s", name, value) < 0)
                return -ENOMEM;
        size_t nl = strlen(name), i;
        json_t *e;
        json_array_foreach(env, i, e) {
                const char *s = json_string_value(e);
                if (s && !strncmp(s, name, nl) && s[nl] == '=') {
                        int r = json_array_set_new(env, i, json_string(kv));
                        free(kv);
                        return r < 0 ? -ENOMEM : 0;
                }
        }
        int r = json_array_append_new(env, json_string(kv));
        free(kv);
        return r < 0 ? -ENOMEM : 0;
}

int agent_cli_add_to_bundle(struct agent_cli_launch *l, const char *image_root,
                            const Paddock__V1__SandboxSnapshot *snap, json_t *process, json_t *mounts,
                            struct err_detail *reterr) {
        if (l->kind == AGENT_CLI_NONE)
                return 0;
        if (!image_root)
                return err_set(reterr, -ENOENT, "agent",
                               "agent type %s runs in an image with its CLI (spec.image: node-agents), none was given",
                               agent_cli_type_name(l->kind));
        free(l->cli_version);
        l->cli_version = cli_version(image_root, l->kind);
        if (!l->cli_version)
                return err_set(reterr, -ENOENT, "agent", "image %s has no %s CLI", snap->image,
                               agent_cli_type_name(l->kind));
        const char *prompt = l->fixed_task ? AGENT_CLI_FIXED_TASK : snap->prompt->rendered;
        /* the prompt after "--": a task starting with "-" is not an option */
        int hr = hook_files_write(l, reterr);
        if (hr < 0)
                return hr;
        /* the hooks (hook_files_write): Claude's in --settings, Codex's in
         * hooks.json, which it runs only with its trust check bypassed */
        json_t *args = l->kind == AGENT_CLI_CLAUDE
                               ? json_pack("[s,s,s,s,s,s,s,s,s,s,s,s,s,s,s,s]", "claude", "-p",
                                           "--output-format", "stream-json", "--verbose", "--no-session-persistence",
                                           "--permission-mode", "dontAsk", "--setting-sources", "user",
                                           "--settings", AGENT_CLI_HOME "/.claude/paddock-settings.json", "--model",
                                           l->model, "--", prompt)
                               /* danger-full-access: Codex's bubblewrap needs user namespaces
                                * it cannot make inside ours; the crun sandbox is the boundary */
                               : json_pack("[s,s,s,s,s,s,s,s,s,s]", "codex", "exec", "--json", "--skip-git-repo-check",
                                           "--ephemeral", "--dangerously-bypass-hook-trust", "-s",
                                           "danger-full-access", "--", prompt);
        /* the run's MCP servers only (docs/CONTRACTS.md "MCP connectors"):
         * --strict-mcp-config ignores every other MCP configuration, a
         * workspace .mcp.json included */
        if (args && l->kind == AGENT_CLI_CLAUDE)
                if (json_array_insert_new(args, json_array_size(args) - 2, json_string("--mcp-config")) < 0 ||
                    json_array_insert_new(args, json_array_size(args) - 2,
                                          json_string(AGENT_CLI_HOME "/.claude/paddock-mcp.json")) < 0 ||
                    json_array_insert_new(args, json_array_size(args) - 2, json_string("--strict-mcp-config")) < 0) {
                        json_decref(args);
                        args = NULL;
                }
        /* Claude takes the effort on its command line (before the "--"), Codex in config.toml */
        if (args && l->kind == AGENT_CLI_CLAUDE && l->effort)
                if (json_array_insert_new(args, json_array_size(args) - 2, json_string("--effort")) < 0 ||
                    json_array_insert_new(args, json_array_size(args) - 2, json_string(l->effort)) < 0) {
                        json_decref(args);
                        args = NULL;
                }
        if (!args || json_object_set_new(process, "args", args) < 0)
                return err_set(reterr, -ENOMEM, "agent", "out of memory");
        json_t *env = json_object_get(process, "env");
        int r = 0;
        /* the gateway listens on the sandbox's loopback: not through the proxy */
        r |= env_set(env, "NO_PROXY", "127.0.0.1,localhost");
        r |= env_set(env, "no_proxy", "127.0.0.1,localhost");
        r |= env_set(env, "HOME", AGENT_CLI_HOME);
        r |= env_set(env, "SHELL", "/bin/bash");
        if (l->kind == AGENT_CLI_CLAUDE) {
                r |= env_set(env, "ANTHROPIC_BASE_URL", AGENT_CLI_GATEWAY_URL);
                r |= env_set(env, "ANTHROPIC_API_KEY", AGENT_CLI_DUMMY_KEY);
                /* the background "small fast" model must be one the run may call */
                r |= env_set(env, "ANTHROPIC_SMALL_FAST_MODEL", l->model);
                r |= env_set(env, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1");
                r |= env_set(env, "DISABLE_AUTOUPDATER", "1");
                r |= env_set(env, "DISABLE_TELEMETRY", "1");
                r |= env_set(env, "DISABLE_ERROR_REPORTING", "1");
                r |= env_set(env, "CLAUDE_CODE_MAX_RETRIES", "0");
                /* the definition's MCP servers are connected before the first
                 * turn (bounded by the CLI's MCP_TIMEOUT), not in the
                 * background: a headless run's first tool call must find them
                 * (a loaded node answered "still connecting") */
                r |= env_set(env, "MCP_CONNECTION_NONBLOCKING", "false");
                /* ms a server may take to start (default 30 s) and the first
                 * turn waits for it (default 5 s) */
                r |= env_set(env, "MCP_TIMEOUT", "120000");
                r |= env_set(env, "MCP_CONNECT_TIMEOUT_MS", "120000");
                /* bypass mode refuses root without it; the CLI's uid 1000 is
                 * root of nothing, the variable only says there is a sandbox */
                r |= env_set(env, "IS_SANDBOX", "1");
        } else {
                r |= env_set(env, "CODEX_HOME", AGENT_CLI_HOME "/.codex");
                r |= env_set(env, "PADDOCK_GATEWAY_KEY", AGENT_CLI_DUMMY_KEY);
        }
        json_t *m = json_pack("{s:s,s:s,s:s,s:[s,s,s,s]}", "destination", AGENT_CLI_HOME, "type", "bind", "source",
                              l->home_dir, "options", "bind", "rw", "nosuid", "nodev");
        if (r < 0 || !m || json_array_append_new(mounts, m) < 0)
                return err_set(reterr, -ENOMEM, "agent", "out of memory");
        /* the hook config, read-only over its placeholders in HOME */
        static const char *const binds[][2] = {{"claude-paddock-settings.json", ".claude/paddock-settings.json"},
                                               {"claude-settings.json", ".claude/settings.json"},
                                               {"claude-mcp.json", ".claude/paddock-mcp.json"},
                                               {"codex-hooks.json", ".codex/hooks.json"},
                                               {"codex-config.toml", ".codex/config.toml"}};
        for (size_t i = 0; i < ELEMENTSOF(binds); i++) {
                char src[4096], dst[256];
                snprintf(src, sizeof src, "%s/%s", l->config_dir, binds[i][0]);
                snprintf(dst, sizeof dst, "%s/%s", AGENT_CLI_HOME, binds[i][1]);
                m = json_pack("{s:s,s:s,s:s,s:[s,s,s,s,s]}", "destination", dst, "type", "bind", "source", src,
                              "options", "bind", "ro", "nosuid", "nodev", "noexec");
                if (!m || json_array_append_new(mounts, m) < 0)
                        return err_set(reterr, -ENOMEM, "agent", "out of memory");
        }
        return 0;
}

json_t *agent_cli_session(const struct agent_cli_launch *l) {
        return json_pack("{s:s,s:s?,s:s?,s:s?,s:O*,s:O*}", "type", agent_cli_type_name(l->kind), "cli_version",
                         l->cli_version, "model", l->model, "effort", l->effort, "skills", l->skills, "mcp_servers",
                         l->mcp_servers);
}

void agent_cli_launch_done(struct agent_cli_launch *l) {
        free(l->model);
        free(l->effort);
        free(l->cli_version);
        free(l->home_dir);
        free(l->config_dir);
        json_decref(l->skills);
        json_decref(l->mcp_servers);
        *l = (struct agent_cli_launch){0};
}
