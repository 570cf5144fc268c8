#include "core/timeutil.h"

#include <errno.h>
#include <stdbool.h>
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
        /* the date and time of the last second formatted, per thread:
         * gmtime_r and strftime once a second, not once a log line */
        static _Thread_local time_t last_secs;
        static _Thread_local char base[24];
        time_t secs = (time_t)(ts_us / 1000000);
        if (!base[0] || secs != last_secs) {
                struct tm tm;
                gmtime_r(&secs, &tm);
                strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
                last_secs = secs;
        }
        snprintf(buf, size, "%s.%06dZ", base, (int)(ts_us % 1000000));
        return buf;
}

/* n decimal digits of s into *ret; false if one is not a digit. */
static bool digits(const char *s, int n, int *ret) {
        int v = 0;
        for (int i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return false;
                v = v * 10 + (s[i] - '0');
        }
        *ret = v;
        return true;
}

static bool leap(int y) {
        return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* "YYYY-MM-DD" at s into seconds since the epoch of its midnight UTC. */
static bool parse_date(const char *s, int64_t *ret_secs) {
        static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        int y, m, d;
        if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &m) || s[7] != '-' || !digits(s + 8, 2, &d))
                return false;
        if (y < 1 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1] + (m == 2 && leap(y)))
                return false;
        /* days from 1970-01-01 (civil calendar, H. Hinnant's algorithm): no
         * timegm() and its time_t and locale quirks */
        int yy = y - (m <= 2);
        int era = (yy >= 0 ? yy : yy - 399) / 400;
        int yoe = yy - era * 400;
        int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        *ret_secs = ((int64_t)era * 146097 + doe - 719468) * 86400;
        return true;
}

int time_parse_date(const char *s, int64_t *ret_us) {
        int64_t secs;
        if (!s || !parse_date(s, &secs) || s[10] != '\0')
                return -EINVAL;
        *ret_us = secs * 1000000;
        return 0;
}

int time_parse_rfc3339(const char *s, int64_t *ret_us) {
        int64_t secs;
        int hh, mi, ss, frac_us = 0;
        if (!s || !parse_date(s, &secs) || (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2, &hh) ||
            s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &ss) || hh > 23 ||
            mi > 59 || ss > 59)
                return -EINVAL;
        const char *p = s + 19;
        if (*p == '.') {
                int n = 0;
                for (p++; *p >= '0' && *p <= '9'; p++, n++)
                        if (n < 6)
                                frac_us = frac_us * 10 + (*p - '0');
                if (n == 0 || n > 9)
                        return -EINVAL;
                for (; n < 6; n++)
                        frac_us *= 10;
        }
        int off = 0;
        if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
                off = 0;
        else if (*p == '+' || *p == '-') {
                int oh, om;
                if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om) || p[6] != '\0' || oh > 23 ||
                    om > 59)
                        return -EINVAL;
                off = (oh * 60 + om) * 60 * (*p == '-' ? -1 : 1);
        } else
                return -EINVAL;
        *ret_us = (secs + hh * 3600 + mi * 60 + ss - off) * 1000000 + frac_us;
        return 0;
}
