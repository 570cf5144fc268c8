#define _XOPEN_SOURCE 700
#include "cleanup.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/macro.h"
#include "subprocess.h"

#define CRUN_TIMEOUT_MS 30000

static int crun_simple(const struct agent *a, const char *verb, const char *extra, const char *id,
                       char *err, size_t errsize) {
        char *argv[8];
        int i = 0;
        argv[i++] = (char *)crun_exec_path(&a->crun, a->cfg->crun);
        argv[i++] = "--root";
        argv[i++] = a->crun_root;
        argv[i++] = (char *)verb;
        if (extra)
                argv[i++] = (char *)extra;
        argv[i++] = (char *)id;
        argv[i] = NULL;
        return subprocess_run(argv, NULL, NULL, NULL, 0, err, errsize, CRUN_TIMEOUT_MS);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void)st;
        (void)ftw;
        int r = (flag == FTW_DP || flag == FTW_D) ? rmdir(path) : unlink(path);
        if (r < 0 && errno != ENOENT)
                log_warn("could not remove %s: %m", path);
        return 0;
}

/* rm -rf without following symlinks (FTW_PHYS) and without crossing into a
 * mount that is somehow still there (FTW_MOUNT): the workspace was writable by
 * the sandbox, so nothing in it may redirect a removal outside it. */
static void remove_tree(const char *path) {
        if (nftw(path, rm_entry, 16, FTW_PHYS | FTW_DEPTH | FTW_MOUNT) < 0 && errno != ENOENT)
                log_warn("could not walk %s: %m", path);
}

static bool mountinfo_mentions(const char *needle) {
        _cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
        char *line = NULL;
        size_t n = 0;
        bool found = false;
        if (!f)
                return true; /* cannot prove absence */
        while (getline(&line, &n, f) > 0)
                if (strstr(line, needle)) {
                        found = true;
                        break;
                }
        free(line);
        return found;
}

/* Unmounts every mount point whose path mentions the run id (deepest first,
 * as listed last), so a mount crun leaked cannot survive. */
static void umount_mentions(const char *run_id) {
        for (int pass = 0; pass < 8 && mountinfo_mentions(run_id); pass++) {
                _cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
                char *line = NULL, last[4096] = "";
                size_t n = 0;
                if (!f)
                        return;
                while (getline(&line, &n, f) > 0) {
                        char mnt[4096];
                        if (strstr(line, run_id) && sscanf(line, "%*s %*s %*s %*s %4095s", mnt) == 1)
                                snprintf(last, sizeof last, "%s", mnt);
                }
                free(line);
                if (!last[0])
                        return;
                /* mountinfo escapes spaces as \040; our paths have none */
                if (umount2(last, MNT_DETACH) < 0)
                        log_warn("could not unmount %s: %m", last);
        }
}

static void cgroup_dirs(const struct agent *a, const struct sandbox *sb, char ***ret) {
        size_t n = 0;
        char **list = calloc(66, sizeof *list);
        if (!list) {
                *ret = NULL;
                return;
        }
        if (a->cgroup_mode == CGROUP_MODE_V2) {
                if (asprintf(&list[n], "/sys/fs/cgroup/%s", sb->cgroup_path) >= 0)
                        n++;
        } else {
                for (char **m = a->cgroup_v1_mounts; m && *m && n < 64; m++)
                        if (asprintf(&list[n], "%s/%s", *m, sb->cgroup_path) >= 0)
                                n++;
                /* hybrid: the v2 hierarchy at unified/ */
                if (asprintf(&list[n], "/sys/fs/cgroup/unified/%s", sb->cgroup_path) >= 0)
                        n++;
        }
        *ret = list;
}

static void strv_freep(char ***l) {
        if (!*l)
                return;
        for (char **p = *l; *p; p++)
                free(*p);
        free(*l);
}

/* rmdir a cgroup and any child cgroups crun made under it (a v2 cgroup may
 * hold a sub-cgroup); cgroup dirs contain only pseudo-files, so rmdir is the
 * only way to remove them. */
static void rmdir_cgroup(const char *path) {
        DIR *d = opendir(path);
        if (!d)
                return;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_type != DT_DIR || !strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                char sub[4096];
                snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
                rmdir_cgroup(sub);
        }
        closedir(d);
        for (int i = 0; i < 50; i++) {
                if (rmdir(path) == 0 || errno == ENOENT)
                        return;
                if (errno != EBUSY)
                        break;
                /* processes of a killed container take a moment to leave */
                usleep(20000);
        }
        log_warn("could not remove cgroup %s: %m", path);
}

