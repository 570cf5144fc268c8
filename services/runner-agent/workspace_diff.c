#include "workspace_diff.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "capture_exec.h"
#include "core/macro.h"
#include "core/timeutil.h"
#include "subprocess.h"
#include "workspace.h"

#define DIFF_DEPTH_MAX 256
#define IO_CHUNK 65536
#define TOOL_MIN_MS 1000
/* git's blob id of the empty file */
#define EMPTY_BLOB "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
#define NULL_BLOB "0000000000000000000000000000000000000000"

struct entry {
        char *path;
        mode_t mode;
        off_t size;
};

struct tree {
        struct entry *v;
        size_t n, cap, seen; /* seen: every entry walked, directories included */
        bool over;           /* more than max_files: the rest was not walked */
        bool timed_out;
};

/* what one diff run collects besides git's output */
struct diff_state {
        const struct workspace_diff_limits *lim;
        int64_t deadline;
        json_t *truncated;
        char *extra;         /* our own headers (empty files, files not diffed) */
        size_t extra_len, extra_cap;
        size_t staged;
};

static void tree_free(struct tree *t) {
        for (size_t i = 0; i < t->n; i++)
                free(t->v[i].path);
        free(t->v);
        *t = (struct tree){0};
}

static int tree_add(struct tree *t, const char *path, const struct stat *st) {
        if (t->n == t->cap) {
                size_t ncap = t->cap ? t->cap * 2 : 256;
                struct entry *nv = realloc(t->v, ncap * sizeof *nv);
                if (!nv)
                        return -ENOMEM;
                t->v = nv;
                t->cap = ncap;
        }
        char *p = strdup(path);
        if (!p)
                return -ENOMEM;
        t->v[t->n++] = (struct entry){.path = p, .mode = st->st_mode, .size = st->st_size};
        return 0;
}

/* Walks the directory dfd (owned by the caller) without following symlinks
 * or entering another filesystem, adding every non-directory. Stops at
 * max entries (t->over) or the deadline (t->timed_out). */
static int walk(int dfd, const char *prefix, dev_t dev, struct tree *t, size_t max, int depth, int64_t deadline) {
        int fd = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return -errno;
        DIR *d = fdopendir(fd);
        if (!d) {
                int r = -errno;
                close(fd);
                return r;
        }
        int r = 0;
        for (struct dirent *de; r >= 0 && !t->over && !t->timed_out && (de = readdir(d));) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                if (++t->seen > max) {
                        t->over = true;
                        break;
                }
                if ((t->seen & 1023) == 0 && time_mono_us() > deadline) {
                        t->timed_out = true;
                        break;
                }
                struct stat st;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue; /* nothing changes the tree any more: vanished means never there */
                _cleanup_free_ char *path = NULL;
                if (asprintf(&path, "%s%s%s", prefix, prefix[0] ? "/" : "", de->d_name) < 0) {
                        r = -ENOMEM;
                        break;
                }
                if (S_ISDIR(st.st_mode)) {
                        if (st.st_dev != dev || depth >= DIFF_DEPTH_MAX) {
                                t->over = t->over || depth >= DIFF_DEPTH_MAX;
                                continue;
                        }
                        _cleanup_close_ int sub = openat(dirfd(d), de->d_name,
                                                         O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (sub >= 0)
                                r = walk(sub, path, dev, t, max, depth + 1, deadline);
                        continue;
                }
                r = tree_add(t, path, &st);
        }
        closedir(d);
        return r;
}

static int entry_cmp(const void *a, const void *b) {
        return strcmp(((const struct entry *)a)->path, ((const struct entry *)b)->path);
}

static int read_tree(const char *root, size_t max, int64_t deadline, struct tree *t, int *ret_fd) {
        int fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        struct stat st;
        int r = fstat(fd, &st) < 0 ? -errno : walk(fd, "", st.st_dev, t, max, 0, deadline);
        if (r < 0) {
                close(fd);
                return r;
        }
        if (t->n > 1)
                qsort(t->v, t->n, sizeof *t->v, entry_cmp);
        *ret_fd = fd;
        return 0;
}

