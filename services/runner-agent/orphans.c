/* Orphaned zombie children reaped by age (orphans.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "orphans.h"

/* true if pid is a zombie whose parent is parent (fields 3 and 4 of
 * /proc/<pid>/stat, after the command name, which may hold ") ") */
static bool zombie_child_of(pid_t pid, pid_t parent) {
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0)
                return false;
        buf[n] = 0;
        char *end = strrchr(buf, ')');
        char state;
        int ppid;
        if (!end || sscanf(end + 1, " %c %d", &state, &ppid) != 2)
                return false;
        return state == 'Z' && ppid == (int)parent;
}

int orphans_reap(struct orphan_reaper *o, int64_t now_us, int64_t min_age_us) {
        DIR *d = opendir("/proc");
        if (!d)
                return -errno;
        pid_t self = getpid();
        struct orphan_reaper next = {.n = 0};
        int reaped = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                char *e;
                long v = strtol(de->d_name, &e, 10);
                if (*e || v <= 0 || !zombie_child_of((pid_t)v, self))
                        continue;
                pid_t pid = (pid_t)v;
                int64_t seen = now_us;
                bool known = false; /* a zombie at an earlier pass too */
                for (unsigned i = 0; i < o->n; i++)
                        if (o->pid[i] == pid) {
                                seen = o->seen_us[i];
                                known = true;
                        }
                if (known && now_us - seen >= min_age_us) {
                        if (waitpid(pid, NULL, WNOHANG) == pid)
                                reaped++;
                } else if (next.n < ORPHANS_TRACKED) {
                        next.pid[next.n] = pid;
                        next.seen_us[next.n++] = seen;
                }
        }
        closedir(d);
        *o = next;
        return reaped;
}