int cleanup_destroy(const struct agent *a, struct sandbox *sb, json_t **verified_gone,
                    json_t **still_present) {
        char err[512];
        int r = crun_simple(a, "delete", "-f", sb->container_id, err, sizeof err);
        if (r != 0 && !strstr(err, "does not exist") && !strstr(err, "No such file"))
                log_ctx(LOG_WARN, LOG_KV("run", sb->run_id), "crun delete exited %d: %s", r, err);

        if (umount2(sb->netns_path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
                log_ctx(LOG_WARN, LOG_KV("run", sb->run_id), "could not unmount %s: %m", sb->netns_path);
        umount_mentions(sb->id);
        if (unlink(sb->netns_path) < 0 && errno != ENOENT)
                log_ctx(LOG_WARN, LOG_KV("run", sb->run_id), "could not remove %s: %m", sb->netns_path);

        _cleanup_(strv_freep) char **cg = NULL;
        cgroup_dirs(a, sb, &cg);
        for (char **p = cg; p && *p; p++)
                rmdir_cgroup(*p);

        remove_tree(sb->run_dir);

        /* verify, item by item */
        json_t *gone = json_array(), *present = json_array();
        r = crun_simple(a, "state", NULL, sb->container_id, err, sizeof err);
        json_array_append_new(r != 0 ? gone : present, json_string("container"));
        json_array_append_new(!mountinfo_mentions(sb->id) ? gone : present, json_string("mounts"));
        json_array_append_new(access(sb->netns_path, F_OK) < 0 && errno == ENOENT ? gone : present,
                              json_string("netns"));
        bool cg_gone = cg != NULL;
        for (char **p = cg; p && *p; p++)
                if (!(access(*p, F_OK) < 0 && errno == ENOENT)) {
                        cg_gone = false;
                        log_ctx(LOG_ERROR, LOG_KV("run", sb->run_id, "path", *p), "cgroup still present");
                }
        json_array_append_new(cg_gone ? gone : present, json_string("cgroup"));
        /* no task can remain in a removed cgroup; the init must be reaped too
         * (a zombie still answers kill 0) */
        bool procs_gone = cg_gone && (sb->init_pid <= 0 || (kill(sb->init_pid, 0) < 0 && errno == ESRCH));
        json_array_append_new(procs_gone ? gone : present, json_string("processes"));
        json_array_append_new(access(sb->run_dir, F_OK) < 0 && errno == ENOENT ? gone : present,
                              json_string("workspace"));

        size_t n_present = json_array_size(present);
        for (size_t i = 0; i < n_present; i++)
                log_ctx(LOG_ERROR, LOG_KV("run", sb->run_id, "item", json_string_value(json_array_get(present, i))),
                        "sandbox item still present after destroy");
        *verified_gone = gone;
        *still_present = present;
        return n_present ? -EBUSY : 0;
}

void cleanup_leftovers(const struct agent *a) {
        const char *dirs[] = {a->runs_dir, a->netns_dir};
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
                DIR *d = opendir(dirs[i]);
                if (!d)
                        continue;
                struct dirent *de;
                char ids[256][UUID_STR_LEN];
                size_t n = 0;
                while ((de = readdir(d)) && n < ELEMENTSOF(ids))
                        if (id_is_uuid(de->d_name))
                                memcpy(ids[n++], de->d_name, UUID_STR_LEN);
                closedir(d);
                for (size_t k = 0; k < n; k++) {
                        struct sandbox sb;
                        if (sandbox_init(&sb, a, ids[k], 0) < 0) {
                                sandbox_done(&sb);
                                continue;
                        }
                        json_t *gone = NULL, *present = NULL;
                        int r = cleanup_destroy(a, &sb, &gone, &present);
                        log_ctx(r < 0 ? LOG_ERROR : LOG_WARN, LOG_KV("run", ids[k]),
                                r < 0 ? "could not remove leftovers of an unfinished run"
                                      : "removed leftovers of an unfinished run");
                        json_decref(gone);
                        json_decref(present);
                        sandbox_done(&sb);
                }
        }
}
