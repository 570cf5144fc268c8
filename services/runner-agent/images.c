#include "images.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/macro.h"

#define IMAGES_SUITE "bookworm"
#define IMAGES_DEFAULT_MIRROR "http://deb.debian.org/debian"
/* bumped whenever the build steps change what a recipe produces */
#define IMAGES_FORMAT 2 /* 2: /home/agent, the agent CLIs' HOME mount point (agent_cli.h) */

/* The catalog: every image this node can build, in one table. */
struct image_recipe {
        const char *name;
        const char *description;
        const char *include;           /* extra Debian packages, comma-separated (apt-get in the image) */
        const char *const *npm;        /* npm packages installed globally inside the rootfs */
};

static const struct image_recipe image_recipes[] = {
        {"debian-minimal", "Debian " IMAGES_SUITE " minbase", NULL, NULL},
        {"debian-python", "Debian " IMAGES_SUITE " minbase with python3", "python3", NULL},
        /* Debian's Node.js 18 is enough: Claude Code 2.1.197 ships a native
         * binary (its npm postinstall only needs node >= 18) and Codex's
         * codex.js wants node >= 16 before it execs its own binary. The CLI
         * versions are pinned so the recipe hash names what the image holds
         * (docs/CONTRACTS.md "Agent adapters"). */
        {"node-agents", "Debian " IMAGES_SUITE " minbase with Node.js and the agent CLIs",
         "nodejs,npm,ca-certificates,git,ripgrep,procps",
         (const char *const[]){"@anthropic-ai/claude-code@2.1.197", "@openai/codex@0.171.0", NULL}},
};

/* Files the runner bind-mounts over the image's /etc (sandbox.c); they must be
 * plain files in the image so the bind targets exist and are no symlinks. */
static const char *const image_etc_files[] = {"passwd", "group", "hosts", "resolv.conf", "hostname",
                                              "nsswitch.conf", NULL};

/* A sandbox needs none of these; they are a third of a minbase tree. */
static const char *const image_strip[] = {"var/lib/apt/lists", "var/cache/apt", "var/cache/debconf/templates.dat-old",
                                          "usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/lintian",
                                          "root/.npm", "root/.cache", NULL};

static const struct image_recipe *recipe_find(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(image_recipes); i++)
                if (!strcmp(image_recipes[i].name, name))
                        return &image_recipes[i];
        return NULL;
}

/* The canonical text a recipe hashes to: what was asked, not how it went. */
static char *recipe_text(const struct image_recipe *rc) {
        char *s = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&s, &len);
        if (!f)
                return NULL;
        fprintf(f, "paddock-image-format %d\nname %s\nsuite %s\nvariant minbase\ninclude %s\n", IMAGES_FORMAT,
                rc->name, IMAGES_SUITE, rc->include ? rc->include : "");
        for (const char *const *p = rc->npm; p && *p; p++)
                fprintf(f, "npm %s\n", *p);
        for (const char *const *p = image_strip; *p; p++)
                fprintf(f, "strip %s\n", *p);
        fprintf(f, "strip set-id bits\n");
        if (fclose(f) != 0) {
                free(s);
                return NULL;
        }
        return s;
}

