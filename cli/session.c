/* Where the CLI finds the API and keeps its logins (contexts).
 *
 * A token is a bearer credential: it lives only in its context's file,
 * created with mode 0600 inside 0700 directories, replaced atomically
 * (rename) so a crash never leaves a half-written or world-readable file, and
 * is never printed. Several contexts side by side let one person use several
 * users or stacks, the way kubectl and gh do. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

#define CONTEXT_NAME_MAX 64

static char *path_join(const char *dir, const char *name) {
        char *p = NULL;
        if (asprintf(&p, "%s/%s", dir, name) < 0)
                return NULL;
        return p;
}

/* $PADDOCK_STATE_DIR if set, else ./.paddock (the local stack's default). */
static char *state_dir(void) {
        const char *d = getenv("PADDOCK_STATE_DIR");
        return strdup(d && *d ? d : ".paddock");
}

char *session_config_dir(void) {
        const char *d = getenv("PADDOCK_CONFIG_DIR");
        if (d && *d)
                return strdup(d);
        const char *xdg = getenv("XDG_CONFIG_HOME");
        if (xdg && *xdg)
                return path_join(xdg, "paddock");
        const char *home = getenv("HOME");
        char *p = NULL;
        if (asprintf(&p, "%s/.config/paddock", home && *home ? home : ".") < 0)
                return NULL;
        return p;
}

/* Strips matching single or double quotes around a shell value. */
static void unquote(char *v) {
        size_t n = strlen(v);
        if (n >= 2 && (v[0] == '"' || v[0] == '\'') && v[n - 1] == v[0]) {
                memmove(v, v + 1, n - 2);
                v[n - 2] = '\0';
        }
}

char *session_read_env_file(const char *path, const char *key) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        _cleanup_free_ char *line = NULL;
        size_t cap = 0, klen = strlen(key);
        ssize_t n;

        if (!f)
                return NULL;
        while ((n = getline(&line, &cap, f)) >= 0) {
                char *s = line;
                while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
                        s[--n] = '\0';
                while (*s == ' ' || *s == '\t')
                        s++;
                if (strncmp(s, "export ", 7) == 0)
                        s += 7;
                if (strncmp(s, key, klen) != 0 || s[klen] != '=')
                        continue;
                char *v = s + klen + 1;
                unquote(v);
                return strdup(v);
        }
        return NULL;
}

char *session_credentials_path(void) {
        _cleanup_free_ char *d = state_dir();
        return d ? path_join(d, "credentials") : NULL;
}

static char *strip_slash(char *url) {
        if (!url)
                return NULL;
        size_t n = strlen(url);
        while (n > 0 && url[n - 1] == '/')
                url[--n] = '\0';
        if (n == 0) {
                free(url);
                return NULL;
        }
        return url;
}

char *session_resolve_api_url(const char *override, const char *context_url) {
        if (override && *override)
                return strip_slash(strdup(override));
        const char *env = getenv("PADDOCK_API_URL");
        if (env && *env)
                return strip_slash(strdup(env));
        /* the URL the context logged in to beats the local stack's default:
         * that is what lets two contexts talk to two stacks */
        if (context_url && *context_url)
                return strip_slash(strdup(context_url));
        _cleanup_free_ char *sd = state_dir();
        if (sd) {
                _cleanup_free_ char *p = path_join(sd, "endpoints.env");
                char *v = p ? session_read_env_file(p, "PADDOCK_API_URL") : NULL;
                if (v)
                        return strip_slash(v);
        }
        return NULL;
}

/* ------------------------------------------------------------ files */

