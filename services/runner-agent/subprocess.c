#include "subprocess.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/macro.h"
#include "core/timeutil.h"

/* Helpers get a fixed environment: nothing of ours (Kafka settings) leaks. */
static char *const subprocess_env[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", NULL};

int subprocess_start(char *const argv[], const char *cwd, int *out_fd, int *err_fd, pid_t *ret_pid) {
        return subprocess_start_fds(argv, cwd, out_fd, err_fd, NULL, 0, ret_pid);
}

int subprocess_start_fds(char *const argv[], const char *cwd, int *out_fd, int *err_fd, const int *pass,
                         size_t n_pass, pid_t *ret_pid) {
        int outp[2] = {-1, -1}, errp[2] = {-1, -1};
        int high[SUBPROCESS_PASS_MAX];
        size_t n_high = 0;
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        int r;

        if (n_pass > SUBPROCESS_PASS_MAX)
                return -E2BIG;
        /* copies above the targets 3.. first, so no dup2 below overwrites a
         * descriptor another one still has to copy */
        for (; n_high < n_pass; n_high++)
                if ((high[n_high] = fcntl(pass[n_high], F_DUPFD_CLOEXEC, 3 + (int)n_pass)) < 0) {
                        r = -errno;
                        goto close_pipes;
                }
        if (out_fd && pipe2(outp, O_CLOEXEC) < 0) {
                r = -errno;
                goto close_pipes;
        }
        if (err_fd && pipe2(errp, O_CLOEXEC) < 0) {
                r = -errno;
                goto close_pipes;
        }
        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&attr);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        if (out_fd)
                posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
        else
                posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        if (err_fd)
                posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
        else
                posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
        for (size_t i = 0; i < n_pass; i++)
                posix_spawn_file_actions_adddup2(&fa, high[i], 3 + (int)i);
        /* librdkafka and libwebsockets sockets must never reach a child */
        posix_spawn_file_actions_addclosefrom_np(&fa, 3 + (int)n_pass);
        if (cwd)
                posix_spawn_file_actions_addchdir_np(&fa, cwd);

        /* we ignore SIGPIPE and may block signals in threads: children must not inherit that */
        sigset_t all, none;
        sigfillset(&all);
        sigemptyset(&none);
        posix_spawnattr_setsigdefault(&attr, &all);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

        pid_t pid;
        r = -posix_spawn(&pid, argv[0], &fa, &attr, argv, subprocess_env);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        if (r < 0)
                goto close_pipes;

        if (out_fd) {
                close(outp[1]);
                fcntl(outp[0], F_SETFL, O_NONBLOCK);
                *out_fd = outp[0];
        }
        if (err_fd) {
                close(errp[1]);
                fcntl(errp[0], F_SETFL, O_NONBLOCK);
                *err_fd = errp[0];
        }
        *ret_pid = pid;
        r = 0;
        goto close_high;

close_pipes:
        for (int i = 0; i < 2; i++) {
                if (outp[i] >= 0)
                        close(outp[i]);
                if (errp[i] >= 0)
                        close(errp[i]);
        }
close_high:
        for (size_t i = 0; i < n_high; i++)
                close(high[i]);
        return r;
}

static int pidfd_open_(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int subprocess_wait(pid_t pid, int timeout_ms) {
        int status;
        if (timeout_ms >= 0) {
                _cleanup_close_ int pfd = pidfd_open_(pid);
                if (pfd >= 0) {
                        struct pollfd p = {.fd = pfd, .events = POLLIN};
                        int n;
                        do
                                n = poll(&p, 1, timeout_ms);
                        while (n < 0 && errno == EINTR);
                        if (n == 0) {
                                kill(pid, SIGKILL);
                                while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                                        ;
                                return -ETIMEDOUT;
                        }
                }
        }
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        return status;
}

static int exit_code(int status) {
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        if (WIFSIGNALED(status))
                return 128 + WTERMSIG(status);
        return 255;
}

int subprocess_run(char *const argv[], const char *cwd, char **out, size_t *out_len, size_t max_out,
              char *errbuf, size_t errsize, int timeout_ms) {
        _cleanup_close_ int ofd = -1, efd = -1;
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, cap = 0, elen = 0;
        bool too_big = false;
        pid_t pid;

        if (errbuf && errsize)
                errbuf[0] = 0;
        int r = subprocess_start(argv, cwd, out ? &ofd : NULL, &efd, &pid);
        if (r < 0)
                return r;

        int64_t deadline = time_mono_us() + (int64_t)timeout_ms * 1000;
        bool timed_out = false;
        while ((ofd >= 0 || efd >= 0) && !too_big) {
                struct pollfd p[2] = {{.fd = ofd, .events = POLLIN}, {.fd = efd, .events = POLLIN}};
                int wait_ms = (int)((deadline - time_mono_us()) / 1000);
                if (wait_ms <= 0) {
                        timed_out = true;
                        break;
                }
                int n = poll(p, 2, wait_ms);
                if (n < 0 && errno != EINTR)
                        break;
                if (n <= 0)
                        continue;
                if (ofd >= 0 && p[0].revents) {
                        char tmp[65536];
                        ssize_t k = read(ofd, tmp, sizeof tmp);
                        if (k > 0) {
                                if (len + (size_t)k > max_out) {
                                        /* keep what fits; the child is killed below */
                                        too_big = true;
                                        k = (ssize_t)(max_out - len);
                                }
                                if (len + (size_t)k + 1 > cap) {
                                        size_t ncap = cap ? cap : 65536;
                                        while (ncap < len + (size_t)k + 1)
                                                ncap *= 2;
                                        char *nb = realloc(buf, ncap);
                                        if (!nb) {
                                                kill(pid, SIGKILL);
                                                subprocess_wait(pid, -1);
                                                return -ENOMEM;
                                        }
                                        buf = nb;
                                        cap = ncap;
                                }
                                memcpy(buf + len, tmp, (size_t)k);
                                len += (size_t)k;
                        } else if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR)) {
                                close(ofd);
                                ofd = -1;
                        }
                }
                if (efd >= 0 && p[1].revents) {
                        char tmp[4096];
                        ssize_t k = read(efd, tmp, sizeof tmp);
                        if (k > 0) {
                                if (errbuf && elen + 1 < errsize) {
                                        size_t c = (size_t)k < errsize - 1 - elen ? (size_t)k : errsize - 1 - elen;
                                        memcpy(errbuf + elen, tmp, c);
                                        elen += c;
                                        errbuf[elen] = 0;
                                }
                        } else if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR)) {
                                close(efd);
                                efd = -1;
                        }
                }
        }
        int status;
        if (too_big || timed_out) {
                kill(pid, SIGKILL);
                (void)subprocess_wait(pid, -1);
                status = too_big ? -EFBIG : -ETIMEDOUT;
        } else {
                int64_t left_ms = (deadline - time_mono_us()) / 1000;
                status = subprocess_wait(pid, left_ms > 0 ? (int)left_ms : 0);
                if (status < 0 && status != -ETIMEDOUT)
                        return status;
        }
        if (errbuf && elen > 0 && errbuf[elen - 1] == '\n')
                errbuf[elen - 1] = 0;
        if (out) {
                if (!buf && !(buf = malloc(1)))
                        return -ENOMEM;
                buf[len] = 0;
                *out = TAKE_PTR(buf);
                if (out_len)
                        *out_len = len;
        }
        return status < 0 ? status : exit_code(status);
}
