/* The S3 server's XML answer to a failed request (lib/s3/s3_xml.h), as
 * s3.c's perform reads it: the start of the body (at most 16 KiB are kept,
 * NUL-terminated, so an embedded NUL ends the text) searched for Code into
 * 64 bytes and Message into 256. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "s3/s3_xml.h"

#define ERROR_BODY_MAX (16 * 1024) /* S3_ERROR_BODY_MAX in s3.c */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > ERROR_BODY_MAX)
                size = ERROR_BODY_MAX;
        char *body = malloc(size + 1);
        if (!body)
                return 0;
        memcpy(body, data, size);
        body[size] = 0;
        char code[64], msg[256];
        s3_xml_tag(body, "Code", code, sizeof code);
        s3_xml_tag(body, "Message", msg, sizeof msg);
        if (strnlen(code, sizeof code) == sizeof code || strnlen(msg, sizeof msg) == sizeof msg)
                __builtin_trap(); /* the contract: cut and NUL-terminated */
        free(body);
        return 0;
}
