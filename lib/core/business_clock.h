/* The business clock: "now" for decisions that span days or months (retention
 * expiry, budget months), and nothing else. In production it is the wall
 * clock. A test moves it by writing an offset in seconds (a decimal integer,
 * may be negative) into the file named by PADDOCK_BUSINESS_CLOCK_FILE; the
 * file is re-read when its mtime changes, so a running stack follows it
 * without a restart (issue 14 §3/§4: "a clock the test controls").
 * Token lifetimes, deadlines, timeouts and signatures keep the real clock:
 * moving this one must never extend or shorten a credential.
 * Thread-safe. */
#pragma once
#include <stdint.h>

/* Sets the offset file (NULL or "" = wall clock only). Call once at start,
 * before other threads; path is copied. Returns 0 or -ENOMEM. */
int business_clock_init(const char *path);
/* Wall clock plus the file's offset, microseconds since the epoch (UTC).
 * A missing, empty or malformed file counts as offset 0 (logged once). */
int64_t business_clock_now_us(void);
