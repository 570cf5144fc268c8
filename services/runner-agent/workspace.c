#include "workspace.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "core/macro.h"

#define WORKSPACE_PATH_MAX 4096

int workspace_validate_path(const char *path, struct err_detail *reterr) {
        size_t len = strlen(path);
        if (len == 0)
                return err_set(reterr, -EINVAL, "path", "managed file path is empty");
        if (len > WORKSPACE_PATH_MAX)
                return err_set(reterr, -EINVAL, "path", "managed file path is longer than %d bytes", WORKSPACE_PATH_MAX);
        if (path[0] == '/')
                return err_set(reterr, -EINVAL, "path", "managed file path \"%s\" is absolute", path);
        const char *p = path;
        while (*p) {
                const char *slash = strchr(p, '/');
                size_t n = slash ? (size_t)(slash - p) : strlen(p);
                if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
                        return err_set(reterr, -EINVAL, "path",
                                       "managed file path \"%s\" has an empty, \".\" or \"..\" component", path);
                if (!slash)
                        break;
                p = slash + 1;
                if (!*p)
                        return err_set(reterr, -EINVAL, "path", "managed file path \"%s\" ends with a slash", path);
        }
        return 0;
}

int workspace_open_parent(int root_fd, char *rel, const struct workspace_owner *own, const char **base) {
        int dfd = fcntl(root_fd, F_DUPFD_CLOEXEC, 3);
        if (dfd < 0)
                return -errno;
        char *p = rel;
        for (char *slash; (slash = strchr(p, '/')); p = slash + 1) {
                *slash = 0;
                if (mkdirat(dfd, p, 0755) == 0) {
                        if (own && fchownat(dfd, p, own->uid, own->gid, AT_SYMLINK_NOFOLLOW) < 0) {
                                int r = -errno;
                                close(dfd);
                                *slash = '/';
                                return r;
                        }
                } else if (errno != EEXIST) {
                        int r = -errno;
                        close(dfd);
                        *slash = '/';
                        return r;
                }
                int nfd = openat(dfd, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                int r = -errno;
                close(dfd);
                *slash = '/';
                if (nfd < 0)
                        return r;
                dfd = nfd;
        }
        *base = p;
        return dfd;
}

static int write_one(const char *root, const Paddock__V1__ManagedFile *f, const struct workspace_owner *own,
                     struct err_detail *reterr) {
        _cleanup_close_ int root_fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (root_fd < 0)
                return err_set(reterr, -errno, "workspace", "cannot open %s: %m", root);
        _cleanup_free_ char *rel = strdup(f->path);
        if (!rel)
                return -ENOMEM;
        const char *base = NULL;
        _cleanup_close_ int dfd = workspace_open_parent(root_fd, rel, own, &base);
        if (dfd < 0)
                return err_set(reterr, dfd, "workspace", "cannot create the directories of \"%s\": %s",
                               f->path, strerror(-dfd));
        mode_t mode = f->mode ? (f->mode & 0777) : 0644;
        _cleanup_close_ int fd = openat(dfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd < 0)
                return err_set(reterr, -errno, "workspace", "cannot create \"%s\": %m", f->path);
        size_t off = 0;
        while (off < f->content.len) {
                ssize_t w = write(fd, f->content.data + off, f->content.len - off);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return err_set(reterr, -errno, "workspace", "cannot write \"%s\": %m", f->path);
                }
                off += (size_t)w;
        }
        /* the umask must not narrow what the definition asked for */
        if (fchmod(fd, mode) < 0)
                return err_set(reterr, -errno, "workspace", "cannot chmod \"%s\": %m", f->path);
        if (own && fchown(fd, own->uid, own->gid) < 0)
                return err_set(reterr, -errno, "workspace", "cannot chown \"%s\": %m", f->path);
        return 0;
}

int workspace_write_files(const char *workspace, const char *baseline, const struct workspace_owner *owner,
                          Paddock__V1__ManagedFile *const *files, size_t n_files,
                          struct err_detail *reterr) {
        for (size_t i = 0; i < n_files; i++) {
                int r = workspace_validate_path(files[i]->path, reterr);
                if (r < 0)
                        return r;
                r = write_one(workspace, files[i], owner, reterr);
                if (r < 0)
                        return r;
                r = write_one(baseline, files[i], NULL, reterr);
                if (r < 0)
                        return r;
        }
        return 0;
}
