#include "node_prep.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "core/log.h"
#include "core/macro.h"
#include "subprocess.h"

#define CGROUP_ROOT "/sys/fs/cgroup"

static int mkdir_p(const char *path, mode_t mode) {
        _cleanup_free_ char *p = strdup(path);
        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = 0;
                if (mkdir(p, 0755) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return -errno;
        if (chmod(p, mode) < 0)
                return -errno;
        return 0;
}

static char *path_join(const char *a, const char *b) {
        char *s;
        return asprintf(&s, "%s/%s", a, b) < 0 ? NULL : s;
}

/* Writes path atomically (temp file + rename) so a crash never leaves half a passwd. */
static int write_file_atomic(const char *path, const char *content, mode_t mode) {
        _cleanup_free_ char *tmp = NULL;
        if (asprintf(&tmp, "%s.tmp", path) < 0)
                return -ENOMEM;
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return -errno;
        size_t len = strlen(content);
        ssize_t w = write(fd, content, len);
        int r = (w == (ssize_t)len) ? 0 : (w < 0 ? -errno : -EIO);
        if (fchmod(fd, mode) < 0 && r == 0)
                r = -errno;
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0)
                unlink(tmp);
        return r;
}

static bool is_mounted_with(const char *mountpoint, const char *fstype) {
        _cleanup_fclose_ FILE *f = fopen("/proc/self/mounts", "re");
        char *line = NULL;
        size_t n = 0;
        bool found = false;
        if (!f)
                return false;
        while (getline(&line, &n, f) > 0) {
                char dev[256], mnt[512], type[64];
                if (sscanf(line, "%255s %511s %63s", dev, mnt, type) == 3 && !strcmp(mnt, mountpoint) &&
                    !strcmp(type, fstype)) {
                        found = true;
                        break;
                }
        }
        free(line);
        return found;
}

/* Hybrid machines: v1 controllers plus a v2 hierarchy at unified/ that holds
 * hugetlb. crun refuses that layout; giving hugetlb its own v1 hierarchy
 * empties the v2 controllers and crun then runs in v1 mode. */
static int prep_cgroups(struct agent *a, struct err_detail *reterr) {
        struct statfs sfs;
        if (statfs(CGROUP_ROOT, &sfs) < 0)
                return err_set(reterr, -errno, "cgroup", "cannot stat %s: %m", CGROUP_ROOT);
        if (sfs.f_type == CGROUP2_SUPER_MAGIC) {
                a->cgroup_mode = CGROUP_MODE_V2;
                log_info("cgroup v2 (unified) detected");
                return 0;
        }
        a->cgroup_mode = CGROUP_MODE_V1;

        char ctrl[256] = "";
        FILE *f = fopen(CGROUP_ROOT "/unified/cgroup.controllers", "re");
        if (f) {
                if (!fgets(ctrl, sizeof ctrl, f))
                        ctrl[0] = 0;
                fclose(f);
        }
        if (strstr(ctrl, "hugetlb") && !is_mounted_with(CGROUP_ROOT "/hugetlb", "cgroup")) {
                if (mkdir(CGROUP_ROOT "/hugetlb", 0755) < 0 && errno != EEXIST)
                        return err_set(reterr, -errno, "cgroup", "cannot create %s/hugetlb: %m", CGROUP_ROOT);
                if (mount("cgroup", CGROUP_ROOT "/hugetlb", "cgroup", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                          "hugetlb") < 0)
                        return err_set(reterr, -errno, "cgroup",
                                       "cannot mount a v1 hugetlb hierarchy (crun refuses hybrid cgroups): %m");
                log_info("mounted a v1 hugetlb cgroup hierarchy at %s/hugetlb for crun", CGROUP_ROOT);
        }

        /* Remember every v1 hierarchy: cleanup checks paddock/<run> under each. */
        f = fopen("/proc/self/mounts", "re");
        if (!f)
                return err_set(reterr, -errno, "cgroup", "cannot read /proc/self/mounts: %m");
        char *line = NULL;
        size_t n = 0, count = 0;
        char **list = calloc(64, sizeof *list);
        while (list && getline(&line, &n, f) > 0 && count < 63) {
                char dev[256], mnt[512], type[64];
                if (sscanf(line, "%255s %511s %63s", dev, mnt, type) == 3 && !strcmp(type, "cgroup") &&
                    !strncmp(mnt, CGROUP_ROOT "/", strlen(CGROUP_ROOT "/")))
                        list[count++] = strdup(mnt);
        }
        free(line);
        fclose(f);
        if (!list)
                return -ENOMEM;
        a->cgroup_v1_mounts = list;
        log_info("cgroup v1 with %zu hierarchies", count);
        return 0;
}

