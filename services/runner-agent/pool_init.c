/* paddock-pool-init: pid 1 of a pooled sandbox (pool.h), static like
 * paddock-hook so that nothing of the image is loaded into it.
 *
 * crun created the sandbox ahead of any run with this program as the
 * process; it gets it as fd 3 (a sealed memfd: no file of ours in the
 * sandbox) and the read end of a pipe as fd 4. When a run claims the sandbox
 * the runner-agent writes the run's command and environment there and starts
 * the container: this program reads them, closes both fds and execs the
 * command as crun would have (same uid, cwd /workspace, no capabilities,
 * seccomp already applied by crun). The pipe carries NUL-terminated strings:
 * the argument count in decimal, the arguments, then the environment to EOF. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SPEC_MAX (1 << 20)
#define ITEMS_MAX 8192

static void die(const char *what, const char *arg) {
        dprintf(2, "paddock: %s%s%s: %s\n", what, arg ? " " : "", arg ? arg : "", strerror(errno));
        _exit(127);
}

int main(void) {
        static char buf[SPEC_MAX + 1];
        static char *items[ITEMS_MAX];
        size_t len = 0;
        for (;;) {
                ssize_t n = read(4, buf + len, SPEC_MAX - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        die("reading the run's command", NULL);
                if (n == 0)
                        break;
                len += (size_t)n;
                if (len == SPEC_MAX) {
                        errno = E2BIG;
                        die("reading the run's command", NULL);
                }
        }
        close(3);
        close(4);
        buf[len] = 0;
        size_t n = 0;
        for (size_t off = 0; off < len && n < ITEMS_MAX; off += strlen(buf + off) + 1)
                items[n++] = buf + off;
        char *end;
        long argc = n ? strtol(items[0], &end, 10) : -1;
        if (n == 0 || *end || argc < 1 || (size_t)argc >= n) {
                errno = EINVAL;
                die("reading the run's command", NULL);
        }
        static char *argv[ITEMS_MAX + 1], *envp[ITEMS_MAX + 1];
        memcpy(argv, items + 1, (size_t)argc * sizeof *argv);
        memcpy(envp, items + 1 + argc, (n - 1 - (size_t)argc) * sizeof *envp);
        extern char **environ;
        environ = envp;
        execvp(argv[0], argv);
        die("exec", argv[0]);
}
