/* The dashboard's static files (web/, built into PADDOCK_WEB_DIR) under /,
 * beside the API on the same origin, so the page's cookie session and its
 * strict Content-Security-Policy (http.c) need no CORS. Only regular files
 * below the directory, by names of safe characters, with a type we know:
 * no listing, no dot files, no symlinks, nothing outside
 * (docs/CONTRACTS.md "Dashboard"). The page routes with the URL fragment,
 * so no path needs a fallback to index.html. */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "api.h"

/* the built app is a few hundred KiB; anything far larger is not ours */
#define WEB_FILE_MAX (8 * 1024 * 1024)
#define WEB_PATH_MAX 256

static const struct {
        const char *ext;
        const char *type;
} web_types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".json", "application/json"},
        {".txt", "text/plain; charset=utf-8"},
        {".woff2", "font/woff2"},
};

const char *web_content_type(const char *name) {
        const char *dot = strrchr(name, '.'), *slash = strrchr(name, '/');
        if (!dot || (slash && dot < slash))
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(web_types); i++)
                if (!strcmp(dot, web_types[i].ext))
                        return web_types[i].type;
        return NULL;
}

bool web_path_ok(const char *path) {
        if (!path || path[0] != '/' || strlen(path) > WEB_PATH_MAX)
                return false;
        const char *seg = path + 1;
        if (!*seg)
                return true; /* "/": index.html */
        for (;;) {
                size_t n = strspn(seg, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-");
                /* no empty segment ("//", a trailing '/'), no "." / ".." / dot file */
                if (n == 0 || seg[0] == '.')
                        return false;
                if (seg[n] == '\0')
                        return true;
                if (seg[n] != '/')
                        return false;
                seg += n + 1;
        }
}

int web_configure(struct api *a, struct err_detail *e) {
        a->web_fd = -1;
        const char *dir = a->cfg.web_dir;
        if (!dir || !*dir)
                return 0;
        if (dir[0] != '/')
                return err_set(e, -EINVAL, "invalid", "must be an absolute path, not \"%s\"", dir);
        int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return err_set(e, -errno, "invalid", "could not open directory \"%s\": %s", dir, strerror(errno));
        struct stat st;
        if (fstatat(fd, "index.html", &st, 0) < 0 || !S_ISREG(st.st_mode)) {
                close(fd);
                return err_set(e, -ENOENT, "invalid", "\"%s\" holds no index.html (build the dashboard: web/)", dir);
        }
        a->web_fd = fd;
        return 0;
}

bool web_serves(const struct api *a, const char *method, const char *path) {
        /* HEAD answers as GET without the body (RFC 9110 9.3.2; http.c) */
        if (a->web_fd < 0 || (strcmp(method, "GET") && strcmp(method, "HEAD")))
                return false;
        /* the api's own namespace keeps its JSON 404s */
        return strncmp(path, "/v1/", 4) && strcmp(path, "/v1");
}

/* Opens rel below web_fd without leaving it or following any link
 * (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS: also the directories on
 * the way), whatever web_path_ok let through. */
static int web_open(int dirfd, const char *rel) {
        struct open_how how = {
                .flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW,
                .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        };
        long fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof how);
        return fd < 0 ? -errno : (int)fd;
}

int web_get(struct api_req *r, const char *path) {
        if (!web_path_ok(path))
                return api_fail(r, -ENOENT, "not_found", "no such file");
        const char *rel = path[1] ? path + 1 : "index.html";
        const char *type = web_content_type(rel);
        if (!type)
                return api_fail(r, -ENOENT, "not_found", "no such file");
        int fd = web_open(r->api->web_fd, rel);
        if (fd < 0)
                return api_fail(r, -ENOENT, "not_found", "no such file");
        struct stat st;
        /* a directory (no listing) or anything but a regular file: not found */
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > WEB_FILE_MAX) {
                close(fd);
                return api_fail(r, -ENOENT, "not_found", "no such file");
        }
        size_t size = (size_t)st.st_size, got = 0;
        _cleanup_free_ char *buf = malloc(size + 1);
        if (!buf) {
                close(fd);
                return api_fail(r, -ENOMEM, "internal", "out of memory");
        }
        while (got < size) {
                ssize_t n = read(fd, buf + got, size - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                got += (size_t)n;
        }
        close(fd);
        if (got != size)
                return api_fail(r, -EIO, "internal", "could not read a dashboard file");
        buf[size] = '\0';
        r->text = TAKE_PTR(buf);
        r->text_len = size;
        r->content_type = type;
        r->status = 200;
        /* the bundler names assets by their content's hash (web/build.mjs):
         * they never change; the page that names them is revalidated */
        r->cache_control = !strncmp(rel, "assets/", 7) ? "public, max-age=31536000, immutable" : "no-cache";
        return 0;
}
