/* Cleanup attributes and small helpers used everywhere (systemd style). */
#pragma once

#include <stdlib.h>
#include <unistd.h>
#include <stdio.h>

#define _cleanup_(f) __attribute__((__cleanup__(f)))
#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)
#define _unused_ __attribute__((__unused__))
#define _printf_(a, b) __attribute__((__format__(printf, a, b)))

#define TAKE_PTR(p) __extension__({ __typeof__(p) _p_ = (p); (p) = NULL; _p_; })
#define TAKE_FD(fd) __extension__({ int _fd_ = (fd); (fd) = -1; _fd_; })
#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define STRLEN(s) (sizeof(s) - 1)

static inline void freep(void *p) { free(*(void **)p); }
static inline void closep(int *fd) { if (*fd >= 0) close(*fd); }
static inline void fclosep(FILE **f) { if (*f) fclose(*f); }

/* Defines name##p(type **) calling func(*p) when non-NULL, for _cleanup_. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                                  \
        static inline void func##p(type *p) { if (*p) func(*p); }