static void sha256_hex(const void *data, size_t len, char out[65]) {
        unsigned char md[32];
        unsigned int n = 0;
        EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
        for (unsigned i = 0; i < 32; i++)
                snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static bool is_hex64(const char *s) {
        size_t i = 0;
        for (; s[i]; i++)
                if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
                        return false;
        return i == 64;
}

/* ---------------------------------------------------------------- files */

static int mkdir_p(const char *path, mode_t mode) {
        char buf[4096];
        if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
                return -ENAMETOOLONG;
        for (char *p = buf + 1; *p; p++)
                if (*p == '/') {
                        *p = 0;
                        if (mkdir(buf, mode) < 0 && errno != EEXIST)
                                return -errno;
                        *p = '/';
                }
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

static int write_file_atomic(const char *path, const char *content, mode_t mode) {
        _cleanup_free_ char *tmp = NULL;
        if (asprintf(&tmp, "%s.tmp.%d", path, (int)getpid()) < 0)
                return -ENOMEM;
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return -errno;
        size_t len = strlen(content), off = 0;
        while (off < len) {
                ssize_t n = write(fd, content + off, len - off);
                if (n < 0) {
                        int e = -errno;
                        close(fd);
                        unlink(tmp);
                        return e;
                }
                off += (size_t)n;
        }
        if (fsync(fd) < 0 || close(fd) < 0) {
                int e = -errno;
                unlink(tmp);
                return e;
        }
        if (rename(tmp, path) < 0) {
                int e = -errno;
                unlink(tmp);
                return e;
        }
        return 0;
}

/* debootstrap mounts proc and sys inside the target while it works; a build
 * that died halfway can leave them, and removing the tree must not descend
 * into them. Detaches every mount at or below root, deepest first. */
static void unmount_below(const char *root) {
        for (int pass = 0; pass < 8; pass++) {
                _cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
                if (!f)
                        return;
                char line[4096], deepest[4096] = "";
                size_t rl = strlen(root);
                while (fgets(line, sizeof line, f)) {
                        char mp[4096];
                        if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1)
                                continue;
                        if (strncmp(mp, root, rl) != 0 || (mp[rl] != 0 && mp[rl] != '/'))
                                continue;
                        if (strlen(mp) > strlen(deepest))
                                snprintf(deepest, sizeof deepest, "%s", mp);
                }
                if (!deepest[0] || umount2(deepest, MNT_DETACH) < 0)
                        return;
        }
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void)st;
        (void)ftw;
        if (flag == FTW_DP)
                return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
        return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

/* rm -rf that never leaves the file system (FTW_MOUNT) nor follows links */
static int rm_rf(const char *path) {
        struct stat st;
        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        unmount_below(path);
        if (nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0)
                return errno ? -errno : -EIO;
        return 0;
}

static uint64_t tree_bytes, tree_files;
static int size_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void)path;
        (void)ftw;
        if (flag == FTW_F && S_ISREG(st->st_mode)) {
                tree_bytes += (uint64_t)st->st_size;
                tree_files++;
        }
        return 0;
}

/* ---------------------------------------------------------------- commands */

/* Runs argv (PATH lookup) with stdout sent to our stderr, so the build log is
 * visible and our stdout stays the machine-readable result. The environment
 * is fixed: nothing of the caller's leaks into an image. */
static int spawn_wait(char *const argv[]) {
        static char *const env[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                    "LANG=C.UTF-8", "HOME=/root", "DEBIAN_FRONTEND=noninteractive",
                                    "npm_config_update_notifier=false", "npm_config_fund=false",
                                    "npm_config_audit=false", NULL};
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, 2, 1);
        pid_t pid;
        int r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, env);
        posix_spawn_file_actions_destroy(&fa);
        if (r != 0)
                return -r;
        int status;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        return 128 + WTERMSIG(status);
}

/* The Debian mirror this machine is configured with: the first URIs: of a
 * deb822 source carrying the suite, else a one-line `deb` source. */
static char *mirror_uri(void) {
        FILE *f = fopen("/etc/apt/sources.list.d/debian.sources", "re");
        char line[1024], uri[1024] = "";
        if (f) {
                char cur[1024] = "";
                bool suite = false;
                while (fgets(line, sizeof line, f)) {
                        line[strcspn(line, "\r\n")] = 0;
                        if (!line[0]) {
                                if (cur[0] && suite && !uri[0])
                                        snprintf(uri, sizeof uri, "%s", cur);
                                cur[0] = 0;
                                suite = false;
                        } else if (!strncmp(line, "URIs:", 5))
                                sscanf(line + 5, " %1023s", cur);
                        else if (!strncmp(line, "Suites:", 7)) {
                                char *p = line + 7, *tok, *save;
                                for (tok = strtok_r(p, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save))
                                        if (!strcmp(tok, IMAGES_SUITE))
                                                suite = true;
                        }
                }
                if (cur[0] && suite && !uri[0])
                        snprintf(uri, sizeof uri, "%s", cur);
                fclose(f);
        }
        if (!uri[0] && (f = fopen("/etc/apt/sources.list", "re"))) {
                while (!uri[0] && fgets(line, sizeof line, f)) {
                        char u[1024], s[128];
                        if (sscanf(line, "deb %1023s %127s", u, s) == 2 && !strcmp(s, IMAGES_SUITE))
                                snprintf(uri, sizeof uri, "%s", u);
                }
                fclose(f);
        }
        return strdup(uri[0] ? uri : IMAGES_DEFAULT_MIRROR);
}

