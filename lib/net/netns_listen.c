#include "net/netns_listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct listen_job {
        const char *netns_path;
        uint16_t port;
        int backlog;
        int fd, err;
        char what[64];
};

static int listen_here(struct listen_job *job) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                snprintf(job->what, sizeof job->what, "socket");
                return -errno;
        }
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                                 .sin_port = htons(job->port)};
        socklen_t sl = sizeof sa;
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, job->backlog) < 0 ||
            getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
                int e = -errno;
                snprintf(job->what, sizeof job->what, "bind/listen on 127.0.0.1");
                close(fd);
                return e;
        }
        job->fd = fd;
        job->port = ntohs(sa.sin_port);
        return 0;
}

static void *listen_thread(void *userdata) {
        struct listen_job *job = userdata;
        int nfd = open(job->netns_path, O_RDONLY | O_CLOEXEC);
        if (nfd < 0) {
                job->err = -errno;
                snprintf(job->what, sizeof job->what, "open netns");
                return NULL;
        }
        if (setns(nfd, CLONE_NEWNET) < 0) {
                job->err = -errno;
                snprintf(job->what, sizeof job->what, "setns");
                close(nfd);
                return NULL;
        }
        close(nfd);
        job->err = listen_here(job);
        return NULL;
}

int netns_listen_loopback(const char *netns_path, uint16_t port, int backlog, uint16_t *ret_port, char *what,
                          size_t what_len) {
        struct listen_job job = {.netns_path = netns_path, .port = port, .backlog = backlog, .fd = -1};
        if (netns_path) {
                pthread_t t;
                int r = pthread_create(&t, NULL, listen_thread, &job);
                if (r != 0)
                        job.err = -r, snprintf(job.what, sizeof job.what, "thread");
                else
                        pthread_join(t, NULL);
        } else
                job.err = listen_here(&job);
        if (job.err < 0) {
                snprintf(what, what_len, "%s", job.what);
                return job.err;
        }
        *ret_port = job.port;
        return job.fd;
}
