/* Platform-level file capture (issue 3 point 5): a fanotify group with a
 * filesystem mark on the filesystem holding the run's workspace reports every
 * file read, written, created, deleted or renamed there as a `file_access`
 * event {"path" (relative to the workspace), "mode", "pid"}, resolved by the
 * kernel's file handles, not by anything the sandbox says.
 *
 * One open is one event: a read is reported when a file opened read-only is
 * closed (FAN_CLOSE_NOWRITE), a write when a file opened for writing is closed
 * (FAN_CLOSE_WRITE), so a process writing in a loop gives one event, not one
 * per write. Accesses are coalesced over a short window (issue 10 point 3):
 * one event per (path, mode) per window with "count", "first_at" and
 * "last_at", sent at most window_ms after the window opened; every access is
 * counted in exactly one event, and the window is sent when capture stops,
 * before the run's end. Renames and overflows close the window (they order
 * what follows). A kernel queue overflow is reported as {"overflow": true}.
 * Directory listings are not reported; mkdir/rmdir/rename of directories are
 * ("dir": true).
 *
 * A run gets at most max_events file_access events (coalesced ones, each
 * counting once whatever its count): past them accesses are
 * counted, and at the end one {"overflow": true, "limit", "dropped"} event and
 * a `limit` event "file_events" say how many were not reported one by one, so
 * a run creating 100k files cannot flood the node's bus (issue 9 point 4). */
#pragma once
#include <stdint.h>

#include "core/err.h"

struct run_events;
struct capture_files;

/* Marks the filesystem of workspace (an existing directory; call after the
 * runner-agent has written the managed files and before the container starts)
 * and starts the capture thread. Events caused by the runner-agent's own
 * process are ignored. ev is borrowed and must outlive capture_files_stop().
 * Returns NULL with *reterr on failure. */
struct capture_files *capture_files_start(const char *workspace, struct run_events *ev, uint64_t max_events,
                                          uint64_t window_ms, struct err_detail *reterr);

/* Call after the container has exited (its processes have closed every file,
 * so every event is queued): emits what is queued, stops the thread and frees
 * c. Call before reading the workspace for the diff. Accepts NULL; returns NULL. */
struct capture_files *capture_files_stop(struct capture_files *c);

/* Registers the file capture metrics; call once from main(). */
void capture_files_metrics_register(void);
