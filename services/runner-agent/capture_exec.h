/* Platform-level exec capture (issue 3 point 5): every execve/execveat in a
 * sandbox stops on a seccomp user notification; the runner-agent reads the
 * path and argv from /proc/<pid>/mem, the cwd and the parent from /proc, lets
 * the call continue, and once the process image has been replaced reads
 * /proc/<pid>/exe: the event's `exe_confirmed` is the file the kernel actually
 * executed (a symlink's target, a script's interpreter), whatever path and
 * argv claimed; absent when the exec failed or the program ended before it
 * could be seen (counted in paddock_runner_capture_exec_unconfirmed_total).
 * The event is queued then, before the capture thread takes the next exec.
 * Nothing the sandbox says about itself is used. crun hands the notification fd to the per-run
 * unix socket named in linux.seccomp.listenerPath (SCM_RIGHTS).
 *
 * An exec the kernel would refuse because the file is missing or not
 * executable (a shell or execvp() searching $PATH) is refused here with the
 * same errno and gives no event, so there is exactly one event per program
 * actually started.
 *
 * Policy (issue 12 §3; docs/CONTRACTS.md "Policy engine", level exec): when
 * the run's rules have a `command` rule that can ask or deny, each exec is
 * decided on its command line as given and with argv[0] replaced by the image
 * program whose content the executed file has (exec_identity.h); the strictest
 * decides. deny: the call fails with EPERM (the program does not start), a
 * policy_decision event and the exec event with "denied": true and "rule".
 * ask (not granted at the hook): the task stays blocked in execve while the
 * capture thread goes on with the run's other execs; the run's approvals
 * thread answers it (approve: the exec event then, with "approval_id"; deny,
 * deadline, run end: EPERM and the exec event "denied": true, "by").
 *
 * Direct connections: connect() stops on the same notification. One to an
 * inet address outside the sandbox's loopback (the only network it has: the
 * network namespace is the enforcement) is answered ENETUNREACH and becomes an
 * `egress` event {host, port, pid, "direct": true, "decision": "deny", "rule":
 * "platform:netns"} (at most CAPTURE_DIRECT_EVENTS_MAX per run); loopback (the
 * egress proxy) and unix sockets continue. Cost: every connect() of the
 * sandbox makes one round trip to the capture thread (tens of µs); sendto()
 * with an address (UDP) is not watched (it has no route either). */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/err.h"

struct run_events;
struct run_policy;
struct seccomp_notif_resp;
struct capture_exec;

/* Direct connects (below) reported one by one per run; past it counted. */
#define CAPTURE_DIRECT_EVENTS_MAX 256

/* Name of the listener socket in the run dir. */
#define CAPTURE_EXEC_SOCKET "capture-exec.sock"
/* Total argv bytes reported per exec; longer argv is cut and marked. */
#define CAPTURE_EXEC_ARGV_MAX (64 * 1024)

/* Adds SCMP_ACT_NOTIFY for execve, execveat and connect and listenerPath to an
 * OCI linux.seccomp object (borrowed, changed in place). Allow rules naming
 * these calls are narrowed so the notify rule is the one that applies (libseccomp
 * refuses two actions for one call); deny rules are kept. Returns 0 or -ENOMEM. */
int capture_exec_add_to_seccomp(json_t *seccomp, const char *listener_path);

/* For sandbox.c: takes linux.seccomp of the OCI `linux` object (creating a
 * default-allow profile when the bundle has none yet) and adds the notify rule
 * with listenerPath <run_dir>/CAPTURE_EXEC_SOCKET. Returns 0 or a negative errno. */
int capture_exec_add_to_linux(json_t *linux_, const char *run_dir);

/* Binds and listens on <run_dir>/CAPTURE_EXEC_SOCKET; returns the listening
 * fd (close-on-exec) or a negative errno with *reterr. crun connects to it
 * when it creates the container, so a pooled sandbox (pool.h) listens from
 * its preparation on and its run's capture takes the fd over. */
int capture_exec_listen(const char *run_dir, struct err_detail *reterr);

/* Starts the capture thread on listen_fd (taken over, closed by
 * capture_exec_stop(); < 0: listens itself with capture_exec_listen()); call
 * before crun starts the container. pooled: the container's first exec is
 * the pool's init (pool.h), let through without an event or a decision. ev
 * and policy (the run's, may be NULL: no decisions) are borrowed and must
 * outlive capture_exec_stop(); run_policy_close() must come before it (every
 * held exec answered). Returns NULL with *reterr on failure. */
struct capture_exec *capture_exec_start(const char *run_dir, int listen_fd, bool pooled, struct run_events *ev,
                                        struct run_policy *policy, struct err_detail *reterr);

/* Answers seccomp notification id on notify_fd later than it was received:
 * error 0 lets the call continue, a negative errno fails it. Checks that the
 * notification is still pending first (SECCOMP_IOCTL_NOTIF_ID_VALID: the task
 * may have died while it was held). resp (resp_size bytes, the kernel's
 * seccomp_notif_resp size) is scratch. Thread-safe per notification. Returns 0
 * or a negative errno (-ENOENT: nothing is waiting any more). */
int capture_exec_answer(int notify_fd, uint64_t id, int error, struct seccomp_notif_resp *resp, size_t resp_size);

/* Called once, on the capture thread, at the sandbox's first exec (its
 * command, after crun set up its mounts and root) before that exec goes on;
 * a negative return refuses it (EPERM). */
typedef int (*capture_exec_first_fn)(void *userdata, pid_t pid);

/* Sets it (userdata borrowed until capture_exec_stop()); call before crun starts. */
void capture_exec_on_first(struct capture_exec *c, capture_exec_first_fn fn, void *userdata);

/* Waits until the first exec event (the command itself) has been queued, so
 * the run's `running` status follows it. Returns false after timeout_ms.
 * Thread-safe. */
bool capture_exec_wait_first(struct capture_exec *c, int timeout_ms);

/* Call after the container has exited: handles what is still queued, stops
 * and joins the thread, closes everything, removes the socket and frees c.
 * Accepts NULL; returns NULL. */
struct capture_exec *capture_exec_stop(struct capture_exec *c);

/* A JSON string from bytes that may not be UTF-8 (invalid bytes become
 * U+FFFD). Caller owns the result; NULL on out-of-memory. */
json_t *capture_json_string(const char *s, size_t len);

/* Registers the exec capture metrics; call once from main(). */
void capture_exec_metrics_register(void);
