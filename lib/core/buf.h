/* A growing byte buffer's one growth rule (lib/core/json_dump.c's writer,
 * lib/pg/pg_copy.c's COPY data). Header only: the Kafka mock builds
 * json_dump.c without the library. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

/* Makes room for n more bytes after the len used of *data (capacity
 * *cap), doubling from first (an empty buffer's) as often as needed.
 * False, nothing changed, when out of memory or the size would overflow.
 * *data may move: pointers into it are stale after a true return. Not
 * thread-safe (one buffer, one thread). */
static inline bool buf_reserve(char **data, size_t *cap, size_t len, size_t n, size_t first) {
        if (*cap - len >= n)
                return true;
        size_t c = *cap ? *cap : first;
        while (c - len < n) {
                if (c > SIZE_MAX / 2)
                        return false;
                c *= 2;
        }
        char *p = realloc(*data, c);
        if (!p)
                return false;
        *data = p;
        *cap = c;
        return true;
}
