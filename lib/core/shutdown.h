/* SIGTERM/SIGINT handling shared by every service: the handler only sets a
 * flag and writes to an eventfd, so loops can poll either. */
#pragma once
#include <stdbool.h>

/* Installs handlers for SIGTERM and SIGINT and ignores SIGPIPE. Call once from main(). */
int shutdown_install(void);
/* True once a termination signal arrived (async-signal-safe read). */
bool shutdown_requested(void);
/* An fd that becomes readable on shutdown (never read it), for poll loops. */
int shutdown_fd(void);
/* Requests shutdown from code (e.g. a fatal error in a worker thread). */
void shutdown_request(void);
/* Sleeps ms milliseconds, waking early when shutdown is requested (for retry
 * backoffs, so SIGTERM is not held up by a long wait). Returns true if shutdown
 * was requested, false after a full sleep. Works without shutdown_install()
 * (then it is a plain sleep). Thread-safe. */
bool shutdown_sleep_ms(int ms);
