/* Live RunEvents fanned out to websocket viewers (fanout.c). */
#pragma once
#include "request.h"
#include "db.h"

/* ---- fanout.c: live RunEvents for websocket viewers */
struct fanout_sub;
/* One event as a websocket message, encoded and framed once and shared by
 * every viewer of the run (reference counted). The text frame's header (the
 * same for every viewer: a server does not mask) ends at buf + LWS_PRE,
 * where the JSON begins, so the whole frame is fanout_msg_frame(): the lws
 * thread copies several frames into one write. seq 0: a platform verdict
 * whose seq evidence assigns (len 0, nothing to send: the stream reads it
 * from history). */
struct fanout_msg {
        int refs; /* __atomic: taken on the fan-out thread, dropped on the lws thread */
        uint64_t seq;
        bool terminal;
        uint8_t hdr;       /* frame header bytes before buf + LWS_PRE (2, 4 or 10) */
        int64_t queued_us; /* wall clock when the fan-out queued it; 0 if from history */
        size_t len;        /* the JSON's */
        unsigned char buf[]; /* LWS_PRE + len + 1 (NUL) */
};
/* The message's whole websocket frame (header and JSON), hdr + len bytes. */
static inline const unsigned char *fanout_msg_frame(const struct fanout_msg *m) {
        return m->buf + LWS_PRE - m->hdr;
}
/* The public event JSON of docs/CONTRACTS.md as a message with one
 * reference; NULL on out-of-memory. data is borrowed. */
struct fanout_msg *fanout_event_msg(const char *run_id, uint64_t seq, const char *ts, const char *kind,
                                    const char *actor, json_t *data);
/* The same message with data given as JSON text (a RunEvent's data_json,
 * borrowed; NULL or "" is {}): its bytes are used as they are when
 * json_object_text_plain vouches for them (no parse and dump per event and
 * api worker: issue 10 §4), else it is parsed (no JSON: {}) and dumped as
 * fanout_event_msg does. Either way the same event; the bytes of data may
 * differ from jansson's dump (whitespace, escapes, a real's digits). NULL
 * on out-of-memory. */
struct fanout_msg *fanout_event_msg_text(const char *run_id, uint64_t seq, const char *ts, const char *kind,
                                         const char *actor, const char *data_json);
struct fanout_msg *fanout_msg_ref(struct fanout_msg *m);
/* Drops one reference (NULL accepted); returns NULL. */
struct fanout_msg *fanout_msg_unref(struct fanout_msg *m);
/* Latency of one hop of the live path (runner -> Kafka -> fan-out -> websocket
 * write), logged at debug level about once a second as "stream timings"
 * (bench/stream.py reads them: issue 10 §4 asks where the time goes). One
 * per thread, no lock: 1 ms buckets up to FANOUT_HOP_BUCKETS - 1 ms. */
#define FANOUT_HOP_BUCKETS 1001
struct fanout_hop {
        const char *name;
        uint64_t n;
        int64_t sum_us, max_us;
        uint32_t hist[FANOUT_HOP_BUCKETS];
};
void fanout_hop_add(struct fanout_hop *h, int64_t us);
/* Logs and resets every hop of hops[0, n) that has samples, at most once a
 * second (*last_us: the caller's monotonic time of the last log; NULL: now). */
void fanout_hops_flush(struct fanout_hop *hops, size_t n, int64_t *last_us);
int fanout_start(struct api *a);
/* Ends the fan-out thread, which wakes the lws loop: before the lws context
 * is destroyed (the thread woke a destroyed context: a segfault in
 * lws_cancel_service at every api shutdown). The hub stays for the sessions
 * that unsubscribe while lws closes them; fanout_stop frees it after. */
void fanout_halt(struct api *a);
void fanout_stop(struct api *a);
/* Registers interest in run_id; messages queue until drained. */
struct fanout_sub *fanout_subscribe(struct fanout_hub *h, const char *run_id);
void fanout_unsubscribe(struct fanout_hub *h, struct fanout_sub *s);
/* Takes the queued messages, in order: swaps the subscriber's queue with
 * *q (capacity *cap, emptied by the caller, who owns one reference of each
 * message returned); returns how many. No allocation in the steady state. */
size_t fanout_drain(struct fanout_hub *h, struct fanout_sub *s, struct fanout_msg ***q, size_t *cap);
