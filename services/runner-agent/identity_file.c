/* Workload identity tokens as read-only files in the sandbox (identity_file.h). */
#include "identity_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/macro.h"

/* 8 tokens of a few KiB at most (spec.identity's limit) */
#define IDENTITY_TMPFS_SIZE "256k"

static int write_all(int fd, const char *s, size_t len) {
        while (len > 0) {
                ssize_t n = write(fd, s, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                s += n;
                len -= (size_t)n;
        }
        return 0;
}

int identity_file_write(struct sandbox *sb, const struct secret_file *files, size_t n, struct err_detail *reterr) {
        if (n == 0)
                return 0;
        _cleanup_free_ char *dir = NULL, *pdir = NULL, *point = NULL;
        if (asprintf(&dir, "%s/identity", sb->run_dir) < 0 || asprintf(&pdir, "%s/prompt", sb->run_dir) < 0 ||
            asprintf(&point, "%s/prompt/identity", sb->run_dir) < 0)
                return -ENOMEM;
        /* the mount point under /paddock's source (prompt_file.c's dir): the
         * sandbox's root is read-only, crun cannot make it there */
        if ((mkdir(pdir, 0755) < 0 && errno != EEXIST) || mkdir(point, 0755) < 0 || mkdir(dir, 0700) < 0)
                return err_set(reterr, -errno, "identity", "cannot create the identity dirs in %s: %m", sb->run_dir);
        char opts[128];
        snprintf(opts, sizeof opts, "size=" IDENTITY_TMPFS_SIZE ",mode=0500,uid=%u,gid=%u", (unsigned)sb->agent_uid,
                 (unsigned)sb->agent_gid);
        if (mount("paddock-identity", dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) < 0)
                return err_set(reterr, -errno, "identity", "cannot mount the identity tmpfs on %s: %m", dir);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *path = NULL;
                if (asprintf(&path, "%s/%s", dir, files[i].name) < 0)
                        return -ENOMEM;
                int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0400);
                if (fd < 0)
                        return err_set(reterr, -errno, "identity", "cannot create identity file %s: %m", files[i].name);
                int r = write_all(fd, files[i].value, files[i].len);
                if (r >= 0 && fchown(fd, sb->agent_uid, sb->agent_gid) < 0)
                        r = -errno;
                if (close(fd) < 0 && r >= 0)
                        r = -errno;
                if (r < 0)
                        return err_set(reterr, r, "identity", "cannot write identity file %s: %s", files[i].name,
                                       strerror(-r));
        }
        sb->identity_files = true;
        return 0;
}

int identity_file_add_to_bundle(const struct sandbox *sb, json_t *mounts) {
        if (!sb->identity_files)
                return 0;
        _cleanup_free_ char *dir = NULL, *pdir = NULL;
        if (asprintf(&dir, "%s/identity", sb->run_dir) < 0 || asprintf(&pdir, "%s/prompt", sb->run_dir) < 0)
                return -ENOMEM;
        bool have_paddock = false;
        size_t i;
        json_t *m;
        json_array_foreach(mounts, i, m)
                have_paddock |= !strcmp(json_string_value(json_object_get(m, "destination")) ?: "", "/paddock");
        if (!have_paddock) {
                m = json_pack("{s:s, s:s, s:s, s:[s,s,s,s,s]}", "destination", "/paddock", "type", "bind", "source", pdir,
                              "options", "bind", "ro", "nosuid", "nodev", "noexec");
                if (!m || json_array_append_new(mounts, m) < 0)
                        return -ENOMEM;
        }
        m = json_pack("{s:s, s:s, s:s, s:[s,s,s,s,s]}", "destination", IDENTITY_FILE_DIR, "type", "bind", "source", dir,
                      "options", "bind", "ro", "nosuid", "nodev", "noexec");
        if (!m || json_array_append_new(mounts, m) < 0)
                return -ENOMEM;
        return 0;
}
