#include "drain.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "core/shutdown.h"

static void flag_path(const char *state_dir, char *buf, size_t size) {
        snprintf(buf, size, "%s/%s", state_dir, RUNNER_DRAIN_FLAG);
}

bool runner_draining(const struct agent *a) {
        char p[PATH_MAX];
        flag_path(a->state_dir, p, sizeof p);
        return access(p, F_OK) == 0;
}

void runner_drain_reset(const struct agent *a) {
        char p[PATH_MAX];
        flag_path(a->state_dir, p, sizeof p);
        if (unlink(p) == 0)
                log_info("removed the drain flag a previous process left: this node takes runs");
}

void runner_drain_tick(struct agent *a) {
        if (shutdown_requested() || !runner_draining(a))
                return;
        double cpus;
        uint64_t mem;
        if (agent_running(a, &cpus, &mem, NULL) > 0)
                return;
        char p[PATH_MAX];
        flag_path(a->state_dir, p, sizeof p);
        log_info("drained: no run left, stopping");
        (void)unlink(p);
        shutdown_request();
}

int runner_drain_main(int argc, char **argv, const char *state_dir) {
        long timeout_s = 0;
        for (int i = 1; i < argc; i++) {
                char *end = NULL;
                if (!strcmp(argv[i], "--timeout-s") && i + 1 < argc) {
                        errno = 0;
                        timeout_s = strtol(argv[++i], &end, 10);
                        if (errno || !end || *end || timeout_s < 0) {
                                fprintf(stderr, "paddock-runner-agent drain: --timeout-s: \"%s\" is not a number "
                                                "of seconds\n", argv[i]);
                                return CONFIG_EXIT_BAD;
                        }
                } else {
                        fprintf(stderr, "usage: paddock-runner-agent drain [--timeout-s N]\n");
                        return CONFIG_EXIT_BAD;
                }
        }
        if (!state_dir || !*state_dir)
                state_dir = "/var/lib/paddock-runner"; /* the setting's default (main.c) */
        char p[PATH_MAX];
        flag_path(state_dir, p, sizeof p);
        int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) {
                log_error("could not write the drain flag %s: %m", p);
                return 1;
        }
        close(fd);
        log_info("draining: this node takes no new run; waiting for its runs to finish");
        for (long waited_ms = 0; access(p, F_OK) == 0; waited_ms += 500) {
                if (timeout_s > 0 && waited_ms >= timeout_s * 1000) {
                        log_error("still draining after %ld s", timeout_s);
                        return 1;
                }
                usleep(500 * 1000);
        }
        log_info("drained");
        return 0;
}
