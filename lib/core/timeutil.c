#include "core/timeutil.h"

#include <stdio.h>
#include <time.h>

int64_t time_now_us(void) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

int64_t time_mono_us(void) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

char *time_format_rfc3339(int64_t ts_us, char *buf, size_t size) {
        time_t secs = (time_t)(ts_us / 1000000);
        struct tm tm;
        gmtime_r(&secs, &tm);
        char base[24];
        strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(buf, size, "%s.%06dZ", base, (int)(ts_us % 1000000));
        return buf;
}
