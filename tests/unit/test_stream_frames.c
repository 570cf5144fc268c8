/* The websocket frames the api's fan-out builds once per event and shares
 * among viewers (services/api/fanout.c, issue 10 §4): each is one final,
 * unmasked text frame (RFC 6455 §5.2) whose length field, in the 7-bit,
 * 16-bit and 64-bit forms at their boundaries, gives exactly the event's
 * JSON, which lies right behind the header. A live event whose data comes
 * as JSON text (a RunEvent's data_json) is the same event as the one built
 * from parsed data, whichever way its text is taken. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fanout.h"

/* short fields, so that a JSON of 125 bytes (the largest 7-bit length) can be made */
static const char RUN[] = "r1";

static struct fanout_msg *event_of_pad(size_t pad) {
        char *s = malloc(pad + 1);
        assert_non_null(s);
        memset(s, 'x', pad);
        s[pad] = 0;
        json_t *data = json_pack("{s:s}", "s", s);
        free(s);
        struct fanout_msg *m = fanout_event_msg(RUN, 42, "t", "output", "agent", data);
        json_decref(data);
        assert_non_null(m);
        return m;
}

/* The event whose JSON is exactly len bytes (the padding of data.s). */
static struct fanout_msg *event_of_len(size_t len) {
        struct fanout_msg *m = event_of_pad(0);
        size_t base = m->len;
        fanout_msg_unref(m);
        assert_true(len >= base);
        m = event_of_pad(len - base);
        assert_int_equal(m->len, len);
        return m;
}

/* Decodes the frame as a client would; returns the payload length. */
static uint64_t frame_payload_len(const struct fanout_msg *m, size_t *hdr) {
        const unsigned char *f = fanout_msg_frame(m);
        assert_int_equal(f[0], 0x81);        /* FIN, text */
        assert_int_equal(f[1] & 0x80, 0);    /* a server never masks */
        uint64_t n = f[1] & 0x7f;
        size_t ext = n == 126 ? 2 : n == 127 ? 8 : 0;
        if (ext) {
                n = 0;
                for (size_t i = 0; i < ext; i++)
                        n = n << 8 | f[2 + i];
        }
        *hdr = 2 + ext;
        return n;
}

static void check_len(size_t len, size_t want_hdr) {
        struct fanout_msg *m = event_of_len(len);
        size_t hdr;
        assert_int_equal(frame_payload_len(m, &hdr), len);
        assert_int_equal(hdr, want_hdr);
        assert_int_equal(m->hdr, want_hdr);
        /* the payload right behind the header is the event's JSON */
        const unsigned char *payload = fanout_msg_frame(m) + hdr;
        assert_ptr_equal(payload, m->buf + LWS_PRE);
        json_error_t err;
        json_t *ev = json_loadb((const char *)payload, len, 0, &err);
        assert_non_null(ev);
        assert_string_equal(json_string_value(json_object_get(ev, "run")), RUN);
        assert_int_equal(json_integer_value(json_object_get(ev, "seq")), 42);
        json_decref(ev);
        fanout_msg_unref(m);
}

static void test_seven_bit_length(void **state) {
        (void)state;
        check_len(125, 2);
}

static void test_sixteen_bit_length(void **state) {
        (void)state;
        check_len(126, 4);
        check_len(65535, 4);
}

static void test_sixty_four_bit_length(void **state) {
        (void)state;
        check_len(65536, 10);
        check_len(300000, 10);
}

static void test_shared_by_reference(void **state) {
        (void)state;
        struct fanout_msg *m = event_of_len(200);
        assert_ptr_equal(fanout_msg_ref(m), m);
        assert_null(fanout_msg_unref(m));
        /* still alive: the second reference */
        size_t hdr;
        assert_int_equal(frame_payload_len(m, &hdr), 200);
        assert_null(fanout_msg_unref(m));
}

