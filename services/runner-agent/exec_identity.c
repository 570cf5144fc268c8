#include "exec_identity.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/macro.h"

#define PROGRAMS_MAX 20000
#define HASH_CACHE_MAX 256

const char *const exec_identity_path_dirs[] = {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin",
                                               "/sbin", "/bin", NULL};

struct file_key {
        dev_t dev;
        ino_t ino;
        off_t size;
        struct timespec mtime;
};

struct program {
        char name[EXEC_IDENTITY_NAME_MAX + 1];
        char dir[32];
        struct file_key key;
        bool hashed, hash_failed;
        unsigned char sha[32];
};

struct hashed_file {
        struct file_key key;
        unsigned char sha[32];
};

struct exec_identity {
        bool indexed;
        struct program *progs;
        size_t n_progs;
        struct hashed_file cache[HASH_CACHE_MAX]; /* files that are not image programs, round robin */
        size_t n_cache, next_cache;
};

struct exec_identity *exec_identity_new(void) {
        return calloc(1, sizeof(struct exec_identity));
}

struct exec_identity *exec_identity_free(struct exec_identity *ei) {
        if (ei) {
                free(ei->progs);
                free(ei);
        }
        return NULL;
}

static struct file_key key_of(const struct stat *st) {
        return (struct file_key){.dev = st->st_dev, .ino = st->st_ino, .size = st->st_size, .mtime = st->st_mtim};
}

static bool key_eq(const struct file_key *a, const struct file_key *b) {
        return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime.tv_sec == b->mtime.tv_sec &&
               a->mtime.tv_nsec == b->mtime.tv_nsec;
}

static bool same_key(const struct file_key *k, const struct stat *st) {
        struct file_key o = key_of(st);
        return key_eq(k, &o);
}

static int sha256_fd(int fd, unsigned char out[32]) {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        if (!ctx)
                return -ENOMEM;
        int r = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 ? 0 : -EIO;
        unsigned char buf[65536];
        for (off_t off = 0; r == 0;) {
                ssize_t n = pread(fd, buf, sizeof buf, off);
                if (n < 0) {
                        r = -errno;
                        break;
                }
                if (n == 0)
                        break;
                if (EVP_DigestUpdate(ctx, buf, (size_t)n) != 1)
                        r = -EIO;
                off += n;
        }
        unsigned len = 32;
        if (r == 0 && EVP_DigestFinal_ex(ctx, out, &len) != 1)
                r = -EIO;
        EVP_MD_CTX_free(ctx);
        return r;
}