static const char rootfs_dirs[][16] = {"usr", "etc", "proc", "dev", "tmp", "workspace", "sys", "paddock"};
static const char *const rootfs_links[][2] = {
        {"bin", "usr/bin"}, {"lib", "usr/lib"}, {"lib64", "usr/lib64"}, {"sbin", "usr/sbin"}};

/* The container root: empty mount points and merged-usr links; everything
 * real is mounted read-only over it by crun. */
static int prep_rootfs(struct agent *a, struct err_detail *reterr) {
        int r = mkdir_p(a->rootfs_dir, 0755);
        if (r < 0)
                return err_set(reterr, r, "rootfs", "cannot create %s: %s", a->rootfs_dir, strerror(-r));
        for (size_t i = 0; i < ELEMENTSOF(rootfs_dirs); i++) {
                _cleanup_free_ char *p = path_join(a->rootfs_dir, rootfs_dirs[i]);
                if (!p)
                        return -ENOMEM;
                if (mkdir(p, 0755) < 0 && errno != EEXIST)
                        return err_set(reterr, -errno, "rootfs", "cannot create %s: %m", p);
        }
        for (size_t i = 0; i < ELEMENTSOF(rootfs_links); i++) {
                _cleanup_free_ char *p = path_join(a->rootfs_dir, rootfs_links[i][0]);
                if (!p)
                        return -ENOMEM;
                char target[64];
                ssize_t k = readlink(p, target, sizeof target - 1);
                if (k >= 0) {
                        target[k] = 0;
                        if (!strcmp(target, rootfs_links[i][1]))
                                continue;
                        unlink(p);
                }
                if (symlink(rootfs_links[i][1], p) < 0)
                        return err_set(reterr, -errno, "rootfs", "cannot create link %s: %m", p);
        }

        r = mkdir_p(a->etc_dir, 0755);
        if (r < 0)
                return err_set(reterr, r, "rootfs", "cannot create %s: %s", a->etc_dir, strerror(-r));
        static const struct {
                const char *name, *content;
        } etc_files[] = {
                /* uids of the sandbox's user namespace; host files show as nobody */
                {"passwd", "root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
                           "agent:x:1000:1000:agent:/workspace:/bin/sh\n"
                           "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"},
                {"group", "root:x:0:\nagent:x:1000:\nnogroup:x:65534:\n"},
                {"hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n"},
                /* no nameserver: the sandbox has no network to ask anyway */
                {"resolv.conf", "# no nameservers in a paddock sandbox\n"},
                {"nsswitch.conf", "passwd: files\ngroup: files\nhosts: files\n"},
                {"hostname", "paddock\n"},
        };
        for (size_t i = 0; i < ELEMENTSOF(etc_files); i++) {
                _cleanup_free_ char *p = path_join(a->etc_dir, etc_files[i].name);
                if (!p)
                        return -ENOMEM;
                r = write_file_atomic(p, etc_files[i].content, 0644);
                if (r < 0)
                        return err_set(reterr, r, "rootfs", "cannot write %s: %s", p, strerror(-r));
        }
        return 0;
}

