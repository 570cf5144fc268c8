/* The one reader of the XML an S3 server answers (the error document of a
 * failed request: <Error><Code>..</Code><Message>..</Message></Error>),
 * declared here so that its fuzz target (tests/fuzz/fuzz_s3_xml.c) calls the
 * function s3.c calls. Pure function, no I/O: thread-safe. */
#pragma once
#include <stddef.h>

/* Copies the text between the first "<tag>" of xml (NUL-terminated,
 * borrowed; NULL: none) and the next "</tag>" into out, cut to size - 1 bytes
 * (size >= 1) and NUL-terminated; "" when either is missing. The text is not
 * unescaped: it only ever goes into an error message. */
void s3_xml_tag(const char *xml, const char *tag, char *out, size_t size);
