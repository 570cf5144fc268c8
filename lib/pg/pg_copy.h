/* Rows in PostgreSQL's binary COPY format ("COPY t FROM STDIN (FORMAT
 * binary)", https://www.postgresql.org/docs/15/sql-copy.html "Binary
 * Format"), built in memory for pg_copy_in(): the bulk path of batched
 * consumers without text escaping, hex-encoded bytea or formatted
 * timestamps (issue 10: building and escaping the COPY text was the largest
 * client-side cost of evidence's ingest).
 *
 * Usage: pg_copy_buf_init(), pg_copy_row(b, nfields) then exactly nfields
 * field calls per row, pg_copy_buf_finish(), pg_copy_in(conn, sql, b->data,
 * b->len, ...), pg_copy_buf_done(). Each field call writes one column in the
 * type's binary send format; the COPY's column list must have these types in
 * this order (the server refuses a mismatch: the wrong length for a fixed
 * width type, or bytes that are not valid for it). Allocation failures are
 * remembered and reported once by pg_copy_buf_finish(), so the field calls
 * return nothing. Not thread-safe: one buffer per builder. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pg_copy_buf {
        char *data;   /* owned; the rows, header and trailer included */
        size_t len;
        size_t cap;
        bool oom;     /* an allocation failed: finish returns -ENOMEM */
        long long sent; /* streamed (pg.h pg_copy_stream_*): bytes sent so far, -1 once a send failed */
};

/* Starts a buffer with the COPY header, room reserved for about hint bytes. */
void pg_copy_buf_init(struct pg_copy_buf *b, size_t hint);
/* Frees the data; the buffer may be initialised again. */
void pg_copy_buf_done(struct pg_copy_buf *b);
/* Appends the trailer. Returns 0, or -ENOMEM if any append failed. */
int pg_copy_buf_finish(struct pg_copy_buf *b);

/* Starts a row of nfields columns. */
void pg_copy_row(struct pg_copy_buf *b, int nfields);
/* A NULL column. */
void pg_copy_null(struct pg_copy_buf *b);
/* bytea, or text/varchar given as bytes (the server checks the encoding). */
void pg_copy_bytes(struct pg_copy_buf *b, const void *p, size_t n);
/* text: s, or NULL when s is NULL or empty and empty_is_null. */
void pg_copy_text(struct pg_copy_buf *b, const char *s, bool empty_is_null);
void pg_copy_bool(struct pg_copy_buf *b, bool v);
void pg_copy_int4(struct pg_copy_buf *b, int32_t v);
void pg_copy_int8(struct pg_copy_buf *b, int64_t v);
/* timestamptz from microseconds since the Unix epoch (UTC). */
void pg_copy_timestamptz(struct pg_copy_buf *b, int64_t unix_us);
/* uuid from its text form (8-4-4-4-12 hex digits, either case); NULL when
 * s is NULL or empty. Returns -EINVAL for anything else, having written
 * nothing (the caller abandons the buffer). */
int pg_copy_uuid(struct pg_copy_buf *b, const char *s);
/* The 16 bytes of a uuid in its text form (as pg_copy_uuid reads it; a
 * uuid's binary COPY field is these bytes): 0, or -EINVAL. For a caller
 * writing the same uuid in many rows. */
int pg_uuid_parse(const char *s, unsigned char u[16]);
/* jsonb from JSON text (n bytes; the server parses it and refuses what is
 * not JSON, SQLSTATE class 22). */
void pg_copy_jsonb(struct pg_copy_buf *b, const char *json, size_t n);
