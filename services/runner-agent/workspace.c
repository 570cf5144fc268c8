#include "workspace.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "core/macro.h"
#include "subprocess.h"

#define WORKSPACE_PATH_MAX 4096
#define DIFF_TIMEOUT_MS 120000

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

/* Opens (creating) each parent directory of rel below root_fd with
 * O_NOFOLLOW, so nothing already in the tree can redirect the write.
 * Returns the fd of the last directory and the base name in *base. */
static int open_parent(int root_fd, char *rel, const struct workspace_owner *own, const char **base) {
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
                                return r;
                        }
                } else if (errno != EEXIST) {
                        int r = -errno;
                        close(dfd);
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
        _cleanup_close_ int dfd = open_parent(root_fd, rel, own, &base);
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

/* In place: replaces the prefix `from` at line+at with `to` (never longer). Returns the new length. */
static size_t replace_at(char *line, size_t len, size_t at, const char *from, const char *to) {
        size_t fl = strlen(from), tl = strlen(to);
        if (len < at + fl || memcmp(line + at, from, fl))
                return len;
        memcpy(line + at, to, tl);
        memmove(line + at + tl, line + at + fl, len - at - fl);
        return len - fl + tl;
}

/* Rewrites diff's labels. Header lines are told apart from content lines by
 * counting the lines each hunk announces, so a removed line that happens to
 * read "-- baseline/x" is never touched. The output is never longer. */
static size_t relabel(char *buf, size_t len) {
        char *w = buf;
        const char *r = buf, *end = buf + len;
        long old_left = 0, new_left = 0;
        while (r < end) {
                const char *nl = memchr(r, '\n', (size_t)(end - r));
                size_t l = nl ? (size_t)(nl - r) + 1 : (size_t)(end - r);
                char *line = memmove(w, r, l); /* w <= r always */
                r += l;
                if (old_left > 0 || new_left > 0) {
                        if (line[0] == ' ') {
                                old_left--;
                                new_left--;
                        } else if (line[0] == '-') {
                                old_left--;
                        } else if (line[0] == '+') {
                                new_left--;
                        }
                        /* "\ No newline at end of file" counts for neither */
                        w += l;
                        continue;
                }
                if (l >= 4 && !memcmp(line, "--- ", 4)) {
                        w += replace_at(line, l, 4, "baseline/", "a/");
                        continue;
                }
                if (l >= 4 && !memcmp(line, "+++ ", 4)) {
                        w += replace_at(line, l, 4, "workspace/", "b/");
                        continue;
                }
                if (l >= 4 && !memcmp(line, "@@ -", 4)) {
                        long os = 0, ol = 1, ns = 0, nl2 = 1;
                        char tmp[128];
                        size_t c = l < sizeof tmp - 1 ? l : sizeof tmp - 1;
                        memcpy(tmp, line, c);
                        tmp[c] = 0;
                        if (sscanf(tmp, "@@ -%ld,%ld +%ld,%ld @@", &os, &ol, &ns, &nl2) != 4) {
                                ol = 1;
                                nl2 = 1;
                                if (sscanf(tmp, "@@ -%ld +%ld,%ld @@", &os, &ns, &nl2) == 3)
                                        ;
                                else if (sscanf(tmp, "@@ -%ld,%ld +%ld @@", &os, &ol, &ns) == 3)
                                        nl2 = 1;
                        }
                        old_left = ol;
                        new_left = nl2;
                        w += l;
                        continue;
                }
                if (l >= 5 && !memcmp(line, "diff ", 5)) {
                        /* "diff -ruN --no-dereference baseline/x workspace/x" -> "diff -ruN a/x b/x" */
                        l = replace_at(line, l, 5, "-ruN --no-dereference ", "-ruN ");
                        l = replace_at(line, l, 10, "baseline/", "a/");
                        /* the second path starts after "a/<same name> " */
                        char *sp = memmem(line + 12, l - 12, " workspace/", 11);
                        if (sp)
                                l = replace_at(line, l, (size_t)(sp - line) + 1, "workspace/", "b/");
                        w += l;
                        continue;
                }
                w += l;
        }
        return (size_t)(w - buf);
}

int workspace_diff(const char *run_dir, size_t max, char **out, size_t *out_len,
                   struct err_detail *reterr) {
        char *argv[] = {"/usr/bin/diff", "-ruN", "--no-dereference", "baseline", "workspace", NULL};
        char err[512];
        char *buf = NULL;
        size_t len = 0;
        int r = subprocess_run(argv, run_dir, &buf, &len, max, err, sizeof err, DIFF_TIMEOUT_MS);
        if (r == -EFBIG)
                return err_set(reterr, r, "diff", "the workspace diff is larger than %zu bytes", max);
        if (r < 0)
                return err_set(reterr, r, "diff", "could not run diff: %s", strerror(-r));
        /* 0: no differences, 1: differences, 2: trouble (e.g. a fifo) but output is still useful */
        if (r > 2) {
                free(buf);
                return err_set(reterr, -EIO, "diff", "diff exited %d: %s", r, err);
        }
        if (r == 2)
                err_set(reterr, 0, "diff", "diff reported trouble: %s", err);
        *out_len = relabel(buf, len);
        buf[*out_len] = 0;
        *out = buf;
        return 0;
}