/* 1: same bytes (or link target), 0: different, < 0: error or deadline */
static int same_content(int afd, int bfd, const struct entry *a, const struct entry *b, int64_t deadline) {
        if ((a->mode & S_IFMT) != (b->mode & S_IFMT))
                return 0;
        if (S_ISLNK(a->mode)) {
                char la[4097], lb[4097];
                ssize_t na = readlinkat(afd, a->path, la, sizeof la);
                ssize_t nb = readlinkat(bfd, b->path, lb, sizeof lb);
                return na >= 0 && na == nb && !memcmp(la, lb, (size_t)na);
        }
        if (!S_ISREG(a->mode))
                return 1; /* special files have no content */
        if (a->size != b->size)
                return 0;
        _cleanup_close_ int fa = openat(afd, a->path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        _cleanup_close_ int fb = openat(bfd, b->path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fa < 0 || fb < 0)
                return 0;
        _cleanup_free_ char *ba = malloc(IO_CHUNK), *bb = malloc(IO_CHUNK);
        if (!ba || !bb)
                return -ENOMEM;
        for (;;) {
                ssize_t na = read(fa, ba, IO_CHUNK), nb = read(fb, bb, IO_CHUNK);
                if (na < 0 || nb < 0 || na != nb || memcmp(ba, bb, (size_t)na))
                        return 0;
                if (na == 0)
                        return 1;
                if (time_mono_us() > deadline)
                        return -ETIMEDOUT;
        }
}

/* Lower-case hex SHA-256 of the file, streamed; false past the deadline. */
static bool file_sha256(int dfd, const char *path, int64_t deadline, char hex[65]) {
        _cleanup_close_ int fd = openat(dfd, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        _cleanup_free_ unsigned char *buf = malloc(IO_CHUNK);
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        bool ok = fd >= 0 && buf && ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;
        while (ok) {
                ssize_t n = read(fd, buf, IO_CHUNK);
                if (n <= 0) {
                        ok = n == 0;
                        break;
                }
                ok = EVP_DigestUpdate(ctx, buf, (size_t)n) == 1 && time_mono_us() <= deadline;
        }
        unsigned char md[32];
        unsigned int mdl = 0;
        ok = ok && EVP_DigestFinal_ex(ctx, md, &mdl) == 1 && mdl == 32;
        EVP_MD_CTX_free(ctx);
        for (unsigned i = 0; ok && i < 32; i++)
                snprintf(hex + 2 * i, 3, "%02x", md[i]);
        return ok;
}

static bool noted(const struct diff_state *s, const char *reason) {
        for (size_t i = 0; i < json_array_size(s->truncated); i++)
                if (!strcmp(json_string_value(json_object_get(json_array_get(s->truncated, i), "reason")), reason))
                        return true;
        return false;
}

static void note(struct diff_state *s, json_t *o) {
        if (o)
                json_array_append_new(s->truncated, o);
}

static int extra_printf(struct diff_state *s, const char *fmt, ...) _printf_(2, 3);
static int extra_printf(struct diff_state *s, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        _cleanup_free_ char *line = NULL;
        int n = vasprintf(&line, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -ENOMEM;
        if (s->extra_len + (size_t)n + 1 > s->extra_cap) {
                size_t ncap = s->extra_cap ? s->extra_cap * 2 : 4096;
                while (ncap < s->extra_len + (size_t)n + 1)
                        ncap *= 2;
                char *nb = realloc(s->extra, ncap);
                if (!nb)
                        return -ENOMEM;
                s->extra = nb;
                s->extra_cap = ncap;
        }
        memcpy(s->extra + s->extra_len, line, (size_t)n + 1);
        s->extra_len += (size_t)n;
        return 0;
}

/* side + path as git writes it (core.quotepath=false): in C-style quotes
 * when it holds a control character, '"' or '\\', so a file name cannot
 * forge diff lines. Returns a malloc'd string or NULL. */
static char *quote_path(const char *side, const char *path) {
        bool need = false;
        for (const unsigned char *p = (const unsigned char *)path; *p && !need; p++)
                need = *p < 0x20 || *p == '"' || *p == '\\' || *p == 0x7f;
        char *out = malloc(strlen(side) + strlen(path) * 4 + 3);
        if (!out)
                return NULL;
        char *w = out;
        if (need)
                *w++ = '"';
        w = stpcpy(w, side);
        for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
                static const char esc[] = "abtnvfr"; /* \a (7) .. \r (13) */
                if (!need || (*p >= 0x20 && *p != '"' && *p != '\\' && *p != 0x7f))
                        *w++ = (char)*p;
                else if (*p == '"' || *p == '\\')
                        *w++ = '\\', *w++ = (char)*p;
                else if (*p >= 7 && *p <= 13)
                        *w++ = '\\', *w++ = esc[*p - 7];
                else
                        w += sprintf(w, "\\%03o", *p);
        }
        if (need)
                *w++ = '"';
        *w = 0;
        return out;
}

static const char *git_mode(mode_t m) {
        if (S_ISLNK(m))
                return "120000";
        return m & S_IXUSR ? "100755" : "100644";
}

static const char *kind_of(mode_t m) {
        return S_ISFIFO(m) ? "a fifo" : S_ISSOCK(m) ? "a socket" : S_ISCHR(m) || S_ISBLK(m) ? "a device" : "special";
}

/* The `diff --git` header of one path with its new/deleted/mode lines. */
static int header(struct diff_state *s, const char *path, const struct entry *a, const struct entry *b) {
        _cleanup_free_ char *qa = quote_path("a/", path), *qb = quote_path("b/", path);
        if (!qa || !qb)
                return -ENOMEM;
        int r = extra_printf(s, "diff --git %s %s\n", qa, qb);
        if (r < 0 || (!a && !b))
                return r;
        if (!a)
                r = extra_printf(s, "new file mode %s\n", git_mode(b->mode));
        else if (r >= 0 && !b)
                r = extra_printf(s, "deleted file mode %s\n", git_mode(a->mode));
        else if (r >= 0 && strcmp(git_mode(a->mode), git_mode(b->mode)))
                r = extra_printf(s, "old mode %s\nnew mode %s\n", git_mode(a->mode), git_mode(b->mode));
        return r;
}

/* A changed file too large to diff: its header, size and SHA-256. */
static int too_big(struct diff_state *s, int afd, int bfd, const char *path, const struct entry *a,
                   const struct entry *b) {
        const struct entry *e = b ? b : a;
        char hex[65] = "";
        bool hashed = file_sha256(b ? bfd : afd, path, s->deadline, hex);
        int r = header(s, path, a, b);
        if (r >= 0)
                r = extra_printf(s, "# paddock: not diffed: %s is %lld bytes, more than the %" PRIu64
                                 "-byte limit%s%s\n", b ? "b" : "a", (long long)e->size,
                                 s->lim->max_file_bytes, hashed ? "; sha256 " : "", hex);
        json_t *o = json_pack("{s:s,s:o,s:I,s:I,s:s}", "reason", "file_size", "path",
                              capture_json_string(path, strlen(path)), "size",
                              (json_int_t)e->size, "limit", (json_int_t)s->lim->max_file_bytes, "detail",
                              "a changed file larger than the limit: listed with its size and sha256, not diffed");
        if (o && hashed)
                json_object_set_new(o, "sha256", json_string(hex));
        note(s, o);
        return r;
}

/* Copies a baseline entry (a root-owned file of the definition's) into the stage. */
static int stage_copy(int from_dir, int to_root, const struct entry *e) {
        _cleanup_free_ char *rel = strdup(e->path);
        if (!rel)
                return -ENOMEM;
        const char *base;
        _cleanup_close_ int dfd = workspace_open_parent(to_root, rel, NULL, &base);
        if (dfd < 0)
                return dfd;
        if (S_ISLNK(e->mode)) {
                char target[4097];
                ssize_t n = readlinkat(from_dir, e->path, target, sizeof target - 1);
                if (n < 0)
                        return -errno;
                target[n] = 0;
                return symlinkat(target, dfd, base) < 0 ? -errno : 0;
        }
        _cleanup_close_ int in = openat(from_dir, e->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (in < 0)
                return -errno;
        _cleanup_close_ int out = openat(dfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (out < 0)
                return -errno;
        char buf[IO_CHUNK];
        for (ssize_t n; (n = read(in, buf, sizeof buf)) != 0;) {
                if (n < 0)
                        return -errno;
                for (ssize_t off = 0; off < n;) {
                        ssize_t w = write(out, buf + off, (size_t)(n - off));
                        if (w < 0)
                                return -errno;
                        off += w;
                }
        }
        return fchmod(out, e->mode & 07777) < 0 ? -errno : 0;
}

/* Hard-links a workspace entry into the stage (same tmpfs: no bytes copied;
 * linkat does not follow a symlink, the walk saw no symlinked directory). */
static int stage_link(int from_dir, int to_root, const struct entry *e) {
        _cleanup_free_ char *rel = strdup(e->path);
        if (!rel)
                return -ENOMEM;
        const char *base;
        _cleanup_close_ int dfd = workspace_open_parent(to_root, rel, NULL, &base);
        if (dfd < 0)
                return dfd;
        return linkat(from_dir, e->path, dfd, base, 0) < 0 ? -errno : 0;
}

static bool diffable(const struct entry *e) {
        return !e || S_ISREG(e->mode) || S_ISLNK(e->mode);
}

/* One changed path: our own header, or staged for git. */
static int one_change(struct diff_state *s, int afd, int bfd, int stage_a, int stage_b, const char *path,
                      const struct entry *a, const struct entry *b) {
        if (!diffable(a) || !diffable(b)) {
                int r = header(s, path, NULL, NULL);
                return r < 0 ? r : extra_printf(s, "# paddock: not diffed: %s is %s\n", !diffable(b) ? "b" : "a",
                                                kind_of(!diffable(b) ? b->mode : a->mode));
        }
        if ((a && S_ISREG(a->mode) && (uint64_t)a->size > s->lim->max_file_bytes) ||
            (b && S_ISREG(b->mode) && (uint64_t)b->size > s->lim->max_file_bytes))
                return too_big(s, afd, bfd, path, a, b);
        /* git --no-index would pair an added and a removed empty file as a
         * rename; git proper shows them as what they are */
        const struct entry *only = a && !b ? a : !a && b ? b : NULL;
        if (only && S_ISREG(only->mode) && only->size == 0) {
                int r = header(s, path, a, b);
                return r < 0 ? r : extra_printf(s, "index %s..%s\n", a ? EMPTY_BLOB : NULL_BLOB,
                                                a ? NULL_BLOB : EMPTY_BLOB);
        }
        int r = 0;
        if (a)
                r = stage_copy(afd, stage_a, a);
        if (r >= 0 && b)
                r = stage_link(bfd, stage_b, b);
        if (r < 0) {
                note(s, json_pack("{s:s,s:o,s:s}", "reason", "staging", "path", capture_json_string(path, strlen(path)),
                                  "detail", strerror(-r)));
                return 0;
        }
        s->staged++;
        return 0;
}

/* Rewrites git's "rename from a/x" (and to/copy) to git's usual "rename from
 * x". Header lines are told apart from content by counting hunk lines, as
 * only lines outside hunks are headers. In place; never longer. */
static size_t relabel(char *buf, size_t len) {
        static const struct {
                const char *prefix, *side;
        } heads[] = {{"rename from ", "a/"}, {"rename to ", "b/"}, {"copy from ", "a/"}, {"copy to ", "b/"}};
        char *w = buf;
        const char *r = buf, *end = buf + len;
        long old_left = 0, new_left = 0;
        while (r < end) {
                const char *nl = memchr(r, '\n', (size_t)(end - r));
                size_t l = nl ? (size_t)(nl - r) + 1 : (size_t)(end - r);
                char *line = memmove(w, r, l);
                r += l;
                if (old_left > 0 || new_left > 0) {
                        if (line[0] == ' ')
                                old_left--, new_left--;
                        else if (line[0] == '-')
                                old_left--;
                        else if (line[0] == '+')
                                new_left--;
                        w += l;
                        continue;
                }
                if (l >= 4 && !memcmp(line, "@@ -", 4)) {
                        char tmp[128];
                        size_t c = l < sizeof tmp - 1 ? l : sizeof tmp - 1;
                        memcpy(tmp, line, c);
                        tmp[c] = 0;
                        long os, ol = 1, ns, nl2 = 1;
                        if (sscanf(tmp, "@@ -%ld,%ld +%ld,%ld @@", &os, &ol, &ns, &nl2) != 4) {
                                ol = nl2 = 1;
                                if (sscanf(tmp, "@@ -%ld +%ld,%ld @@", &os, &ns, &nl2) != 3 &&
                                    sscanf(tmp, "@@ -%ld,%ld +%ld @@", &os, &ol, &ns) == 3)
                                        nl2 = 1;
                        }
                        old_left = ol;
                        new_left = nl2;
                        w += l;
                        continue;
                }
                if (l > 11 && !memcmp(line, "diff --git ", 11)) {
                        /* an added file is "b/x b/x", a removed one "a/x a/x":
                         * both halves the same, the first a/, the second b/ */
                        char *names = line + 11;
                        size_t nl_ = l - 11 - (line[l - 1] == '\n');
                        size_t half = (nl_ - 1) / 2;
                        if (nl_ % 2 == 1 && names[half] == ' ' && !memcmp(names, names + half + 1, half)) {
                                size_t q = names[0] == '"';
                                if (!memcmp(names + q, "b/", 2))
                                        names[q] = 'a';
                                else if (!memcmp(names + half + 1 + q, "a/", 2))
                                        names[half + 1 + q] = 'b';
                        }
                        w += l;
                        continue;
                }
                for (size_t i = 0; i < ELEMENTSOF(heads); i++) {
                        size_t pl = strlen(heads[i].prefix);
                        if (l < pl + 2 || memcmp(line, heads[i].prefix, pl))
                                continue;
                        /* quoted names: rename from "a/..." */
                        size_t at = pl + (line[pl] == '"');
                        if (l >= at + 2 && !memcmp(line + at, heads[i].side, 2)) {
                                memmove(line + at, line + at + 2, l - at - 2);
                                l -= 2;
                        }
                        break;
                }
                w += l;
        }
        return (size_t)(w - buf);
}

/* Grows the workspace tmpfs so staging fits even when the agent filled it:
 * the copies of the baseline's files and a directory per staged path. */
static void grow_workspace(const char *workspace, uint64_t disk_mb, uint64_t extra_bytes, size_t extra_inodes) {
        char opts[128];
        uint64_t mb = disk_mb + extra_bytes / (1024 * 1024) + 16;
        snprintf(opts, sizeof opts, "size=%" PRIu64 "m,nr_inodes=%" PRIu64, mb,
                 disk_mb * 256 + (uint64_t)extra_inodes * 2 + 1024);
        (void)mount(NULL, workspace, NULL, MS_REMOUNT | MS_NOSUID | MS_NODEV, opts);
}

static int run_git(struct diff_state *s, const char *stage_dir, const char *workspace, char **out, size_t *len) {
        const struct workspace_diff_limits *lim = s->lim;
        char as[64], uid[32], gid[32], ceiling[4200], rename_limit[64];
        snprintf(as, sizeof as, "--as=%" PRIu64, lim->memory_bytes);
        snprintf(uid, sizeof uid, "--reuid=%u", (unsigned)lim->uid);
        snprintf(gid, sizeof gid, "--regid=%u", (unsigned)lim->gid);
        snprintf(ceiling, sizeof ceiling, "GIT_CEILING_DIRECTORIES=%s", workspace);
        /* git's own default: beyond it only exact renames are found, as
         * inexact detection is quadratic in the number of files */
        snprintf(rename_limit, sizeof rename_limit, "diff.renameLimit=%d", 1000);
        /* prlimit caps memory (and no core files), setpriv drops to the run's
         * nobody with nothing but CAP_DAC_READ_SEARCH, env -i leaves git no
         * setting of anyone's but ours: no system or global config, no
         * repository above the stage (the workspace may hold a .git with
         * filters), no pager, no external diff or textconv programs */
        char *argv[] = {"/usr/bin/prlimit", as, "--core=0", "--nofile=256", "--",
                        "/usr/bin/setpriv", uid, gid, "--clear-groups", "--no-new-privs",
                        "--inh-caps=-all,+dac_read_search", "--ambient-caps=-all,+dac_read_search",
                        "--bounding-set=-all,+dac_read_search", "--",
                        "/usr/bin/env", "-i", "PATH=/usr/bin:/bin", "LANG=C.UTF-8", "HOME=/nonexistent",
                        "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_ATTR_NOSYSTEM=1", ceiling,
                        (char *)lim->git, "--no-pager", "-c", "core.quotepath=false", "-c", rename_limit,
                        "diff", "--no-index", "--no-ext-diff", "--no-textconv", "--no-color", "-M",
                        "--full-index", "--no-prefix", "a", "b", NULL};
        char err[512];
        int64_t left_ms = (s->deadline - time_mono_us()) / 1000;
        int r = subprocess_run(argv, stage_dir, out, len, lim->max_output, err, sizeof err,
                               left_ms > TOOL_MIN_MS ? (int)left_ms : TOOL_MIN_MS);
        if (r == 0 || r == 1)
                return 0;
        if (r == -ETIMEDOUT)
                note(s, json_pack("{s:s,s:i,s:s}", "reason", "timeout", "limit", lim->timeout_ms / 1000, "detail",
                                  "the diff did not finish in time; what it wrote so far is kept"));
        else if (r == -EFBIG)
                note(s, json_pack("{s:s,s:I,s:s}", "reason", "output", "limit", (json_int_t)lim->max_output,
                                  "detail", "the diff is larger than the limit; its first bytes are kept"));
        else if (r < 0)
                return r; /* could not start it at all */
        else if (strstr(err, "Out of memory") || strstr(err, "out of memory") || strstr(err, "Cannot allocate"))
                note(s, json_pack("{s:s,s:I,s:s}", "reason", "memory", "limit", (json_int_t)lim->memory_bytes,
                                  "detail", err));
        else {
                char d[600];
                snprintf(d, sizeof d, "git exited %d: %s", r, err);
                note(s, json_pack("{s:s,s:s}", "reason", "tool", "detail", d));
        }
        return 0;
}

static int make_stage(int ws_fd, char *name, size_t size) {
        for (int i = 0; i < 16; i++) {
                uint64_t rnd;
                if (getrandom(&rnd, sizeof rnd, 0) != sizeof rnd)
                        return -EIO;
                snprintf(name, size, ".paddock-diff-%016" PRIx64, rnd);
                if (mkdirat(ws_fd, name, 0755) == 0)
                        return 0;
                if (errno != EEXIST)
                        return -errno;
        }
        return -EEXIST;
}

int workspace_diff_run(const char *run_dir, const struct workspace_diff_limits *lim, struct workspace_diff *out,
                       struct err_detail *reterr) {
        struct diff_state s = {.lim = lim, .deadline = time_mono_us() + (int64_t)lim->timeout_ms * 1000,
                               .truncated = json_array()};
        struct tree ta = {0}, tb = {0};
        _cleanup_free_ char *baseline = NULL, *workspace = NULL, *stage_path = NULL, *git_out = NULL;
        _cleanup_close_ int afd = -1, bfd = -1, stage_fd = -1, stage_a = -1, stage_b = -1;
        size_t git_len = 0;
        int r;
        *out = (struct workspace_diff){0};
        if (!s.truncated || asprintf(&baseline, "%s/baseline", run_dir) < 0 ||
            asprintf(&workspace, "%s/workspace", run_dir) < 0) {
                r = err_set(reterr, -ENOMEM, "diff", "out of memory");
                goto done;
        }
        r = read_tree(baseline, lim->max_files, s.deadline, &ta, &afd);
        if (r >= 0)
                r = read_tree(workspace, lim->max_files, s.deadline, &tb, &bfd);
        if (r < 0) {
                err_set(reterr, r, "diff", "could not read the workspace: %s", strerror(-r));
                goto done;
        }
        if (ta.over || tb.over)
                note(&s, json_pack("{s:s,s:I,s:s}", "reason", "files", "limit", (json_int_t)lim->max_files, "detail",
                                   "more files than the limit: only the first ones walked were compared"));
        bool timed_out = ta.timed_out || tb.timed_out;

        /* what staging may need */
        uint64_t base_bytes = 0;
        for (size_t i = 0; i < ta.n; i++)
                base_bytes += S_ISREG(ta.v[i].mode) ? (uint64_t)ta.v[i].size : 0;
        grow_workspace(workspace, lim->disk_mb, base_bytes, ta.n + tb.n);
        char stage_name[64];
        r = make_stage(bfd, stage_name, sizeof stage_name);
        if (r >= 0 && ((stage_fd = openat(bfd, stage_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
                       mkdirat(stage_fd, "a", 0755) < 0 || mkdirat(stage_fd, "b", 0755) < 0 ||
                       (stage_a = openat(stage_fd, "a", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
                       (stage_b = openat(stage_fd, "b", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0))
                r = -errno;
        if (r < 0 || asprintf(&stage_path, "%s/%s", workspace, stage_name) < 0) {
                r = err_set(reterr, r < 0 ? r : -ENOMEM, "diff", "could not stage the diff: %s",
                            strerror(r < 0 ? -r : ENOMEM));
                goto done;
        }

        /* merge the two sorted lists */
        size_t i = 0, k = 0;
        while ((i < ta.n || k < tb.n) && r >= 0) {
                if (!timed_out && time_mono_us() > s.deadline)
                        timed_out = true;
                if (timed_out)
                        break;
                int c = i >= ta.n ? 1 : k >= tb.n ? -1 : strcmp(ta.v[i].path, tb.v[k].path);
                const struct entry *a = c <= 0 ? &ta.v[i] : NULL, *b = c >= 0 ? &tb.v[k] : NULL;
                i += c <= 0;
                k += c >= 0;
                if (a && b) {
                        int same = same_content(afd, bfd, a, b, s.deadline);
                        if (same == -ETIMEDOUT) {
                                timed_out = true;
                                break;
                        }
                        if (same > 0 && a->mode == b->mode)
                                continue;
                }
                r = one_change(&s, afd, bfd, stage_a, stage_b, a ? a->path : b->path, a, b);
        }
        if (r < 0) {
                err_set(reterr, r, "diff", "could not compare the workspace: %s", strerror(-r));
                goto done;
        }
        if (timed_out)
                note(&s, json_pack("{s:s,s:i,s:s}", "reason", "timeout", "limit", lim->timeout_ms / 1000, "detail",
                                   "the diff did not finish in time: later paths were not compared"));

        if (s.staged > 0 && !timed_out) {
                r = run_git(&s, stage_path, workspace, &git_out, &git_len);
                if (r < 0) {
                        err_set(reterr, r, "diff", "could not run %s: %s", lim->git, strerror(-r));
                        goto done;
                }
        }
        git_len = git_out ? relabel(git_out, git_len) : 0;

        /* git's output, then our headers, within max_output */
        size_t total = git_len + s.extra_len;
        if (total > lim->max_output) {
                total = lim->max_output;
                if (!noted(&s, "output"))
                        note(&s, json_pack("{s:s,s:I,s:s}", "reason", "output", "limit", (json_int_t)lim->max_output,
                                           "detail", "the diff is larger than the limit; its first bytes are kept"));
        }
        char *text = malloc(total + 1);
        if (!text) {
                r = err_set(reterr, -ENOMEM, "diff", "out of memory");
                goto done;
        }
        size_t gl = git_len < total ? git_len : total;
        if (gl)
                memcpy(text, git_out, gl);
        if (total > gl)
                memcpy(text + gl, s.extra, total - gl);
        text[total] = 0;
        *out = (struct workspace_diff){.text = text, .len = total, .truncated = TAKE_PTR(s.truncated)};
        r = 0;
done:
        tree_free(&ta);
        tree_free(&tb);
        free(s.extra);
        json_decref(s.truncated);
        return r;
}

void workspace_diff_done(struct workspace_diff *d) {
        free(d->text);
        json_decref(d->truncated);
        *d = (struct workspace_diff){0};
}
