#include "net/fd_wait.h"

#include <errno.h>
#include <poll.h>

#include "core/timeutil.h"

int fd_wait_until(int fd, short events, int64_t deadline_mono) {
        for (;;) {
                int64_t left = (deadline_mono - time_mono_us()) / 1000;
                if (left <= 0)
                        return -ETIMEDOUT;
                struct pollfd p = {.fd = fd, .events = events};
                int r = poll(&p, 1, left > 60000 ? 60000 : (int)left);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                if (r > 0)
                        return (p.revents & (POLLERR | POLLNVAL)) && !(p.revents & events) ? -ECONNRESET : 0;
        }
}