static int mkdir_p(const char *dir, mode_t mode) {
        char buf[PATH_MAX];
        if (strlen(dir) >= sizeof(buf))
                return -ENAMETOOLONG;
        strcpy(buf, dir);
        for (char *p = buf + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = '\0';
                if (mkdir(buf, mode) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

/* Replaces path with text: a 0600 temporary file next to it, synced, then
 * renamed over it, so readers see the old or the new file, never half. */
static int write_atomic(const char *path, const char *text) {
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = -1;
        int r = 0;

        if (asprintf(&tmp, "%s.tmp.%d", path, (int)getpid()) < 0)
                return -ENOMEM;
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        /* The umask cannot widen 0600, but a stale file could have been wider. */
        if (fchmod(fd, 0600) < 0)
                r = -errno;
        size_t len = strlen(text), off = 0;
        while (r >= 0 && off < len) {
                ssize_t w = write(fd, text + off, len - off);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        break;
                }
                off += (size_t)w;
        }
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r >= 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0)
                unlink(tmp);
        return r;
}

bool session_context_name_valid(const char *name) {
        size_t n = name ? strlen(name) : 0;
        if (n == 0 || n > CONTEXT_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = name[i];
                bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
                if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
                        return false;
        }
        return true;
}

static char *contexts_dir(void) {
        _cleanup_free_ char *d = session_config_dir();
        return d ? path_join(d, "contexts") : NULL;
}

static char *context_path(const char *name) {
        _cleanup_free_ char *d = contexts_dir();
        char *p = NULL;
        if (!d || asprintf(&p, "%s/%s.json", d, name) < 0)
                return NULL;
        return p;
}

static char *current_path(void) {
        _cleanup_free_ char *d = session_config_dir();
        return d ? path_join(d, "current-context") : NULL;
}

/* Creates the config and contexts directories (0700) and moves a
 * session.json of the single-session versions to the context "default",
 * made current if nothing is. Idempotent; cheap when done. */
static int prepare_dirs(void) {
        _cleanup_free_ char *cfg = session_config_dir();
        _cleanup_free_ char *ctxdir = contexts_dir();
        if (!cfg || !ctxdir)
                return -ENOMEM;
        int r = mkdir_p(ctxdir, 0700);
        if (r < 0)
                return r;
        _cleanup_free_ char *old = path_join(cfg, "session.json");
        _cleanup_free_ char *def = context_path("default");
        if (!old || !def)
                return -ENOMEM;
        if (access(old, F_OK) < 0)
                return 0;
        if (access(def, F_OK) == 0)
                return 0; /* migrated before; someone restored the old file: leave it */
        /* link + unlink, not rename: never replace a default made meanwhile */
        if (link(old, def) < 0)
                return errno == EEXIST ? 0 : -errno;
        (void)chmod(def, 0600);
        (void)unlink(old);
        _cleanup_free_ char *cur = session_current_get();
        if (!cur)
                return session_current_set("default");
        return 0;
}

/* Reads a directory that may not exist yet without creating it. */
static int prepare_dirs_if_any(void) {
        _cleanup_free_ char *cfg = session_config_dir();
        if (!cfg)
                return -ENOMEM;
        if (access(cfg, F_OK) < 0)
                return 0;
        return prepare_dirs();
}

/* The file of the saved context name into *ret (malloc'd): -EINVAL for a
 * name no context can have, -ENOENT when there is no such context. */
static int existing_context_path(const char *name, char **ret) {
        if (!session_context_name_valid(name))
                return -EINVAL;
        int r = prepare_dirs_if_any();
        if (r < 0)
                return r;
        _cleanup_free_ char *p = context_path(name);
        if (!p)
                return -ENOMEM;
        if (access(p, F_OK) < 0)
                return -errno;
        *ret = TAKE_PTR(p);
        return 0;
}

char *session_current_get(void) {
        _cleanup_free_ char *p = current_path();
        _cleanup_fclose_ FILE *f = p ? fopen(p, "re") : NULL;
        char buf[CONTEXT_NAME_MAX + 4];
        if (!f || !fgets(buf, sizeof buf, f))
                return NULL;
        buf[strcspn(buf, "\r\n")] = '\0';
        return session_context_name_valid(buf) ? strdup(buf) : NULL;
}

int session_current_set(const char *name) {
        if (!session_context_name_valid(name))
                return -EINVAL;
        int r = prepare_dirs();
        if (r < 0)
                return r;
        _cleanup_free_ char *p = current_path();
        _cleanup_free_ char *text = NULL;
        if (!p || asprintf(&text, "%s\n", name) < 0)
                return -ENOMEM;
        return write_atomic(p, text);
}

int session_context_select(const char *flag, char **ret, bool *ret_explicit) {
        const char *env = getenv("PADDOCK_CONTEXT");
        const char *named = flag && *flag ? flag : env && *env ? env : NULL;
        char *name;
        (void)prepare_dirs_if_any(); /* an old session.json becomes "default" */
        if (named)
                name = strdup(named);
        else
                name = session_current_get() ?: strdup("default");
        if (!name)
                return -ENOMEM;
        *ret = name;
        *ret_explicit = named != NULL;
        return 0;
}

void session_context_done(struct session_context *c) {
        if (!c)
                return;
        free(c->name);
        free(c->api_url);
        free(c->tenant);
        free(c->user);
        if (c->token) {
                explicit_bzero(c->token, strlen(c->token));
                free(c->token);
        }
        free(c->expires_at);
        *c = (struct session_context){0};
}

static char *dup_field(json_t *o, const char *key) {
        const char *v = json_string_value(json_object_get(o, key));
        return v && *v ? strdup(v) : NULL;
}

int session_context_load(const char *name, struct session_context *ret) {
        *ret = (struct session_context){0};
        _cleanup_free_ char *p = NULL;
        int r = existing_context_path(name, &p);
        if (r < 0)
                return r;
        _cleanup_json_ json_t *o = json_load_file(p, 0, NULL);
        if (!json_is_object(o))
                return -EBADMSG;
        const char *auth = json_string_value(json_object_get(o, "auth"));
        ret->name = strdup(name);
        ret->api_url = dup_field(o, "api_url");
        ret->tenant = dup_field(o, "tenant");
        ret->user = dup_field(o, "user");
        ret->token = dup_field(o, "token");
        ret->expires_at = dup_field(o, "expires_at");
        /* a session.json of old versions was always a password login */
        ret->auth = auth && strcmp(auth, "token") == 0 ? CLI_AUTH_TOKEN : CLI_AUTH_PASSWORD;
        if (!ret->name) {
                session_context_done(ret);
                return -ENOMEM;
        }
        return 0;
}

int session_context_save(const struct session_context *c) {
        if (!session_context_name_valid(c->name))
                return -EINVAL;
        int r = prepare_dirs();
        if (r < 0)
                return r;
        _cleanup_free_ char *p = context_path(c->name);
        _cleanup_json_ json_t *o = json_pack("{s:s?, s:s?, s:s?, s:s?, s:s?, s:s}", "api_url", c->api_url,
                                             "tenant", c->tenant, "user", c->user, "token", c->token,
                                             "expires_at", c->expires_at, "auth",
                                             c->auth == CLI_AUTH_TOKEN ? "token" : "password");
        if (!p || !o)
                return -ENOMEM;
        char *text = json_dumps(o, JSON_INDENT(2));
        if (!text)
                return -ENOMEM;
        _cleanup_free_ char *line = NULL;
        if (asprintf(&line, "%s\n", text) < 0)
                line = NULL;
        explicit_bzero(text, strlen(text));
        free(text);
        if (!line)
                return -ENOMEM;
        r = write_atomic(p, line);
        explicit_bzero(line, strlen(line));
        return r;
}

int session_context_delete(const char *name) {
        _cleanup_free_ char *p = NULL;
        int r = existing_context_path(name, &p);
        if (r < 0)
                return r;
        if (unlink(p) < 0)
                return -errno;
        _cleanup_free_ char *cur = session_current_get();
        if (cur && strcmp(cur, name) == 0) {
                _cleanup_free_ char *cp = current_path();
                if (cp)
                        (void)unlink(cp);
        }
        return 0;
}

int session_context_rename(const char *from, const char *to) {
        if (!session_context_name_valid(to))
                return -EINVAL;
        _cleanup_free_ char *a = NULL, *b = NULL;
        int r = existing_context_path(from, &a);
        if (r < 0)
                return r;
        if (!(b = context_path(to)))
                return -ENOMEM;
        /* link + unlink: fails with EEXIST instead of replacing `to` */
        if (link(a, b) < 0)
                return -errno;
        if (unlink(a) < 0)
                return -errno;
        _cleanup_free_ char *cur = session_current_get();
        if (cur && strcmp(cur, from) == 0)
                return session_current_set(to);
        return 0;
}

static int cmp_json_strings(const void *a, const void *b) {
        return strcmp(json_string_value(*(json_t *const *)a), json_string_value(*(json_t *const *)b));
}

json_t *session_context_names(void) {
        _cleanup_json_ json_t *names = json_array();
        if (!names || prepare_dirs_if_any() < 0)
                return NULL;
        _cleanup_free_ char *d = contexts_dir();
        DIR *dir = d ? opendir(d) : NULL;
        if (!dir)
                return TAKE_PTR(names); /* none yet */
        struct dirent *de;
        while ((de = readdir(dir))) {
                size_t n = strlen(de->d_name);
                if (n <= 5 || strcmp(de->d_name + n - 5, ".json") != 0)
                        continue;
                char name[CONTEXT_NAME_MAX + 1];
                if (n - 5 > CONTEXT_NAME_MAX)
                        continue;
                memcpy(name, de->d_name, n - 5);
                name[n - 5] = '\0';
                if (session_context_name_valid(name))
                        json_array_append_new(names, json_string(name));
        }
        closedir(dir);
        /* sort a C array of the elements, then rebuild the JSON array */
        size_t n = json_array_size(names);
        json_t **v = calloc(n ? n : 1, sizeof *v);
        if (!v)
                return NULL;
        for (size_t i = 0; i < n; i++)
                v[i] = json_incref(json_array_get(names, i));
        qsort(v, n, sizeof *v, cmp_json_strings);
        json_array_clear(names);
        for (size_t i = 0; i < n; i++)
                json_array_append_new(names, v[i]);
        free(v);
        return TAKE_PTR(names);
}
