#include "sandbox.h"
#include "identity_file.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <jansson.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/macro.h"
#include "seccomp.h"
#include "capture_exec.h"
#include "images.h"
#include "prompt_file.h"
#include "hook_server.h"
#include "subprocess.h"


bool runner_cgroup_parent_valid(const char *parent) {
        if (!parent || !*parent || strlen(parent) > 200)
                return false;
        /* components of [A-Za-z0-9._-], none "." or "..", no empty one */
        for (const char *p = parent; *p;) {
                size_t n = strcspn(p, "/");
                if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
                        return false;
                for (size_t i = 0; i < n; i++)
                        if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z') ||
                              (p[i] >= '0' && p[i] <= '9') || p[i] == '.' || p[i] == '_' || p[i] == '-'))
                                return false;
                p += n;
                if (*p == '/' && !*++p)
                        return false; /* a trailing slash */
        }
        return true;
}

int sandbox_init(struct sandbox *sb, const struct agent *a, const char *run_id, unsigned slot) {
        *sb = (struct sandbox){.slot = slot,
                               .agent_uid = runner_userns_host_id(slot, RUNNER_SANDBOX_INNER_UID),
                               .agent_gid = runner_userns_host_id(slot, RUNNER_SANDBOX_INNER_GID)};
        snprintf(sb->run_id, sizeof sb->run_id, "%s", run_id);
        snprintf(sb->id, sizeof sb->id, "%s", run_id);
        snprintf(sb->container_id, sizeof sb->container_id, "paddock-%s", run_id);
        if (asprintf(&sb->run_dir, "%s/%s", a->runs_dir, run_id) < 0 ||
            asprintf(&sb->config_path, "%s/config.json", sb->run_dir) < 0 ||
            asprintf(&sb->pid_file, "%s/container.pid", sb->run_dir) < 0 ||
            asprintf(&sb->workspace, "%s/workspace", sb->run_dir) < 0 ||
            asprintf(&sb->baseline, "%s/baseline", sb->run_dir) < 0 ||
            asprintf(&sb->netns_path, "%s/%s", a->netns_dir, run_id) < 0 ||
            asprintf(&sb->cgroup_path, "%s/%s", a->cfg->cgroup_parent, run_id) < 0)
                return -ENOMEM;
        return 0;
}

void sandbox_done(struct sandbox *sb) {
        free(sb->run_dir);
        free(sb->config_path);
        free(sb->pid_file);
        free(sb->workspace);
        free(sb->baseline);
        free(sb->netns_path);
        free(sb->cgroup_path);
        free(sb->seccomp_key);
        *sb = (struct sandbox){0};
}

