#include "core/err.h"

#include <stdarg.h>
#include <string.h>

int err_set(struct err_detail *reterr, int errnum, const char *code, const char *fmt, ...) {
        if (!reterr)
                return errnum;
        reterr->errnum = errnum;
        snprintf(reterr->code, sizeof reterr->code, "%s", code ? code : "");
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(reterr->message, sizeof reterr->message, fmt, ap);
        va_end(ap);
        return errnum;
}
