/* Waiting for a non-blocking socket, bounded by a deadline (time_mono_us
 * clock): the one wait of the runner's blocking-style I/O paths (egress
 * proxy workers, TLS origination). */
#pragma once
#include <stdint.h>

/* Waits until fd is ready for events (POLLIN/POLLOUT) or deadline_mono
 * passes. Returns 0 when ready, -ETIMEDOUT, -ECONNRESET when the fd reports
 * an error or is invalid without being ready, or another negative errno. */
int fd_wait_until(int fd, short events, int64_t deadline_mono);