int sandbox_make_dirs(struct sandbox *sb, uint64_t disk_mb, struct err_detail *reterr) {
        if (mkdir(sb->run_dir, 0700) < 0)
                return err_set(reterr, -errno, "sandbox", "cannot create %s: %m", sb->run_dir);
        if (mkdir(sb->baseline, 0700) < 0)
                return err_set(reterr, -errno, "sandbox", "cannot create %s: %m", sb->baseline);
        if (mkdir(sb->workspace, 0755) < 0)
                return err_set(reterr, -errno, "sandbox", "cannot create %s: %m", sb->workspace);
        /* A tmpfs per run: its size is the disk limit on cgroup v1 and v2
         * alike (no project quotas needed), and unmounting it frees it all.
         * Its pages are charged to the memory cgroup of the writer. */
        char opts[128];
        snprintf(opts, sizeof opts, "size=%" PRIu64 "m,mode=0755,uid=%u,gid=%u,nr_inodes=%" PRIu64,
                 disk_mb ? disk_mb : RUN_DEFAULT_DISK_MB, (unsigned)sb->agent_uid, (unsigned)sb->agent_gid,
                 (disk_mb ? disk_mb : RUN_DEFAULT_DISK_MB) * 256);
        if (mount("paddock-workspace", sb->workspace, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
                return err_set(reterr, -errno, "sandbox", "cannot mount the workspace tmpfs on %s: %m",
                               sb->workspace);
        /* the bundle dir must be reachable by crun only; the workspace is
         * reached through the bind mount, not through this path */
        return 0;
}

struct sandbox_netns_job {
        const char *path;
        int err;
        char what[64];
        pthread_t thread;
};

/* Runs in a fresh thread that exits right after: unshare(CLONE_NEWNET) moves
 * only the calling thread into the new namespace (namespaces are per task), so
 * no other thread of ours, and no forked child of a multithreaded process, is
 * ever involved. The bind mount keeps the namespace alive after the thread. */
static void *netns_thread(void *userdata) {
        struct sandbox_netns_job *job = userdata;
        if (unshare(CLONE_NEWNET) < 0) {
                job->err = -errno;
                snprintf(job->what, sizeof job->what, "unshare(CLONE_NEWNET)");
                return NULL;
        }
        int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (s < 0) {
                job->err = -errno;
                snprintf(job->what, sizeof job->what, "socket in the new netns");
                return NULL;
        }
        struct ifreq ifr = {0};
        snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
        if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0 ||
            (ifr.ifr_flags |= IFF_UP | IFF_RUNNING, ioctl(s, SIOCSIFFLAGS, &ifr) < 0)) {
                job->err = -errno;
                snprintf(job->what, sizeof job->what, "bringing lo up");
                close(s);
                return NULL;
        }
        close(s);
        if (mount("/proc/thread-self/ns/net", job->path, NULL, MS_BIND, NULL) < 0) {
                job->err = -errno;
                snprintf(job->what, sizeof job->what, "bind-mounting the netns");
        }
        return NULL;
}

int sandbox_netns_begin(struct sandbox *sb, struct err_detail *reterr) {
        _cleanup_free_ struct sandbox_netns_job *job = calloc(1, sizeof *job);
        if (!job)
                return err_set(reterr, -ENOMEM, "netns", "out of memory");
        int fd = open(sb->netns_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0444);
        if (fd < 0)
                return err_set(reterr, -errno, "netns", "cannot create %s: %m", sb->netns_path);
        close(fd);
        job->path = sb->netns_path;
        int r = pthread_create(&job->thread, NULL, netns_thread, job);
        if (r != 0) {
                unlink(sb->netns_path);
                return err_set(reterr, -r, "netns", "cannot start netns thread: %s", strerror(r));
        }
        sb->netns_job = TAKE_PTR(job);
        return 0;
}

int sandbox_netns_wait(struct sandbox *sb, struct err_detail *reterr) {
        _cleanup_free_ struct sandbox_netns_job *job = TAKE_PTR(sb->netns_job);
        if (!job)
                return 0;
        pthread_join(job->thread, NULL);
        if (job->err < 0) {
                unlink(sb->netns_path);
                return err_set(reterr, job->err, "netns", "%s failed: %s", job->what, strerror(-job->err));
        }
        return 0;
}

static json_t *mount_entry(const char *dest, const char *type, const char *source, const char *const *opts) {
        json_t *o = json_array();
        for (; *opts; opts++)
                json_array_append_new(o, json_string(*opts));
        return json_pack("{s:s,s:s,s:s,s:o}", "destination", dest, "type", type, "source", source,
                         "options", o);
}

static json_t *device_entry(const char *path, int major, int minor) {
        return json_pack("{s:s,s:s,s:i,s:i,s:i,s:i,s:i}", "path", path, "type", "c", "major", major,
                         "minor", minor, "fileMode", 0666, "uid", 0, "gid", 0);
}

static json_t *allow_dev(int major, int minor) {
        json_t *d = json_pack("{s:b,s:s,s:i,s:s}", "allow", 1, "type", "c", "major", major, "access", "rwm");
        if (d && minor >= 0)
                json_object_set_new(d, "minor", json_integer(minor));
        return d;
}

int sandbox_write_bundle(struct sandbox *sb, const struct agent *a,
                         const Paddock__V1__RunRequested *req, struct err_detail *reterr) {
        const Paddock__V1__SandboxSnapshot *snap = req->sandbox;
        const Paddock__V1__AgentSpec *agent = snap ? snap->agent : NULL;
        bool cli = sb->cli && sb->cli->kind != AGENT_CLI_NONE; /* the adapter sets the argv (agent_cli.h) */
        if (!agent || (!cli && (agent->n_command == 0 || !agent->command[0][0])))
                return err_set(reterr, -EINVAL, "spec", "sandbox.agent.command is empty");
        const Paddock__V1__Limits *lim = snap->limits;
        /* images hook: a catalog image is the read-only root (images.h);
         * without one the root is the host-/usr skeleton of node_prep.c */
        _cleanup_free_ char *image_root = NULL;
        if (snap->image && snap->image[0]) {
                int ir = images_resolve(a->cfg->image_cache_dir, snap->image, &image_root);
                if (ir < 0)
                        return err_set(reterr, ir == -ENOMEM ? ir : -ENOENT, "image",
                                       "image %s is not available on node %s", snap->image, a->node_id);
        }

        json_t *args = json_array();
        for (size_t i = 0; i < agent->n_command; i++)
                json_array_append_new(args, json_string(agent->command[i]));

        json_t *env0 = json_array();
        for (const char *const *e = sandbox_base_env; *e; e++)
                json_array_append_new(env0, json_string(*e));
        json_t *process = json_pack(
                "{s:b,s:{s:i,s:i},s:o,s:o,s:s,s:{s:[],s:[],s:[],s:[],s:[]},s:[{s:s,s:i,s:i}],s:b}",
                "terminal", 0,
                "user", "uid", RUNNER_SANDBOX_INNER_UID, "gid", RUNNER_SANDBOX_INNER_GID,
                "args", args,
                "env", env0,
                "cwd", "/workspace",
                "capabilities", "bounding", "effective", "inheritable", "permitted", "ambient",
                "rlimits", "type", "RLIMIT_NOFILE", "hard", 1024, "soft", 1024,
                "noNewPrivileges", 1);

        json_t *mounts = json_array();
        json_array_append_new(mounts, mount_entry("/proc", "proc", "proc",
                (const char *const[]){"nosuid", "noexec", "nodev", NULL}));
        json_array_append_new(mounts, mount_entry("/dev", "tmpfs", "tmpfs",
                (const char *const[]){"nosuid", "strictatime", "mode=755", "size=65536k", NULL}));
        json_array_append_new(mounts, mount_entry("/dev/pts", "devpts", "devpts",
                (const char *const[]){"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", NULL}));
        json_array_append_new(mounts, mount_entry("/dev/shm", "tmpfs", "shm",
                (const char *const[]){"nosuid", "noexec", "nodev", "mode=1777", "size=65536k", NULL}));
        /* A user namespace may not mount sysfs for a network namespace it does
         * not own (ours belongs to the host's), and crun would then bind the
         * host's /sys, listing the host's interfaces: an empty read-only tmpfs
         * instead. */
        json_array_append_new(mounts, mount_entry("/sys", "tmpfs", "tmpfs",
                (const char *const[]){"nosuid", "noexec", "nodev", "ro", "mode=555", "size=4k", NULL}));
        uint64_t disk_mb = lim && lim->disk_mb ? lim->disk_mb : RUN_DEFAULT_DISK_MB;
        char tmp_size[64];
        snprintf(tmp_size, sizeof tmp_size, "size=%" PRIu64 "m", disk_mb);
        json_array_append_new(mounts, mount_entry("/tmp", "tmpfs", "tmpfs",
                (const char *const[]){"nosuid", "nodev", "mode=1777", tmp_size, NULL}));
        if (!image_root) {
                json_array_append_new(mounts, mount_entry("/usr", "bind", "/usr",
                        (const char *const[]){"rbind", "ro", "nosuid", "nodev", NULL}));
                json_array_append_new(mounts, mount_entry("/etc", "bind", a->etc_dir,
                        (const char *const[]){"bind", "ro", "nosuid", "nodev", "noexec", NULL}));
        } else {
                /* the image keeps its own /etc (ld.so.cache, alternatives, ssl);
                 * identity, names and resolver are the node's generated files */
                static const char *const etc_files[] = {"passwd", "group", "hosts", "resolv.conf", "hostname",
                                                        "nsswitch.conf"};
                for (size_t i = 0; i < ELEMENTSOF(etc_files); i++) {
                        char src[4096], dst[64];
                        snprintf(src, sizeof src, "%s/%s", a->etc_dir, etc_files[i]);
                        snprintf(dst, sizeof dst, "/etc/%s", etc_files[i]);
                        json_array_append_new(mounts, mount_entry(dst, "bind", src,
                                (const char *const[]){"bind", "ro", "nosuid", "nodev", "noexec", NULL}));
                }
        }
        json_array_append_new(mounts, mount_entry("/workspace", "bind", sb->workspace,
                (const char *const[]){"bind", "rw", "nosuid", "nodev", NULL}));

        json_t *devices = json_array();
        json_array_append_new(devices, device_entry("/dev/null", 1, 3));
        json_array_append_new(devices, device_entry("/dev/zero", 1, 5));
        json_array_append_new(devices, device_entry("/dev/full", 1, 7));
        json_array_append_new(devices, device_entry("/dev/random", 1, 8));
        json_array_append_new(devices, device_entry("/dev/urandom", 1, 9));
        json_array_append_new(devices, device_entry("/dev/tty", 5, 0));

        /* device cgroup: deny everything, allow exactly the nodes above and ptys */
        json_t *dev_rules = json_array();
        json_array_append_new(dev_rules, json_pack("{s:b,s:s}", "allow", 0, "access", "rwm"));
        static const int allowed[][2] = {{1, 3}, {1, 5}, {1, 7}, {1, 8}, {1, 9}, {5, 0}, {5, 2}, {136, -1}};
        for (size_t i = 0; i < ELEMENTSOF(allowed); i++)
                json_array_append_new(dev_rules, allow_dev(allowed[i][0], allowed[i][1]));

        uint64_t memory_mb = lim && lim->memory_mb ? lim->memory_mb : RUN_DEFAULT_MEMORY_MB;
        uint32_t pids = lim && lim->pids ? lim->pids : RUN_DEFAULT_PIDS;
        double cpus = lim && lim->cpus > 0 ? lim->cpus : RUN_DEFAULT_CPUS;
        int64_t period = 100000;
        int64_t quota = (int64_t)(cpus * (double)period);
        if (quota < 1000)
                quota = 1000;

        json_t *resources = json_pack("{s:o,s:{s:I},s:{s:I},s:{s:I,s:I}}",
                "devices", dev_rules,
                "memory", "limit", (json_int_t)(memory_mb * 1024 * 1024),
                "pids", "limit", (json_int_t)pids,
                "cpu", "quota", (json_int_t)quota, "period", (json_int_t)period);
        /* memory+swap = memory: no escape into swap (v2: memory.swap.max 0).
         * v1 without swap accounting has no memsw file, and then no swap
         * charge to escape into either. */
        if (resources && (a->cgroup_mode == CGROUP_MODE_V2 ||
                          access("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes", F_OK) == 0))
                json_object_set_new(json_object_get(resources, "memory"), "swap",
                                    json_integer((json_int_t)(memory_mb * 1024 * 1024)));

        json_t *namespaces = json_pack("[{s:s},{s:s},{s:s},{s:s},{s:s,s:s},{s:s},{s:s}]",
                "type", "pid", "type", "mount", "type", "ipc", "type", "uts",
                "type", "network", "path", sb->netns_path, "type", "cgroup", "type", "user");
        json_int_t host_base = (json_int_t)runner_userns_host_id(sb->slot, 0);
        json_t *uid_map = json_pack("[{s:i,s:I,s:i}]", "containerID", 0, "hostID", host_base,
                                    "size", (int)RUNNER_USERNS_SIZE);
        json_t *gid_map = json_pack("[{s:i,s:I,s:i}]", "containerID", 0, "hostID", host_base,
                                    "size", (int)RUNNER_USERNS_SIZE);
        json_t *seccomp = seccomp_profile_new();

        /* runc's defaults: hide kernel interfaces that leak host data or allow writes */
        json_t *masked = json_pack("[s,s,s,s,s,s,s,s,s,s,s]", "/proc/acpi", "/proc/asound",
                "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                "/sys/devices/virtual/powercap");
        json_t *readonly = json_pack("[s,s,s,s,s,s]", "/proc/bus", "/proc/fs", "/proc/irq",
                "/proc/sys", "/proc/sysrq-trigger", "/sys/fs/cgroup");

        json_t *linux_ = json_pack("{s:o,s:o,s:o,s:o,s:o,s:s,s:o,s:o,s:o}",
                "namespaces", namespaces,
                "uidMappings", uid_map,
                "gidMappings", gid_map,
                "seccomp", seccomp,
                "devices", devices,
                "cgroupsPath", sb->cgroup_path,
                "resources", resources,
                "maskedPaths", masked,
                "readonlyPaths", readonly);

        json_t *config = json_pack("{s:s,s:o,s:{s:s,s:b},s:s,s:o,s:o}",
                "ociVersion", "1.0.2",
                "process", process,
                "root", "path", image_root ? image_root : a->rootfs_dir, "readonly", 1,
                "hostname", "paddock",
                "mounts", mounts,
                "linux", linux_);
        if (!config)
                return err_set(reterr, -ENOMEM, "bundle", "could not build config.json");
        /* capture hook: execve/execveat notify the runner-agent (capture_exec.h) */
        if (capture_exec_add_to_linux(linux_, sb->run_dir) < 0) {
                json_decref(config);
                return err_set(reterr, -ENOMEM, "bundle", "could not add exec capture to config.json");
        }
        /* the filter crun compiled for this profile before, if any (seccomp.h):
         * same program, rules not compiled again */
        json_t *sc = json_object_get(linux_, "seccomp");
        _cleanup_free_ char *sc_key = seccomp_filter_key(sc);
        _cleanup_free_ char *bpf = sc_key ? seccomp_bpf_cached(sc_key) : NULL;
        if (bpf) {
                if (json_object_set_new(config, "annotations", json_pack("{s:s}", "run.oci.seccomp_bpf_data", bpf)) < 0 ||
                    json_object_set_new(sc, "syscalls", json_array()) < 0) {
                        json_decref(config);
                        return err_set(reterr, -ENOMEM, "bundle", "could not add the seccomp program to config.json");
                }
        } else {
                free(sb->seccomp_key);
                sb->seccomp_key = TAKE_PTR(sc_key);
        }
        /* egress: proxy variables and env secrets (proxy_hook.h) */
        json_t *env = json_object_get(process, "env");
        for (const char *const *e = sb->extra_env; e && *e; e++)
                json_array_append_new(env, json_string(*e));
        /* the run's prompt, read-only (prompt_file.h) */
        if (prompt_file_add_to_bundle(sb, snap, mounts, env) < 0) {
                json_decref(config);
                return err_set(reterr, -ENOMEM, "bundle", "could not add the prompt to config.json");
        }
        /* agent adapter hook: a CLI's argv, env and HOME (agent_cli.h) */
        int ar = cli ? agent_cli_add_to_bundle(sb->cli, image_root, snap, process, mounts, reterr) : 0;
        if (ar < 0) {
                json_decref(config);
                return ar;
        }
        /* hook bridge: /paddock/bin/paddock-hook and /paddock/run of a CLI (hook_server.h) */
        if (cli && hook_server_add_to_bundle(sb, a->cfg->hook_binary, snap, mounts) < 0) {
                json_decref(config);
                return err_set(reterr, -ENOMEM, "bundle", "could not add the hook bridge to config.json");
        }
        /* workload identity tokens as files, read-only (identity_file.h) */
        if (identity_file_add_to_bundle(sb, mounts) < 0) {
                json_decref(config);
                return err_set(reterr, -ENOMEM, "bundle", "could not add the identity files to config.json");
        }
        const char *config_out = sb->config_override ? sb->config_override : sb->config_path;
        int r = json_dump_file(config, config_out, JSON_INDENT(2));
        json_decref(config);
        if (r < 0)
                return err_set(reterr, -EIO, "bundle", "could not write %s", config_out);
        return 0;
}

const char *const sandbox_base_env[] = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/workspace", "LANG=C.UTF-8",
                                        NULL};

int sandbox_start(struct sandbox *sb, const struct agent *a, int *out_fd, int *err_fd, pid_t *pid) {
        char *argv[] = {(char *)crun_exec_path(&a->crun, a->cfg->crun), "--root", a->crun_root, "run", "--detach", "--bundle", sb->run_dir,
                        "--pid-file", sb->pid_file, sb->container_id, NULL, NULL, NULL};
        if (sb->config_override) {
                /* egress: config.json with secrets lives in a memfd (proxy_hook.h) */
                argv[9] = "--config";
                argv[10] = (char *)sb->config_override;
                argv[11] = sb->container_id;
        }
        return subprocess_start(argv, sb->run_dir, out_fd, err_fd, pid);
}

int sandbox_terminate(struct sandbox *sb, const struct agent *a) {
        char *argv[] = {(char *)crun_exec_path(&a->crun, a->cfg->crun), "--root", a->crun_root, "kill", "--all",
                        sb->container_id, "TERM", NULL};
        char err[512];
        int r = subprocess_run(argv, NULL, NULL, NULL, 0, err, sizeof err, 10000);
        if (r != 0)
                log_ctx(LOG_WARN, LOG_KV("run", sb->run_id), "crun kill --all TERM exited %d: %s", r, err);
        return r;
}

pid_t sandbox_read_pid(struct sandbox *sb) {
        char buf[32];
        int fd = open(sb->pid_file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return 0;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0)
                return 0;
        buf[n] = 0;
        long v = strtol(buf, NULL, 10);
        return v > 0 ? (pid_t)v : 0;
}

void sandbox_seccomp_learn(struct sandbox *sb, const struct agent *a) {
        if (!sb->seccomp_key)
                return;
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/%s/seccomp.bpf", a->crun_root, sb->container_id) < 0)
                return;
        int r = seccomp_bpf_learn(sb->seccomp_key, path);
        if (r < 0)
                log_ctx(LOG_WARN, LOG_KV("run", sb->run_id), "could not keep crun's seccomp program %s: %s", path,
                        strerror(-r));
        free(sb->seccomp_key);
        sb->seccomp_key = NULL;
}

int sandbox_kill(struct sandbox *sb, const struct agent *a) {
        char *argv[] = {(char *)crun_exec_path(&a->crun, a->cfg->crun), "--root", a->crun_root, "kill", sb->container_id, "KILL", NULL};
        char err[512];
        int r = subprocess_run(argv, NULL, NULL, NULL, 0, err, sizeof err, 10000);
        if (r != 0)
                log_ctx(LOG_WARN, LOG_KV("run", sb->run_id), "crun kill exited %d: %s", r, err);
        return r;
}