/* The event of m, parsed as a client would. */
static json_t *event_json(const struct fanout_msg *m) {
        json_error_t err;
        json_t *ev = json_loadb((const char *)m->buf + LWS_PRE, m->len, 0, &err);
        if (!ev)
                fail_msg("not JSON (%s): %.*s", err.text, (int)m->len, (const char *)m->buf + LWS_PRE);
        return ev;
}

/* fanout_event_msg_text(data_text) is the event fanout_event_msg makes
 * from want_data (parsed), terminal or not alike, and a valid frame. */
static void check_text(const char *kind, const char *actor, const char *data_text, const char *want_data) {
        json_error_t err;
        json_t *data = json_loads(want_data, 0, &err);
        assert_non_null(data);
        struct fanout_msg *want = fanout_event_msg(RUN, 7, "2026-12-07T14:00:00.000001Z", kind, actor, data);
        struct fanout_msg *got = fanout_event_msg_text(RUN, 7, "2026-12-07T14:00:00.000001Z", kind, actor, data_text);
        json_decref(data);
        assert_non_null(want);
        assert_non_null(got);
        json_t *w = event_json(want), *g = event_json(got);
        if (!json_equal(w, g))
                fail_msg("%.*s is not %.*s", (int)got->len, (const char *)got->buf + LWS_PRE, (int)want->len,
                         (const char *)want->buf + LWS_PRE);
        assert_int_equal(got->seq, 7);
        assert_int_equal(got->terminal, want->terminal);
        size_t hdr;
        assert_int_equal(frame_payload_len(got, &hdr), got->len);
        assert_ptr_equal(fanout_msg_frame(got) + hdr, got->buf + LWS_PRE);
        json_decref(w);
        json_decref(g);
        fanout_msg_unref(want);
        fanout_msg_unref(got);
}

static void test_event_from_text(void **state) {
        (void)state;
        /* what the runner sends, taken as it is */
        check_text("file_access", "platform", "{\"path\":\"/work/f\\\"1\\u00e9\",\"mode\":\"create\",\"pid\":42}",
                   "{\"path\":\"/work/f\\\"1\u00e9\",\"mode\":\"create\",\"pid\":42}");
        check_text("output", "agent", " { \"r\" : 0.1 , \"a\" : [ ] } ", "{\"r\":0.1,\"a\":[]}");
        /* kind and actor are quoted */
        check_text("k\"\\\x01", "user:\"x\"", "{}", "{}");
        /* no data, or not JSON: {} as before */
        check_text("output", "agent", NULL, "{}");
        check_text("output", "agent", "", "{}");
        check_text("output", "agent", "{\"a\":", "{}");
        check_text("output", "agent", "{\"a\":1}{", "{}");
        /* left to jansson: not ASCII, a NUL escape, a surrogate pair, an array */
        check_text("output", "agent", "{\"p\":\"caf\xc3\xa9\"}", "{\"p\":\"caf\xc3\xa9\"}");
        check_text("out\xc3\xa9", "agent", "{}", "{}");
        check_text("output", "agent", "{\"p\":\"\\u0000\"}", "{}");
        check_text("output", "agent", "{\"p\":\"\\ud83d\\ude00\"}", "{\"p\":\"\\ud83d\\ude00\"}");
        check_text("output", "agent", "[1,2]", "[1,2]");
        /* a status event says whether it ends the run */
        check_text("status", "platform", "{\"status\":\"succeeded\"}", "{\"status\":\"succeeded\"}");
        check_text("status", "platform", "{\"status\":\"running\"}", "{\"status\":\"running\"}");
        /* a long kind does not fit the head: jansson's path, the same event */
        char kind[600];
        memset(kind, 'k', sizeof kind - 1);
        kind[sizeof kind - 1] = 0;
        check_text(kind, "agent", "{\"a\":1}", "{\"a\":1}");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_seven_bit_length),
                cmocka_unit_test(test_sixteen_bit_length),
                cmocka_unit_test(test_sixty_four_bit_length),
                cmocka_unit_test(test_shared_by_reference),
                cmocka_unit_test(test_event_from_text),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
