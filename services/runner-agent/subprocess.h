/* Starting helper programs (crun, diff) with posix_spawn: the agent is
 * multithreaded, so it never forks to do work. Children get stdin /dev/null, a
 * minimal environment, default signal dispositions and no fd of ours beyond
 * 0-2. Thread-safe. */
#pragma once
#include <stddef.h>
#include <sys/types.h>

/* Starts argv[0] (absolute path) in cwd (NULL: unchanged). If out_fd/err_fd are
 * not NULL, the child's stdout/stderr go to pipes whose read ends (non-blocking,
 * close-on-exec) are returned there; otherwise to /dev/null. Returns 0 and the
 * pid, or a negative errno. */
int subprocess_start(char *const argv[], const char *cwd, int *out_fd, int *err_fd, pid_t *ret_pid);

#define SUBPROCESS_PASS_MAX 4
/* subprocess_start() that also hands the child pass[0..n_pass) (borrowed,
 * at most SUBPROCESS_PASS_MAX) as its fds 3, 4, ...; nothing else of ours. */
int subprocess_start_fds(char *const argv[], const char *cwd, int *out_fd, int *err_fd, const int *pass,
                         size_t n_pass, pid_t *ret_pid);

/* Waits for pid up to timeout_ms (< 0: forever); on timeout kills it with
 * SIGKILL and reaps it. Returns the wait status (>= 0) or -ETIMEDOUT after the
 * kill, or another negative errno. */
int subprocess_wait(pid_t pid, int timeout_ms);

/* Runs argv to completion within timeout_ms. stdout is collected into *out
 * (malloc'd, NUL-terminated, caller frees) up to max_out bytes when out is not
 * NULL; stderr's first bytes go to errbuf. Returns the exit code (0-255,
 * 128+signal), or a negative errno. More output than max_out kills the child
 * and returns -EFBIG, the deadline kills it and returns -ETIMEDOUT: both still
 * hand over what was collected (the first max_out bytes at most), so a
 * caller can keep a truncated result. */
int subprocess_run(char *const argv[], const char *cwd, char **out, size_t *out_len, size_t max_out,
              char *errbuf, size_t errsize, int timeout_ms);
