/* Where the CLI finds the API and keeps its token.
 *
 * The token is a bearer credential: it lives only in session.json, created
 * with mode 0600 inside a 0700 directory, replaced atomically (rename) so a
 * crash never leaves a half-written or world-readable file, and is never
 * printed. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

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

static char *config_dir(void) {
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

static char *session_path(void) {
        _cleanup_free_ char *d = config_dir();
        return d ? path_join(d, "session.json") : NULL;
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

static json_t *session_load(void) {
        _cleanup_free_ char *p = session_path();
        if (!p)
                return NULL;
        return json_load_file(p, 0, NULL);
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

char *session_resolve_api_url(const char *override) {
        if (override && *override)
                return strip_slash(strdup(override));
        const char *env = getenv("PADDOCK_API_URL");
        if (env && *env)
                return strip_slash(strdup(env));

        _cleanup_free_ char *sd = state_dir();
        if (sd) {
                _cleanup_free_ char *p = path_join(sd, "endpoints.env");
                char *v = p ? session_read_env_file(p, "PADDOCK_API_URL") : NULL;
                if (v)
                        return strip_slash(v);
        }
        _cleanup_json_ json_t *s = session_load();
        const char *u = json_string_value(json_object_get(s, "api_url"));
        return u ? strip_slash(strdup(u)) : NULL;
}

char *session_load_token(void) {
        const char *env = getenv("PADDOCK_TOKEN");
        if (env && *env)
                return strdup(env);
        _cleanup_json_ json_t *s = session_load();
        const char *t = json_string_value(json_object_get(s, "token"));
        return t && *t ? strdup(t) : NULL;
}

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

int session_save(const char *api_url, const char *token, const char *tenant,
                 const char *user, const char *expires_at) {
        _cleanup_free_ char *dir = config_dir();
        _cleanup_free_ char *path = session_path();
        _cleanup_free_ char *tmp = NULL;
        _cleanup_json_ json_t *s = NULL;
        _cleanup_close_ int fd = -1;
        int r;

        if (!dir || !path || asprintf(&tmp, "%s.tmp.%d", path, (int)getpid()) < 0)
                return -ENOMEM;
        r = mkdir_p(dir, 0700);
        if (r < 0)
                return r;
        s = json_pack("{s:s?, s:s, s:s?, s:s?, s:s?}", "api_url", api_url, "token", token,
                      "tenant", tenant, "user", user, "expires_at", expires_at);
        if (!s)
                return -ENOMEM;
        _cleanup_free_ char *text = json_dumps(s, JSON_INDENT(2));
        if (!text)
                return -ENOMEM;

        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        /* The umask cannot widen 0600, but an old file could have been wider. */
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
        if (r >= 0 && write(fd, "\n", 1) != 1)
                r = -EIO;
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r >= 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0)
                unlink(tmp);
        return r;
}

int session_remove(void) {
        _cleanup_free_ char *p = session_path();
        if (!p)
                return -ENOMEM;
        return unlink(p) < 0 ? -errno : 0;
}