int node_prep(struct agent *a, struct err_detail *reterr) {
        const char *sd = a->cfg->state_dir;
        if (sd[0] != '/')
                return err_set(reterr, -EINVAL, "config", "PADDOCK_RUNNER_STATE_DIR must be absolute");
        if (!(a->state_dir = strdup(sd)) || !(a->crun_root = path_join(sd, "crun")) ||
            !(a->runs_dir = path_join(sd, "runs")) || !(a->netns_dir = path_join(sd, "netns")) ||
            !(a->done_dir = path_join(sd, "done")) || !(a->rootfs_dir = path_join(sd, "rootfs")) ||
            !(a->etc_dir = path_join(sd, "etc")))
                return -ENOMEM;

        /* 0711: other users may traverse to the sandbox's workspace mount
         * source but not list run ids */
        const char *dirs[] = {a->state_dir, a->crun_root, a->runs_dir, a->netns_dir, a->done_dir};
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
                int r = mkdir_p(dirs[i], i == 0 || i == 2 ? 0711 : 0700);
                if (r < 0)
                        return err_set(reterr, r, "state", "cannot create state dir %s: %s", dirs[i],
                                       strerror(-r));
        }
        /* egress/secrets: crun keeps a copy of every config.json (the agent's
         * env, which may hold secrets) in its state dir; keep that in memory
         * like crun's default /run/crun, never on a disk */
        struct statfs crun_fs;
        if (statfs(a->crun_root, &crun_fs) == 0 && crun_fs.f_type != TMPFS_MAGIC &&
            mount("paddock-crun", a->crun_root, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700,size=64m") < 0)
                return err_set(reterr, -errno, "state", "cannot mount a tmpfs on %s: %m", a->crun_root);
        /* seq/: last event seq of each unfinished run, spool/: its records
         * not yet acknowledged (crash recovery: run.c recover_one);
         * cancelled/: tombstones of cancels that arrived before the run */
        static const char *const extra_dirs[] = {"seq", "spool", "cancelled"};
        for (size_t i = 0; i < ELEMENTSOF(extra_dirs); i++) {
                _cleanup_free_ char *p = path_join(sd, extra_dirs[i]);
                int k = p ? mkdir_p(p, 0700) : -ENOMEM;
                if (k < 0)
                        return err_set(reterr, k, "state", "cannot create state dir %s/%s: %s", sd, extra_dirs[i],
                                       strerror(-k));
        }
        int r = prep_cgroups(a, reterr);
        if (r < 0)
                return r;
        r = prep_rootfs(a, reterr);
        if (r < 0)
                return r;
        /* Sandboxes run detached: their init is reparented to us, so we reap
         * it (exit status) and their cgroup outlives it until `crun delete`. */
        if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
                return err_set(reterr, -errno, "prctl", "cannot become a child subreaper: %m");
        if (access(a->cfg->crun, X_OK) < 0)
                return err_set(reterr, -errno, "crun", "crun is not executable at %s: %m", a->cfg->crun);
        /* made once here so that no launch pays crun's own self-copy (crun_exec.h);
         * without it crun still copies itself: slower, as safe */
        r = crun_exec_prepare(&a->crun, a->cfg->crun);
        if (r >= 0) { /* the copy must run here (a /proc of another pid namespace would not) */
                char *argv[] = {a->crun.path, "--version", NULL}, err[256];
                r = subprocess_run(argv, NULL, NULL, NULL, 0, err, sizeof err, 10000);
                if (r != 0) {
                        crun_exec_done(&a->crun);
                        r = r < 0 ? r : -ENOEXEC;
                }
        }
        if (r < 0)
                log_warn("could not run a sealed copy of %s, crun will copy itself at each call: %s",
                         a->cfg->crun, strerror(-r));
        return 0;
}

/* Unmounts the crun state tmpfs when no container state is left in it. */
static void crun_root_release(const char *crun_root) {
        struct statfs fs;
        if (!crun_root || statfs(crun_root, &fs) < 0 || fs.f_type != TMPFS_MAGIC)
                return;
        DIR *d = opendir(crun_root);
        if (!d)
                return;
        bool empty = true;
        for (struct dirent *e; empty && (e = readdir(d));)
                empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
        closedir(d);
        if (empty)
                (void)umount2(crun_root, MNT_DETACH);
}

void node_prep_free(struct agent *a) {
        crun_root_release(a->crun_root);
        crun_exec_done(&a->crun);
        free(a->state_dir);
        free(a->crun_root);
        free(a->runs_dir);
        free(a->netns_dir);
        free(a->done_dir);
        free(a->rootfs_dir);
        free(a->etc_dir);
        if (a->cgroup_v1_mounts)
                for (char **p = a->cgroup_v1_mounts; *p; p++)
                        free(*p);
        free(a->cgroup_v1_mounts);
}
