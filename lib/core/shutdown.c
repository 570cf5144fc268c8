#include "core/shutdown.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

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