/* "name=version arch" of every installed package, sorted (dpkg status order
 * is not guaranteed), as a JSON array. */
static json_t *dpkg_packages(const char *rootfs) {
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/var/lib/dpkg/status", rootfs) < 0)
                return NULL;
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f)
                return NULL;
        json_t *list = json_array();
        char line[4096], pkg[256] = "", ver[256] = "", arch[64] = "";
        bool installed = false;
        for (bool eof = false; !eof;) {
                eof = !fgets(line, sizeof line, f);
                if (eof || line[0] == '\n') {
                        if (pkg[0] && installed) {
                                char e[600];
                                snprintf(e, sizeof e, "%s=%s %s", pkg, ver, arch);
                                json_array_append_new(list, json_string(e));
                        }
                        pkg[0] = ver[0] = arch[0] = 0;
                        installed = false;
                        continue;
                }
                line[strcspn(line, "\n")] = 0;
                if (!strncmp(line, "Package: ", 9))
                        snprintf(pkg, sizeof pkg, "%.255s", line + 9);
                else if (!strncmp(line, "Version: ", 9))
                        snprintf(ver, sizeof ver, "%.255s", line + 9);
                else if (!strncmp(line, "Architecture: ", 14))
                        snprintf(arch, sizeof arch, "%.63s", line + 14);
                else if (!strncmp(line, "Status: ", 8))
                        installed = strstr(line, " installed") != NULL;
        }
        /* insertion sort keeps it dependency-free; a few hundred entries */
        size_t n = json_array_size(list);
        for (size_t i = 1; i < n; i++)
                for (size_t j = i; j > 0 && strcmp(json_string_value(json_array_get(list, j - 1)),
                                                   json_string_value(json_array_get(list, j))) > 0; j--) {
                        json_t *x = json_incref(json_array_get(list, j));
                        json_array_set(list, j, json_array_get(list, j - 1));
                        json_array_set_new(list, j - 1, x);
                }
        return list;
}

/* {package: version} of the npm packages installed globally in the rootfs */
static json_t *npm_versions(const struct image_recipe *rc, const char *rootfs) {
        json_t *o = json_object();
        for (const char *const *p = rc->npm; p && *p; p++) {
                _cleanup_free_ char *path = NULL;
                /* "@scope/name@1.2.3": the package's dir is the part before the version */
                const char *at = strchr(*p + 1, '@');
                int nlen = at ? (int)(at - *p) : (int)strlen(*p);
                if (asprintf(&path, "%s/usr/local/lib/node_modules/%.*s/package.json", rootfs, nlen, *p) < 0)
                        return json_decref(o), NULL;
                json_t *pj = json_load_file(path, 0, NULL);
                const char *v = json_string_value(json_object_get(pj, "version"));
                if (!v) {
                        json_decref(pj);
                        json_decref(o);
                        return NULL;
                }
                json_object_set_new(o, *p, json_string(v));
                json_decref(pj);
        }
        return o;
}

/* ---------------------------------------------------------------- index */

static char *images_dir_of(const char *cache_dir) {
        return strdup(cache_dir);
}

static json_t *index_load(const char *images_dir) {
        _cleanup_free_ char *p = NULL;
        if (asprintf(&p, "%s/index.json", images_dir) < 0)
                return NULL;
        json_t *idx = json_load_file(p, 0, NULL);
        if (!json_is_object(json_object_get(idx, "images"))) {
                json_decref(idx);
                idx = json_pack("{s:{}}", "images");
        }
        return idx;
}

static int index_store(const char *images_dir, json_t *idx) {
        _cleanup_free_ char *p = NULL, *s = json_dumps(idx, JSON_INDENT(2) | JSON_SORT_KEYS);
        if (!s || asprintf(&p, "%s/index.json", images_dir) < 0)
                return -ENOMEM;
        return write_file_atomic(p, s, 0644);
}

