/* Binary COPY rows (pg_copy.h). Every integer in the format is big-endian. */
#include "pg/pg_copy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/ids.h"

/* "PGCOPY\n\377\r\n\0", flags (int32 0: no OIDs), header extension length (int32 0) */
static const char copy_header[19] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";

/* seconds between 1970-01-01 and 2000-01-01, PostgreSQL's timestamp epoch */
#define PG_EPOCH_OFFSET_US INT64_C(946684800000000)

static bool reserve(struct pg_copy_buf *b, size_t n) {
        if (!b->oom && !buf_reserve(&b->data, &b->cap, b->len, n, 4096))
                b->oom = true;
        return !b->oom;
}

static void put(struct pg_copy_buf *b, const void *p, size_t n) {
        if (reserve(b, n)) {
                if (n)
                        memcpy(b->data + b->len, p, n);
                b->len += n;
        }
}

static void put_u16(struct pg_copy_buf *b, uint16_t v) {
        unsigned char x[2] = {(unsigned char)(v >> 8), (unsigned char)v};
        put(b, x, sizeof x);
}

static void put_u32(struct pg_copy_buf *b, uint32_t v) {
        unsigned char x[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                              (unsigned char)v};
        put(b, x, sizeof x);
}

static void put_u64(struct pg_copy_buf *b, uint64_t v) {
        put_u32(b, (uint32_t)(v >> 32));
        put_u32(b, (uint32_t)v);
}

void pg_copy_buf_init(struct pg_copy_buf *b, size_t hint) {
        *b = (struct pg_copy_buf){0};
        reserve(b, hint > sizeof copy_header ? hint : sizeof copy_header);
        put(b, copy_header, sizeof copy_header);
}

void pg_copy_buf_done(struct pg_copy_buf *b) {
        free(b->data);
        *b = (struct pg_copy_buf){0};
}

int pg_copy_buf_finish(struct pg_copy_buf *b) {
        put_u16(b, 0xffff); /* field count -1: end of data */
        return b->oom ? -ENOMEM : 0;
}

void pg_copy_row(struct pg_copy_buf *b, int nfields) {
        put_u16(b, (uint16_t)nfields);
}

void pg_copy_null(struct pg_copy_buf *b) {
        put_u32(b, 0xffffffffu);
}

void pg_copy_bytes(struct pg_copy_buf *b, const void *p, size_t n) {
        if (n > INT32_MAX) { /* a field is at most 1 GB in PostgreSQL anyway */
                b->oom = true;
                return;
        }
        put_u32(b, (uint32_t)n);
        put(b, p, n);
}

void pg_copy_text(struct pg_copy_buf *b, const char *s, bool empty_is_null) {
        if (!s || (empty_is_null && !*s))
                pg_copy_null(b);
        else
                pg_copy_bytes(b, s, strlen(s));
}

void pg_copy_bool(struct pg_copy_buf *b, bool v) {
        unsigned char x = v;
        put_u32(b, 1);
        put(b, &x, 1);
}

void pg_copy_int4(struct pg_copy_buf *b, int32_t v) {
        put_u32(b, 4);
        put_u32(b, (uint32_t)v);
}

void pg_copy_int8(struct pg_copy_buf *b, int64_t v) {
        put_u32(b, 8);
        put_u64(b, (uint64_t)v);
}

void pg_copy_timestamptz(struct pg_copy_buf *b, int64_t unix_us) {
        /* no overflow: every int64 above INT64_MIN + the offset, which is
         * outside PostgreSQL's range anyway (the server refuses it) */
        int64_t v = unix_us < INT64_MIN + PG_EPOCH_OFFSET_US ? INT64_MIN : unix_us - PG_EPOCH_OFFSET_US;
        pg_copy_int8(b, v);
}

int pg_uuid_parse(const char *s, unsigned char u[16]) {
        size_t k = 0;
        for (size_t i = 0; i < 36; i++) {
                bool dash = i == 8 || i == 13 || i == 18 || i == 23;
                if (dash) {
                        if (s[i] != '-')
                                return -EINVAL;
                        continue;
                }
                int hi = hex_value(s[i]);
                int lo = hi < 0 ? -1 : hex_value(s[i + 1]);
                if (hi < 0 || lo < 0)
                        return -EINVAL;
                u[k++] = (unsigned char)(hi << 4 | lo);
                i++; /* groups have even lengths: a pair never straddles a dash */
        }
        return s[36] == '\0' ? 0 : -EINVAL;
}

int pg_copy_uuid(struct pg_copy_buf *b, const char *s) {
        if (!s || !*s) {
                pg_copy_null(b);
                return 0;
        }
        unsigned char u[16];
        if (pg_uuid_parse(s, u) < 0)
                return -EINVAL;
        pg_copy_bytes(b, u, sizeof u);
        return 0;
}

void pg_copy_jsonb(struct pg_copy_buf *b, const char *json, size_t n) {
        static const unsigned char version = 1; /* jsonb_send: version 1, then the text */
        if (n >= INT32_MAX) {
                b->oom = true;
                return;
        }
        put_u32(b, (uint32_t)n + 1);
        put(b, &version, 1);
        put(b, json, n);
}
