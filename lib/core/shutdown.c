#include "core/shutdown.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/timeutil.h"

static atomic_bool requested;
static int wake_fd = -1;

static void on_signal(int sig) {
        (void)sig;
        shutdown_request();
}

void shutdown_request(void) {
        atomic_store(&requested, true);
        if (wake_fd >= 0) {
                uint64_t one = 1;
                ssize_t r = write(wake_fd, &one, sizeof one);
                (void)r;
        }
}

int shutdown_install(void) {
        wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (wake_fd < 0)
                return -errno;
        struct sigaction sa = {.sa_handler = on_signal};
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0)
                return -errno;
        signal(SIGPIPE, SIG_IGN);
        return 0;
}

bool shutdown_requested(void) { return atomic_load(&requested); }
int shutdown_fd(void) { return wake_fd; }

bool shutdown_sleep_ms(int ms) {
        /* The eventfd is never read, so once written it keeps poll() returning at once. */
        int64_t deadline = time_mono_us() + (int64_t)(ms > 0 ? ms : 0) * 1000;
        for (;;) {
                if (shutdown_requested())
                        return true;
                int64_t left_ms = (deadline - time_mono_us() + 999) / 1000;
                if (left_ms <= 0)
                        return false;
                /* fd -1 (not installed) is ignored by poll(): a plain sleep; EINTR from
                 * an unrelated signal just goes round again */
                struct pollfd p = {.fd = wake_fd, .events = POLLIN};
                poll(&p, 1, (int)left_ms);
        }
}