int images_resolve(const char *cache_dir, const char *ref, char **ret_rootfs) {
        if (!ref || !ref[0])
                return -EINVAL;
        _cleanup_free_ char *dir = images_dir_of(cache_dir);
        if (!dir)
                return -ENOMEM;
        char id[65];
        if (!strncmp(ref, "sha256:", 7) || !strncmp(ref, "sha256-", 7)) {
                if (!is_hex64(ref + 7))
                        return -EINVAL;
                snprintf(id, sizeof id, "%s", ref + 7);
        } else {
                json_t *idx = index_load(dir);
                const char *v = json_string_value(
                        json_object_get(json_object_get(json_object_get(idx, "images"), ref), "id"));
                bool ok = v && !strncmp(v, "sha256:", 7) && is_hex64(v + 7);
                if (ok)
                        snprintf(id, sizeof id, "%s", v + 7);
                json_decref(idx);
                if (!ok)
                        return -ENOENT;
        }
        char *rootfs = NULL;
        if (asprintf(&rootfs, "%s/sha256-%s/rootfs", dir, id) < 0)
                return -ENOMEM;
        struct stat st;
        if (lstat(rootfs, &st) < 0 || !S_ISDIR(st.st_mode)) {
                free(rootfs);
                return -ENOENT;
        }
        *ret_rootfs = rootfs;
        return 0;
}

char **images_available(const char *cache_dir, size_t *ret_n) {
        *ret_n = 0;
        _cleanup_free_ char *dir = images_dir_of(cache_dir);
        if (!dir)
                return NULL;
        json_t *idx = index_load(dir);
        json_t *images = json_object_get(idx, "images");
        char **names = calloc(json_object_size(images) + 1, sizeof *names);
        const char *name;
        json_t *v;
        size_t n = 0;
        json_object_foreach(images, name, v) {
                _cleanup_free_ char *rootfs = NULL;
                if (!names || images_resolve(cache_dir, name, &rootfs) < 0)
                        continue;
                if (!(names[n] = strdup(name)))
                        break;
                n++;
        }
        json_decref(idx);
        if (n == 0) {
                free(names);
                return NULL;
        }
        *ret_n = n;
        return names;
}

/* ---------------------------------------------------------------- build */

/* The image as a sandbox root: mount points the bundle needs, and /etc files
 * the runner replaces as plain files (debootstrap leaves the build host's
 * resolv.conf and hostname there, which must not reach a sandbox). */
static int prepare_for_sandbox(const char *rootfs) {
        static const char *const dirs[] = {"workspace", "tmp", "proc", "dev", "sys", "paddock", "home", "home/agent",
                                           NULL};
        for (const char *const *d = dirs; *d; d++) {
                _cleanup_free_ char *p = NULL;
                if (asprintf(&p, "%s/%s", rootfs, *d) < 0)
                        return -ENOMEM;
                if (mkdir(p, !strcmp(*d, "tmp") ? 01777 : 0755) < 0 && errno != EEXIST)
                        return -errno;
        }
        for (const char *const *e = image_etc_files; *e; e++) {
                _cleanup_free_ char *p = NULL;
                if (asprintf(&p, "%s/etc/%s", rootfs, *e) < 0)
                        return -ENOMEM;
                struct stat st;
                if (lstat(p, &st) == 0 && S_ISREG(st.st_mode) && strcmp(*e, "resolv.conf") != 0 &&
                    strcmp(*e, "hostname") != 0)
                        continue;
                if (unlink(p) < 0 && errno != ENOENT)
                        return -errno;
                int r = write_file_atomic(p, "", 0644);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int suid_failed;
static int unsuid_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void)ftw;
        if (flag == FTW_F && S_ISREG(st->st_mode) && (st->st_mode & (S_ISUID | S_ISGID)) &&
            chmod(path, st->st_mode & 07777 & ~(mode_t)(S_ISUID | S_ISGID)) < 0)
                suid_failed = -errno;
        return 0;
}

/* Sandboxes run with no_new_privs and an unmapped owner for these files, so
 * set-id bits are inert there already; an image without any makes that hold
 * wherever the rootfs ends up. */
static int strip_setid(const char *rootfs) {
        suid_failed = 0;
        if (nftw(rootfs, unsuid_entry, 32, FTW_PHYS | FTW_MOUNT) < 0)
                return -errno;
        return suid_failed;
}

