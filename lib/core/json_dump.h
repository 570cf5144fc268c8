/* json_dumpb, faster: the same bytes as jansson's json_dumpb for the same
 * flags, written without its per-character callbacks (issue 10 §4: the
 * api dumps every answer and every access line). Thread-safe. */
#pragma once
#include <jansson.h>

/* As json_dumpb(json, buffer, size, flags): the length of the dump (which
 * may exceed size: nothing usable is in buffer then), 0 on error. Takes
 * the fast path for JSON_COMPACT with JSON_PRESERVE_ORDER and
 * JSON_REAL_PRECISION only, and for ASCII strings; anything else is
 * jansson's own dump. */
size_t json_dump_fast(const json_t *json, char *buffer, size_t size, size_t flags);
