/* File permission decisions (issue 12 §3; docs/CONTRACTS.md "Policy engine",
 * level file): when the run's rules have a `path` rule that can ask or deny
 * (policy_engine_has), a second fanotify group, of class FAN_CLASS_CONTENT,
 * gets FAN_OPEN_PERM for the run's workspace filesystem (its own tmpfs) and,
 * once the sandbox exists (capture_files_perm_attach, at its first exec),
 * for each of the sandbox's own mounts (root, /usr, /etc, /tmp, ...: mount
 * marks, so only opens through the sandbox's mounts), so every open of a
 * file by any process of the sandbox waits for our answer: the engine decides
 * on the path relative to the workspace inside it, absolute elsewhere (as the
 * sandbox names it).
 *
 * deny: FAN_DENY, the opener gets EPERM, and a policy_decision event (the
 * first POLICY_EVENTS_PER_PATH attempts per path; later ones are counted in
 * the stop log). ask: the open is held, one approval per path per run
 * (run_policy_ask kind "file"); later opens of the path join it, and once it
 * is decided the decision stands for the path for the rest of the run. The
 * reader never waits for a person: held events are answered from the run's
 * approvals thread, and other opens keep flowing.
 *
 * The runner-agent's own opens (pid filter: our process) are always allowed
 * at once, and the group is closed before the runner reads the workspace for
 * the diff and artifacts (capture_files_perm_stop comes first).
 *
 * Cost: every open in the sandbox makes a round trip to this
 * thread (read the event, resolve the path: name_to_handle_at,
 * open_by_handle_at through our own mount, readlink; decide; write the
 * answer). Runs without such a rule have no group and pay nothing.
 * bench figures: docs/CONTRACTS.md "Policy engine". */
#pragma once
#include <sys/types.h>

#include "core/err.h"

struct run_events;
struct run_policy;
struct capture_files_perm;

#define POLICY_EVENTS_PER_PATH 16

/* Sets up the group for workspace (its own filesystem: the run's tmpfs) when
 * policy (borrowed, may be NULL) has a path rule that can ask or deny, and
 * starts its thread; *ret is NULL when there is nothing to decide. Call
 * after the managed files are written, before the container starts. ev and
 * policy must outlive capture_files_perm_stop(). Returns 0, or a negative
 * errno with reterr (the run must not start: the rules would not hold). */
int capture_files_perm_start(const char *workspace, struct run_events *ev, struct run_policy *policy,
                             struct capture_files_perm **ret, struct err_detail *reterr);

/* capture_exec_first_fn (capture_exec.h), userdata the capture_files_perm
 * (NULL: nothing to do): marks the mounts of the sandbox whose first process
 * is pid, before its command runs. Returns 0, or a negative errno when the
 * sandbox's root could not be marked (the exec is then refused: fail closed). */
int capture_files_perm_attach(void *userdata, pid_t pid);

/* After run_policy_close() (nothing held any more) and before the workspace
 * is read: answers anything still waiting with FAN_DENY, stops the thread,
 * closes the group and frees c. Accepts NULL; returns NULL. */
struct capture_files_perm *capture_files_perm_stop(struct capture_files_perm *c);
