/* The run's prompt as a read-only file in the sandbox (prompt_file.h). */
#include <errno.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/ids.h"
#include "core/macro.h"
#include "prompt_file.h"

static bool has_prompt(const Paddock__V1__SandboxSnapshot *snap) {
        return snap && snap->prompt && snap->prompt->rendered;
}

static char *prompt_dir(const struct sandbox *sb) {
        char *p;
        return asprintf(&p, "%s/prompt", sb->run_dir) < 0 ? NULL : p;
}

int prompt_file_write(const struct sandbox *sb, const Paddock__V1__SandboxSnapshot *snap, struct err_detail *reterr) {
        if (!has_prompt(snap))
                return 0;
        _cleanup_free_ char *dir = prompt_dir(sb), *path = NULL;
        if (!dir || asprintf(&path, "%s/prompt.md", dir) < 0)
                return -ENOMEM;
        if (mkdir(dir, 0755) < 0)
                return err_set(reterr, -errno, "prompt", "cannot create %s: %m", dir);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0444);
        if (fd < 0)
                return err_set(reterr, -errno, "prompt", "cannot create %s: %m", path);
        const char *s = snap->prompt->rendered;
        size_t len = strlen(s);
        while (len > 0) {
                ssize_t n = write(fd, s, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int r = -errno;
                        close(fd);
                        return err_set(reterr, r, "prompt", "cannot write %s: %s", path, strerror(-r));
                }
                s += n;
                len -= (size_t)n;
        }
        if (close(fd) < 0)
                return err_set(reterr, -errno, "prompt", "cannot write %s: %m", path);
        /* the agent reads it, nobody in the sandbox writes it (the mount is ro too) */
        if (chmod(dir, 0555) < 0)
                return err_set(reterr, -errno, "prompt", "cannot chmod %s: %m", dir);
        return 0;
}

int prompt_file_add_to_bundle(const struct sandbox *sb, const Paddock__V1__SandboxSnapshot *snap, json_t *mounts,
                              json_t *env) {
        if (!has_prompt(snap))
                return 0;
        _cleanup_free_ char *dir = prompt_dir(sb);
        json_t *m = dir ? json_pack("{s:s, s:s, s:s, s:[s,s,s,s,s]}", "destination", PROMPT_FILE_DIR, "type", "bind",
                                    "source", dir, "options", "bind", "ro", "nosuid", "nodev", "noexec")
                        : NULL;
        if (!m || json_array_append_new(mounts, m) < 0 ||
            json_array_append_new(env, json_string("PADDOCK_PROMPT_FILE=" PROMPT_FILE_PATH)) < 0)
                return -ENOMEM;
        return 0;
}

void prompt_file_event_data(const Paddock__V1__SandboxSnapshot *snap, json_t *data) {
        if (!has_prompt(snap) || !data)
                return;
        unsigned char d[SHA256_DIGEST_LENGTH];
        char hex[65];
        SHA256((const unsigned char *)snap->prompt->rendered, strlen(snap->prompt->rendered), d);
        hex_encode(d, sizeof d, hex);
        json_object_set_new(data, "prompt_sha256", json_string(hex));
}
