#include "core/business_clock.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/log.h"
#include "core/timeutil.h"

static char *clock_path;
static pthread_mutex_t clock_lock = PTHREAD_MUTEX_INITIALIZER;
static struct timespec clock_mtime;
static int64_t clock_offset_s;
static bool clock_warned;

int business_clock_init(const char *path) {
        free(clock_path);
        clock_path = NULL;
        if (path && *path && !(clock_path = strdup(path)))
                return -ENOMEM;
        return 0;
}

/* Re-reads the offset when the file changed; called under clock_lock. */
static void clock_refresh(void) {
        struct stat st;
        if (stat(clock_path, &st) < 0) {
                clock_offset_s = 0;
                clock_mtime = (struct timespec){0};
                return;
        }
        if (st.st_mtim.tv_sec == clock_mtime.tv_sec && st.st_mtim.tv_nsec == clock_mtime.tv_nsec)
                return;
        clock_mtime = st.st_mtim;
        char buf[32] = "";
        FILE *f = fopen(clock_path, "re");
        if (f) {
                size_t n = fread(buf, 1, sizeof buf - 1, f);
                buf[n] = '\0';
                fclose(f);
        }
        char *end;
        errno = 0;
        long long v = strtoll(buf, &end, 10);
        while (*end == '\n' || *end == ' ')
                end++;
        if (errno || end == buf || *end) {
                if (!clock_warned)
                        log_warn("business clock file %s holds no integer offset; using the wall clock", clock_path);
                clock_warned = true;
                v = 0;
        }
        clock_offset_s = v;
}

int64_t business_clock_now_us(void) {
        int64_t now = time_now_us();
        if (!clock_path)
                return now;
        pthread_mutex_lock(&clock_lock);
        clock_refresh();
        int64_t off = clock_offset_s;
        pthread_mutex_unlock(&clock_lock);
        return now + off * 1000000;
}
