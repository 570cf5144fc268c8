/* json_dumpb, faster: the same bytes as jansson's json_dumpb for the same
 * flags, written without its per-character callbacks (issue 10 §4: the
 * api dumps every answer and every access line). Thread-safe. */
#pragma once
#include <jansson.h>
#include <stdbool.h>

/* As json_dumpb(json, buffer, size, flags): the length of the dump (which
 * may exceed size: nothing usable is in buffer then), 0 on error. Takes
 * the fast path for JSON_COMPACT with JSON_PRESERVE_ORDER,
 * JSON_ENSURE_ASCII and JSON_REAL_PRECISION only, and for ASCII strings;
 * anything else is jansson's own dump. */
size_t json_dump_fast(const json_t *json, char *buffer, size_t size, size_t flags);

/* Writes s[0, n) as a JSON string, quotes included, into buffer (size
 * bytes), as jansson's compact dump writes it; returns its length, or 0
 * when it does not fit or s is not ASCII (jansson checks UTF-8: the caller
 * takes jansson's path then). Thread-safe. */
size_t json_quote_fast(const char *s, size_t n, char *buffer, size_t size);

/* True when text[0, n) is certainly one JSON object that jansson's
 * json_loadb(text, n, 0) accepts, so its bytes can be used as they are
 * instead of being parsed and dumped again (the api's live fan-out, issue
 * 10 §4). Checks the whole grammar (RFC 8259) without building anything;
 * answers false, "not known", for what it does not vouch for although
 * jansson may accept it: a byte outside ASCII, a \u escape of NUL or of a
 * surrogate, an integer of more than 18 digits, a real whose exponent has
 * more than 2 digits or whose digits are more than 40, nesting deeper than
 * 64. Thread-safe. */
bool json_object_text_plain(const char *text, size_t n);

/* A JSON text written piece by piece, with json_dump_fast's writer, into a
 * buffer that grows: an answer built straight from a query's row, without
 * a jansson tree to build, dump and free (issue 10 §4). Each value is
 * written as jansson's compact dump writes it (jansson's own dump for what
 * the fast path does not write); the caller writes the punctuation and the
 * keys with json_writer_raw. After a failed allocation (or a string that is
 * not UTF-8, which json_string refuses) every call does nothing and
 * json_writer_take answers NULL. Start from {0}. Not thread-safe (one
 * writer, one thread). */
struct json_writer {
        char *buf;
        size_t len, cap;
        bool failed;
};
/* s[0, n) as it is: punctuation and quoted keys */
void json_writer_raw(struct json_writer *w, const char *s, size_t n);
#define json_writer_lit(w, lit) json_writer_raw((w), "" lit, sizeof(lit) - 1)
/* s (NUL-terminated UTF-8, borrowed) as a JSON string */
void json_writer_string(struct json_writer *w, const char *s);
void json_writer_integer(struct json_writer *w, json_int_t v);
/* precision: JSON_REAL_PRECISION's (1-31), 0 for jansson's default (17) */
void json_writer_real(struct json_writer *w, double v, int precision);
/* v (borrowed; any type) as its compact dump; NULL fails the writer */
void json_writer_value(struct json_writer *w, const json_t *v);
/* text (a JSON text, NUL-terminated, borrowed) as jansson's json_loads()
 * and compact dump of it would write it; a text that is certainly written
 * the same (json_object_text_plain's grammar, without escapes, reals, -0
 * or a repeated key in an object of at most 32 members) is copied without
 * its white space, anything else read and dumped. False, nothing
 * written, when jansson does not read it (not one object or array). */
bool json_writer_text(struct json_writer *w, const char *text);
/* The text, NUL-terminated (the caller frees it), its length in
 * *ret_len; NULL if anything failed. The writer is empty again. */
char *json_writer_take(struct json_writer *w, size_t *ret_len);
/* Drops what was written; w is empty again. */
void json_writer_free(struct json_writer *w);
