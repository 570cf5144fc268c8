#include "crun_exec.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/macro.h"

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U /* Linux 6.3: executable memfd even under vm.memfd_noexec=1 */
#endif

/* exactly the set runc/crun check (F_SEAL_FUTURE_WRITE would fail an
 * equality test in older cloned_binary.c) */
#define CRUN_EXEC_SEALS (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)

int crun_exec_prepare(struct crun_exec *ce, const char *binary) {
        *ce = (struct crun_exec){.fd = -1};
        _cleanup_close_ int src = open(binary, O_RDONLY | O_CLOEXEC);
        if (src < 0)
                return -errno;
        struct stat st;
        if (fstat(src, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -ENOEXEC;
        _cleanup_close_ int fd = memfd_create("crun", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
        if (fd < 0 && errno == EINVAL) /* before 6.3 MFD_EXEC is unknown; exec is the default */
                fd = memfd_create("crun", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
                return -errno;
        off_t left = st.st_size;
        while (left > 0) {
                ssize_t n = sendfile(fd, src, NULL, (size_t)left);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -EIO; /* shrank while we copied */
                left -= n;
        }
        if (fcntl(fd, F_ADD_SEALS, CRUN_EXEC_SEALS) < 0)
                return -errno;
        if (fcntl(fd, F_GET_SEALS) != CRUN_EXEC_SEALS)
                return -EPERM;
        /* the child resolves our fd table's entry: the memfd stays close-on-exec
         * and never reaches crun or a sandbox as an open descriptor */
        snprintf(ce->path, sizeof ce->path, "/proc/%d/fd/%d", (int)getpid(), fd);
        ce->fd = TAKE_FD(fd);
        return 0;
}

void crun_exec_done(struct crun_exec *ce) {
        if (ce->path[0])
                close(ce->fd);
        *ce = (struct crun_exec){.fd = -1};
}