static int open_in_root(int root_fd, const char *path, uint64_t flags) {
        struct open_how how = {.flags = flags | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
        int fd = (int)syscall(SYS_openat2, root_fd, path, &how, sizeof how);
        return fd < 0 ? -errno : fd;
}

/* Lists the regular executable files of the PATH directories once. A
 * directory that is a symlink to another (merged /usr: /bin → usr/bin) gives
 * the same (dev, ino) twice: kept once. */
static int build_index(struct exec_identity *ei, int root_fd) {
        size_t cap = 0;
        ei->indexed = true;
        for (size_t d = 0; exec_identity_path_dirs[d]; d++) {
                int dfd = open_in_root(root_fd, exec_identity_path_dirs[d], O_RDONLY | O_DIRECTORY);
                if (dfd < 0)
                        continue;
                DIR *dir = fdopendir(dfd);
                if (!dir) {
                        close(dfd);
                        continue;
                }
                struct dirent *de;
                while ((de = readdir(dir)) && ei->n_progs < PROGRAMS_MAX) {
                        struct stat st;
                        if (de->d_name[0] == '.' || strlen(de->d_name) > EXEC_IDENTITY_NAME_MAX ||
                            fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                            !S_ISREG(st.st_mode) || !(st.st_mode & 0111) || st.st_size == 0)
                                continue;
                        struct file_key k = key_of(&st);
                        bool dup = false;
                        for (size_t i = 0; i < ei->n_progs && !dup; i++)
                                dup = key_eq(&ei->progs[i].key, &k) && !strcmp(ei->progs[i].name, de->d_name);
                        if (dup)
                                continue;
                        if (ei->n_progs == cap) {
                                size_t nc = cap ? cap * 2 : 256;
                                struct program *np = realloc(ei->progs, nc * sizeof *np);
                                if (!np) {
                                        closedir(dir);
                                        return -ENOMEM;
                                }
                                ei->progs = np;
                                cap = nc;
                        }
                        struct program *p = &ei->progs[ei->n_progs++];
                        *p = (struct program){.key = k};
                        snprintf(p->name, sizeof p->name, "%s", de->d_name);
                        snprintf(p->dir, sizeof p->dir, "%s", exec_identity_path_dirs[d]);
                }
                closedir(dir);
        }
        return 0;
}

/* The hash of an image program, read once (through the root: never a path
 * the sandbox could redirect outside it). */
static bool program_hash(struct program *p, int root_fd) {
        if (p->hashed || p->hash_failed)
                return p->hashed;
        char path[sizeof p->dir + EXEC_IDENTITY_NAME_MAX + 2];
        snprintf(path, sizeof path, "%s/%s", p->dir, p->name);
        _cleanup_close_ int fd = open_in_root(root_fd, path, O_RDONLY | O_NOFOLLOW);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0 || !same_key(&p->key, &st) ||
            sha256_fd(fd, p->sha) < 0) {
                p->hash_failed = true;
                return false;
        }
        p->hashed = true;
        return true;
}

static int add_name(char names[EXEC_IDENTITY_NAMES_MAX][EXEC_IDENTITY_NAME_MAX + 1], int n, const char *name) {
        for (int i = 0; i < n; i++)
                if (!strcmp(names[i], name))
                        return n;
        if (n >= EXEC_IDENTITY_NAMES_MAX)
                return n;
        snprintf(names[n], EXEC_IDENTITY_NAME_MAX + 1, "%s", name);
        return n + 1;
}

int exec_identity_names(struct exec_identity *ei, int root_fd, int fd,
                        char names[EXEC_IDENTITY_NAMES_MAX][EXEC_IDENTITY_NAME_MAX + 1]) {
        if (!ei->indexed) {
                int r = build_index(ei, root_fd);
                if (r < 0)
                        return r;
        }
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return 0;
        struct file_key k = key_of(&st);
        int n = 0;
        bool any_same_size = false;
        /* the image program itself (or a hard link to it): no reading */
        for (size_t i = 0; i < ei->n_progs; i++) {
                if (key_eq(&ei->progs[i].key, &k))
                        n = add_name(names, n, ei->progs[i].name);
                else if (ei->progs[i].key.size == k.size)
                        any_same_size = true;
        }
        if (!any_same_size)
                return n;
        /* a copy: same content as an image program of the same size */
        const unsigned char *sha = NULL;
        for (size_t i = 0; i < ei->n_cache && !sha; i++)
                if (key_eq(&ei->cache[i].key, &k))
                        sha = ei->cache[i].sha;
        if (!sha) {
                unsigned char fresh[32];
                int r = sha256_fd(fd, fresh);
                if (r < 0)
                        return n > 0 ? n : r;
                struct hashed_file *h = &ei->cache[ei->next_cache];
                h->key = k;
                memcpy(h->sha, fresh, sizeof fresh);
                ei->next_cache = (ei->next_cache + 1) % HASH_CACHE_MAX;
                if (ei->n_cache < HASH_CACHE_MAX)
                        ei->n_cache++;
                sha = h->sha;
        }
        for (size_t i = 0; i < ei->n_progs; i++) {
                struct program *p = &ei->progs[i];
                if (p->key.size == k.size && !key_eq(&p->key, &k) && program_hash(p, root_fd) &&
                    !memcmp(p->sha, sha, 32))
                        n = add_name(names, n, p->name);
        }
        return n;
}
