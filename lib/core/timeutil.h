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
/* Parses an RFC 3339 date-time ("2026-01-02T03:04:05[.frac](Z|+hh:mm|-hh:mm)",
 * 'T' and 'Z' in either case, at most 9 fraction digits, truncated to
 * microseconds) into microseconds since the epoch (UTC) in *ret_us. Every field
 * is range-checked (month, day of that month, hour, minute, second 0-59, offset
 * at most 23:59), years 0001-9999. Returns 0 or -EINVAL. */
int time_parse_rfc3339(const char *s, int64_t *ret_us);
/* Parses an RFC 3339 full-date ("2026-01-02") into the microseconds of its
 * midnight UTC. Returns 0 or -EINVAL. */
int time_parse_date(const char *s, int64_t *ret_us);