static int strip_rootfs(const char *rootfs) {
        for (const char *const *s = image_strip; *s; s++) {
                _cleanup_free_ char *p = NULL;
                if (asprintf(&p, "%s/%s", rootfs, *s) < 0)
                        return -ENOMEM;
                int r = rm_rf(p);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void now_rfc3339(char *buf, size_t size) {
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static double mono_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void print_result(const char *name, const char *id, bool cached, json_t *meta, const char *images_dir) {
        json_t *o = json_pack("{s:s,s:s,s:b,s:O?,s:O?,s:O?}", "name", name, "id", id, "cached", cached,
                              "size_bytes", json_object_get(meta, "size_bytes"),
                              "build_seconds", json_object_get(meta, "build_seconds"),
                              "built_at", json_object_get(meta, "built_at"));
        char rootfs[4096];
        snprintf(rootfs, sizeof rootfs, "%s/sha256-%s/rootfs", images_dir, id + 7);
        json_object_set_new(o, "rootfs", json_string(rootfs));
        char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(6));
        if (s)
                printf("%s\n", s);
        free(s);
        json_decref(o);
}

static json_t *meta_load(const char *images_dir, const char *id) {
        _cleanup_free_ char *p = NULL;
        if (asprintf(&p, "%s/sha256-%s/metadata.json", images_dir, id + 7) < 0)
                return NULL;
        return json_load_file(p, 0, NULL);
}

/* Does the work in tmp_dir/rootfs; fills meta. Returns 0 or a negative errno
 * (already logged). */
static int build_into(const struct image_recipe *rc, const char *tmp_dir, const char *rtext, json_t *meta,
                      char id_out[72]) {
        _cleanup_free_ char *rootfs = NULL, *mirror = mirror_uri();
        if (!mirror || asprintf(&rootfs, "%s/rootfs", tmp_dir) < 0)
                return -ENOMEM;
        double t0 = mono_s();
        log_ctx(LOG_INFO, LOG_KV("image", rc->name, "mirror", mirror), "running debootstrap");
        char *db[] = {"debootstrap", "--variant=minbase", IMAGES_SUITE, rootfs, mirror, NULL};
        int r = spawn_wait(db);
        if (r != 0) {
                log_ctx(LOG_ERROR, LOG_KV("image", rc->name), "debootstrap failed (%s %d)",
                        r < 0 ? "error" : "exit", r < 0 ? -r : r);
                return r < 0 ? r : -EIO;
        }
        if (rc->include || rc->npm) {
                /* apt and npm of the image itself, chrooted: debootstrap's own
                 * resolver cannot handle large dependency sets (npm), and the
                 * node modules must match the image's Node.js. Maintainer
                 * scripts and npm want /proc; unmounted right after. */
                _cleanup_free_ char *proc = NULL;
                if (asprintf(&proc, "%s/proc", rootfs) < 0)
                        return -ENOMEM;
                if (mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
                        r = -errno;
                        log_ctx(LOG_ERROR, LOG_KV("image", rc->name), "could not mount proc in the image: %m");
                        return r;
                }
                if (rc->include) {
                        char pkgs[1024];
                        snprintf(pkgs, sizeof pkgs, "%s", rc->include);
                        char *apt[32] = {"chroot", rootfs, "apt-get", "install", "--yes", "--no-install-recommends"};
                        size_t n = 6;
                        char *save = NULL;
                        for (char *t = strtok_r(pkgs, ",", &save); t && n < ELEMENTSOF(apt) - 1;
                             t = strtok_r(NULL, ",", &save))
                                apt[n++] = t;
                        apt[n] = NULL;
                        log_ctx(LOG_INFO, LOG_KV("image", rc->name, "packages", rc->include),
                                "installing Debian packages in the image");
                        r = spawn_wait(apt);
                        if (r != 0)
                                log_ctx(LOG_ERROR, LOG_KV("image", rc->name), "apt-get install failed (%s %d)",
                                        r < 0 ? "error" : "exit", r < 0 ? -r : r);
                        /* apt-get clean: the downloaded .debs are not part of the image */
                        char *clean[] = {"chroot", rootfs, "apt-get", "clean", NULL};
                        if (r == 0)
                                spawn_wait(clean);
                }
                /* npm inside the image trusts the build host's CAs (the
                 * node's own trust store reaches the registry), for this
                 * command only: the file is gone before the image is sealed */
                _cleanup_free_ char *ca = NULL;
                if (r == 0 && rc->npm && asprintf(&ca, "%s/tmp/paddock-build-ca.crt", rootfs) < 0)
                        r = -ENOMEM;
                if (r == 0 && rc->npm) {
                        char *cp[] = {"cp", "--dereference", "/etc/ssl/certs/ca-certificates.crt", ca, NULL};
                        r = spawn_wait(cp);
                }
                if (r == 0 && rc->npm) {
                        char *npm[16] = {"chroot", rootfs, "npm", "install", "--global", "--no-audit",
                                         "--no-fund", "--omit=dev", "--cafile=/tmp/paddock-build-ca.crt"};
                        size_t n = 9;
                        for (const char *const *p = rc->npm; *p && n < ELEMENTSOF(npm) - 1; p++)
                                npm[n++] = (char *)*p;
                        npm[n] = NULL;
                        log_ctx(LOG_INFO, LOG_KV("image", rc->name), "installing npm packages in the image");
                        r = spawn_wait(npm);
                        if (r != 0)
                                log_ctx(LOG_ERROR, LOG_KV("image", rc->name), "npm install failed (%s %d)",
                                        r < 0 ? "error" : "exit", r < 0 ? -r : r);
                }
                if (ca)
                        unlink(ca);
                unmount_below(proc);
                if (r != 0)
                        return r < 0 ? r : -EIO;
        }
        json_t *pkgs = dpkg_packages(rootfs);
        json_t *npmv = npm_versions(rc, rootfs);
        if (!pkgs || !npmv || json_array_size(pkgs) == 0) {
                json_decref(pkgs);
                json_decref(npmv);
                log_ctx(LOG_ERROR, LOG_KV("image", rc->name), "could not read the installed package versions");
                return -EIO;
        }
        r = strip_rootfs(rootfs);
        if (r >= 0)
                r = strip_setid(rootfs);
        if (r >= 0)
                r = prepare_for_sandbox(rootfs);
        if (r < 0) {
                json_decref(pkgs);
                json_decref(npmv);
                log_ctx(LOG_ERROR, LOG_KV("image", rc->name), "could not finish the rootfs: %s", strerror(-r));
                return r;
        }

        /* the id: recipe + exact versions, one canonical text */
        char *s = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&s, &len);
        if (!f) {
                json_decref(pkgs);
                json_decref(npmv);
                return -ENOMEM;
        }
        fputs(rtext, f);
        size_t i;
        json_t *v;
        json_array_foreach(pkgs, i, v) fprintf(f, "deb %s\n", json_string_value(v));
        for (const char *const *p = rc->npm; p && *p; p++)
                fprintf(f, "npm-version %s=%s\n", *p, json_string_value(json_object_get(npmv, *p)));
        fclose(f);
        char hex[65];
        sha256_hex(s, len, hex);
        free(s);
        snprintf(id_out, 72, "sha256:%s", hex);

        tree_bytes = tree_files = 0;
        nftw(rootfs, size_entry, 32, FTW_PHYS | FTW_MOUNT);
        char built_at[32];
        now_rfc3339(built_at, sizeof built_at);
        char rhex[65];
        sha256_hex(rtext, strlen(rtext), rhex);
        json_object_set_new(meta, "name", json_string(rc->name));
        json_object_set_new(meta, "id", json_string(id_out));
        json_object_set_new(meta, "recipe_sha256", json_string(rhex));
        json_object_set_new(meta, "suite", json_string(IMAGES_SUITE));
        json_object_set_new(meta, "mirror", json_string(mirror));
        json_object_set_new(meta, "packages", pkgs);
        json_object_set_new(meta, "npm", npmv);
        json_object_set_new(meta, "size_bytes", json_integer((json_int_t)tree_bytes));
        json_object_set_new(meta, "files", json_integer((json_int_t)tree_files));
        json_object_set_new(meta, "built_at", json_string(built_at));
        json_object_set_new(meta, "build_seconds", json_real((double)(long)((mono_s() - t0) * 10) / 10));
        _cleanup_free_ char *mp = NULL;
        if (asprintf(&mp, "%s/metadata.json", tmp_dir) < 0 || json_dump_file(meta, mp, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) < 0)
                return -EIO;
        return 0;
}

static int cmd_build(const char *cache_dir, const char *name, bool rebuild) {
        const struct image_recipe *rc = recipe_find(name);
        if (!rc) {
                fprintf(stderr, "image: unknown image \"%s\"; known:", name);
                for (size_t i = 0; i < ELEMENTSOF(image_recipes); i++)
                        fprintf(stderr, " %s", image_recipes[i].name);
                fprintf(stderr, "\n");
                return 2;
        }
        _cleanup_free_ char *dir = images_dir_of(cache_dir), *rtext = recipe_text(rc), *lock = NULL,
                            *tmp = NULL;
        if (!dir || !rtext || asprintf(&lock, "%s/.lock", dir) < 0)
                return 1;
        int r = mkdir_p(dir, 0755);
        if (r < 0) {
                log_error("could not create %s: %s", dir, strerror(-r));
                return 1;
        }
        /* one build at a time per node: builds are heavy and share the index */
        _cleanup_close_ int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (lfd < 0 || flock(lfd, LOCK_EX) < 0) {
                log_error("could not lock %s: %m", lock);
                return 1;
        }
        char rhex[65];
        sha256_hex(rtext, strlen(rtext), rhex);
        json_t *idx = index_load(dir);
        json_t *entry = json_object_get(json_object_get(idx, "images"), name);
        const char *cur_id = json_string_value(json_object_get(entry, "id"));
        const char *cur_recipe = json_string_value(json_object_get(entry, "recipe_sha256"));
        if (!rebuild && cur_id && cur_recipe && !strcmp(cur_recipe, rhex)) {
                _cleanup_free_ char *rootfs = NULL;
                if (images_resolve(cache_dir, cur_id, &rootfs) == 0) {
                        json_t *meta = meta_load(dir, cur_id);
                        log_ctx(LOG_INFO, LOG_KV("image", name, "id", cur_id), "image is up to date, not rebuilt");
                        print_result(name, cur_id, true, meta, dir);
                        json_decref(meta);
                        json_decref(idx);
                        return 0;
                }
        }

        /* temp dirs of builds that were killed: no build runs but ours (lock) */
        DIR *d = opendir(dir);
        for (struct dirent *de; d && (de = readdir(d));) {
                if (strncmp(de->d_name, ".build-", 7) != 0)
                        continue;
                _cleanup_free_ char *stale = NULL;
                if (asprintf(&stale, "%s/%s", dir, de->d_name) >= 0) {
                        log_ctx(LOG_INFO, LOG_KV("path", stale), "removing an interrupted build");
                        rm_rf(stale);
                }
        }
        if (d)
                closedir(d);
        if (asprintf(&tmp, "%s/.build-%s-%d", dir, name, (int)getpid()) < 0) {
                json_decref(idx);
                return 1;
        }
        if (mkdir(tmp, 0755) < 0) {
                log_error("could not create %s: %m", tmp);
                json_decref(idx);
                return 1;
        }
        json_t *meta = json_object();
        char id[72];
        r = build_into(rc, tmp, rtext, meta, id);
        if (r < 0) {
                int k = rm_rf(tmp);
                if (k < 0)
                        log_error("could not remove the failed build %s: %s", tmp, strerror(-k));
                log_ctx(LOG_ERROR, LOG_KV("image", name), "image build failed, nothing was kept");
                json_decref(meta);
                json_decref(idx);
                return 1;
        }
        _cleanup_free_ char *final = NULL;
        if (asprintf(&final, "%s/sha256-%s", dir, id + 7) < 0) {
                rm_rf(tmp);
                json_decref(meta);
                json_decref(idx);
                return 1;
        }
        struct stat st;
        if (lstat(final, &st) == 0) {
                /* identical content already there (same versions): keep it,
                 * it may be mounted by a running sandbox */
                log_ctx(LOG_INFO, LOG_KV("image", name, "id", id), "identical image already present, reused");
                rm_rf(tmp);
                json_t *old = meta_load(dir, id);
                if (old) {
                        json_decref(meta);
                        meta = old;
                }
        } else if (rename(tmp, final) < 0) {
                log_error("could not move %s to %s: %m", tmp, final);
                rm_rf(tmp);
                json_decref(meta);
                json_decref(idx);
                return 1;
        }
        json_object_set_new(json_object_get(idx, "images"), name,
                            json_pack("{s:s,s:s,s:O?}", "id", id, "recipe_sha256", rhex, "built_at",
                                      json_object_get(meta, "built_at")));
        r = index_store(dir, idx);
        json_decref(idx);
        if (r < 0) {
                log_error("could not write %s/index.json: %s", dir, strerror(-r));
                json_decref(meta);
                return 1;
        }
        char mb[32];
        snprintf(mb, sizeof mb, "%.1f", (double)json_integer_value(json_object_get(meta, "size_bytes")) / 1048576.0);
        log_ctx(LOG_INFO, LOG_KV("image", name, "id", id, "size_mb", mb), "image built");
        print_result(name, id, false, meta, dir);
        json_decref(meta);
        return 0;
}

static int cmd_list(const char *cache_dir) {
        _cleanup_free_ char *dir = images_dir_of(cache_dir);
        if (!dir)
                return 1;
        json_t *idx = index_load(dir);
        json_t *images = json_object_get(idx, "images");
        printf("%-16s %-20s %10s  %-20s  %s\n", "NAME", "ID", "SIZE_MB", "BUILT_AT", "DESCRIPTION");
        for (size_t i = 0; i < ELEMENTSOF(image_recipes); i++) {
                const struct image_recipe *rc = &image_recipes[i];
                const char *id = json_string_value(json_object_get(json_object_get(images, rc->name), "id"));
                _cleanup_free_ char *rootfs = NULL;
                json_t *meta = id && images_resolve(cache_dir, id, &rootfs) == 0 ? meta_load(dir, id) : NULL;
                char short_id[24] = "(not built)", size[24] = "-";
                if (meta) {
                        snprintf(short_id, sizeof short_id, "%.19s", id);
                        snprintf(size, sizeof size, "%.1f",
                                 (double)json_integer_value(json_object_get(meta, "size_bytes")) / 1048576.0);
                }
                const char *at = json_string_value(json_object_get(meta, "built_at"));
                printf("%-16s %-20s %10s  %-20s  %s\n", rc->name, short_id, size, at ? at : "-", rc->description);
                json_decref(meta);
        }
        json_decref(idx);
        return 0;
}

static void usage(FILE *f) {
        fprintf(f, "usage: paddock-runner-agent image build <name> [--cache-dir DIR] [--rebuild]\n"
                   "       paddock-runner-agent image list [--cache-dir DIR]\n"
                   "images:");
        for (size_t i = 0; i < ELEMENTSOF(image_recipes); i++)
                fprintf(f, " %s", image_recipes[i].name);
        fprintf(f, "\ncache dir default: PADDOCK_IMAGE_CACHE_DIR, else " IMAGES_DEFAULT_CACHE_DIR "\n");
}

int images_main(int argc, char **argv, const char *default_cache_dir) {
        const char *cache_dir = default_cache_dir && default_cache_dir[0] ? default_cache_dir : IMAGES_DEFAULT_CACHE_DIR;
        const char *verb = NULL, *name = NULL;
        bool rebuild = false;
        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--cache-dir") && i + 1 < argc)
                        cache_dir = argv[++i];
                else if (!strncmp(argv[i], "--cache-dir=", 12))
                        cache_dir = argv[i] + 12;
                else if (!strcmp(argv[i], "--rebuild"))
                        rebuild = true;
                else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
                        usage(stdout);
                        return 0;
                } else if (argv[i][0] == '-') {
                        fprintf(stderr, "image: unknown option \"%s\"\n", argv[i]);
                        usage(stderr);
                        return 2;
                } else if (!verb)
                        verb = argv[i];
                else if (!name)
                        name = argv[i];
                else {
                        fprintf(stderr, "image: unexpected argument \"%s\"\n", argv[i]);
                        return 2;
                }
        }
        if (cache_dir[0] != '/') {
                fprintf(stderr, "image: the cache dir must be an absolute path, not \"%s\"\n", cache_dir);
                return 2;
        }
        if (verb && !strcmp(verb, "list") && !name)
                return cmd_list(cache_dir);
        if (verb && !strcmp(verb, "build") && name) {
                if (geteuid() != 0) {
                        fprintf(stderr, "image: building needs root (debootstrap, chroot)\n");
                        return 1;
                }
                return cmd_build(cache_dir, name, rebuild);
        }
        usage(stderr);
        return 2;
}
