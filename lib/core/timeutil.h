/* Clock helpers. All thread-safe. */
#pragma once
#include <stddef.h>
#include <stdint.h>

/* Wall clock, microseconds since the epoch (UTC). */
int64_t time_now_us(void);
/* Monotonic clock, microseconds, for durations and deadlines. */
int64_t time_mono_us(void);
/* Formats ts_us as RFC 3339 UTC with microseconds ("2026-11-26T23:08:11.123456Z").
 * buf needs >= 32 bytes. Returns buf. */
char *time_format_rfc3339(int64_t ts_us, char *buf, size_t size);
