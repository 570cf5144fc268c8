/* Optional detail for a negative-errno failure: the foreign code and text
 * (SQLSTATE, librdkafka error, HTTP status), kept for the caller's single log line. */
#pragma once
#include "core/macro.h"

struct err_detail {
        int errnum;           /* the negative errno also returned */
        char code[16];        /* foreign code, e.g. "23505", "_TRANSPORT", "403" */
        char message[512];    /* foreign text, or ours */
};

/* Fills *reterr (if not NULL) and returns errnum (negative), so callers can
 * `return err_set(reterr, -EINVAL, "field", "x must be ...")`. */
int err_set(struct err_detail *reterr, int errnum, const char *code, const char *fmt, ...) _printf_(4, 5);
