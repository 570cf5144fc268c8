#!/usr/bin/python3
"""Evidence ingest against a running local stack (./dev up): how fast a run's
history becomes durable, next to a raw COPY of the same rows into the same
table (issue 10: target >= 0.5x the COPY, p99 lag <= 1 s).

Plays an enrolled runner node (a key of its own added to the stack's
trusted-keys file, as `paddock-runner-agent enroll` + the operator would) and
produces signed RunEventBatch records to paddock.runs.events with the real
librdkafka producer (confluent_kafka), one record per 5 ms linger like the
runner-agent (at most 1000 events), for runs of 20,000 and 200,000 events at
about 1k, 10k and the maximum events/s. For each it reports
  * events made durable per second by evidence (evidence.run_history,
    first event produced -> last event stored),
  * p99 lag from an event's ts to the moment evidence.run_history showed it
    stored (polled every 10 ms),
and, once per run size, the rows per second of a raw COPY of the same rows
into a table like evidence.run_events (same columns and primary key) in the
same database. The `backlog` rate (BENCH_RATES) measures evidence alone:
evidence is paused (SIGSTOP) while the whole run is produced at the maximum
rate, then resumed; durable/s counts from the resume to the last event
stored, so the producer does not share the machine with evidence (runs of at
most 100,000 events: the Kafka mock's partition log holds no more). Runs are
fake (rows in api.runs/scheduler.runs for the bench node, no sandbox). Traffic goes only to the loopback stack. Not part of
./dev test; prints figures, never fails on them.

    PADDOCK_STATE_DIR=.paddock /usr/bin/python3 bench/ingest.py
    BENCH_SIZES=20000 BENCH_RATES=1000,max ...   (subsets)
"""
import io
import json
import os
import signal
import statistics
import sys
import threading
import time
import uuid

import psycopg

from benchlib import load_env, pct, state_dir  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
from conftest import BusSigner, pb_field, pb_varint, run_event_batch  # noqa: E402

EVENTS = "paddock.runs.events"
SIZES = [int(x) for x in os.environ.get("BENCH_SIZES", "20000,200000").split(",")]
RATES = os.environ.get("BENCH_RATES", "1000,10000,max,sustained").split(",")
# "sustained": 90% of the durable/s the "max" run of the same size reached
# (run after it). At "max" the producer outpaces evidence, so the lag of the
# run's last events is the backlog it built (about total/durable -
# total/produced): that row measures throughput; this one the lag at the
# highest rate evidence keeps up with.
SUSTAINED = 0.9
LINGER_S = 0.005
MAX_PER_RECORD = 1000
NODE = "bench-ingest"


def _s(num, text):
    return pb_field(num, 2, text.encode() if isinstance(text, str) else text)


def event(tenant, team, run_id, seq, ts_us, terminal=False):
    env = (_s(1, tenant) + _s(2, run_id) + pb_field(3, 0, pb_varint(seq)) + pb_field(4, 0, pb_varint(ts_us))
           + _s(5, "bench/ingest") + pb_field(6, 0, pb_varint(1)) + _s(7, str(uuid.uuid4())))
    if terminal:
        return (_s(1, env) + _s(2, "status") + _s(3, "platform")
                + _s(4, '{"status":"succeeded","exit_code":0}') + _s(5, team) + _s(6, "succeeded")
                + pb_field(7, 0, pb_varint(1)))
    data = '{"path":"node_modules/pkg%d/lib/index.js","mode":"create","pid":4242}' % seq
    return _s(1, env) + _s(2, "file_access") + _s(3, "agent") + _s(4, data) + _s(5, team)


def fake_run(pg, tenant, team, sandbox, version, user):
    run_id = str(uuid.uuid4())
    pg.execute("INSERT INTO api.runs (id, tenant_id, team_id, sandbox_id, version, status, created_by, node_id)"
               " VALUES (%s, %s, %s, %s, %s, 'scheduled', %s, %s)", (run_id, tenant, team, sandbox, version, user, NODE))
    pg.execute("INSERT INTO scheduler.runs (run_id, tenant_id, team_id, state, node_id, finished_at)"
               " VALUES (%s, %s, %s, 'finished', %s, now())", (run_id, tenant, team, NODE))
    return run_id


def stored_watch(pg_dsn, run_id, total, ts_of, out):
    """Polls evidence.run_history; for each newly stored seq range, the lag of
    its events (ts -> now)."""
    lags, last = [], 0
    with psycopg.connect(pg_dsn, autocommit=True) as pg:
        deadline = time.time() + 600
        while last < total and time.time() < deadline:
            row = pg.execute("SELECT events_stored FROM evidence.run_history WHERE run_id = %s", (run_id,)).fetchone()
            now = time.time()
            n = row[0] if row else 0
            if n > last:
                lags.extend(now - ts_of[s] for s in range(last + 1, n + 1))
                last = n
                if last == n and last >= total:
                    out["done_at"] = now
            time.sleep(0.01)
    out["lags"], out["stored"] = lags, last


# Records are built before the clock starts, with this ts in every event, and
# the real ts is patched in as each record is produced: building events in
# Python (~35k events/s) was the limit of the "max" rate, not evidence. Both
# are 8-byte varints (any ts_unix_us between 2^49 and 2^56), so the patch keeps
# the record's length.
TS_PLACEHOLDER = (1 << 55) + 0x123456789


def build_records(tenant, team, run_id, total, per):
    recs, seq = [], 1
    while seq <= total:
        n = min(per, total - seq + 1)
        evs = [event(tenant, team, run_id, s, TS_PLACEHOLDER, terminal=s == total) for s in range(seq, seq + n)]
        recs.append((seq, n, run_event_batch(*evs)))
        seq += n
    return recs


def run_records(tenant, team, run_id, total, rate):
    """The run's records, as many events each as the runner puts in one at
    that rate (one per 5 ms linger, at most MAX_PER_RECORD)."""
    per = MAX_PER_RECORD if rate is None else max(1, min(MAX_PER_RECORD, int(rate * LINGER_S)))
    return build_records(tenant, team, run_id, total, per)


def produce_run(producer, signer, run_id, records, rate, ts_of):
    placeholder = pb_varint(TS_PLACEHOLDER)
    start = time.time()
    for seq, n, template in records:
        now_us = int(time.time() * 1e6)
        ts = pb_varint(now_us)
        assert len(ts) == len(placeholder)
        value = template.replace(placeholder, ts)
        for s in range(seq, seq + n):
            ts_of[s] = now_us / 1e6
        while True:
            try:
                producer.produce(EVENTS, key=run_id.encode(), value=value, headers=signer.headers(EVENTS, value))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        if rate is not None:
            wait = start + (seq + n - 1) / rate - time.time()  # read once: sleep() refuses a negative wait
            if wait > 0:
                time.sleep(wait)
    producer.flush(60)
    return start, time.time()


def evidence_pid(state):
    with open(os.path.join(state, "pids", "evidence.pid")) as f:
        return int(f.read().strip())


# The backlog row pauses evidence while the run is produced: its Kafka
# session (PADDOCK_KAFKA_SESSION_TIMEOUT_MS, 6 s on the local stack) must not
# expire meanwhile, or the resume pays a rebalance; and the whole run waits in
# one partition of the local stack's Kafka mock, which keeps at most 5 MiB of
# it (docs/CONTRACTS.md "Local stack Kafka retention"): a 200,000-event run
# (zstd, ~5.5 MiB) lost its oldest records there, so larger runs are skipped.
BACKLOG_PAUSE_MAX_S = 4.0
BACKLOG_MAX_EVENTS = 100000


def proc_cpu(pid):
    """CPU seconds (user + system) process pid (or "pid/task/tid") has used, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def evidence_cpu(pg, state):
    """{part: {pid or tid: CPU seconds}} of what the pipeline runs on this
    machine's local stack (/proc shows them): evidence's consumer thread
    ("evidence", decode, verify, COPY rows) apart from librdkafka's threads
    ("rdkafka": fetch, decompress), its PostgreSQL backends ("postgres"), the
    Kafka mock ("kafka") and this bench process ("bench": the producer and the
    watcher)."""
    parts = {"evidence": {}, "rdkafka": {}, "postgres": {}, "kafka": {}, "bench": {}}
    for (p,) in pg.execute("SELECT pid FROM pg_stat_activity WHERE usename = 'paddock_evidence'"):
        parts["postgres"][p] = proc_cpu(p)
    for name, part in (("evidence", None), ("kafka-mock", "kafka")):
        try:
            with open(os.path.join(state, "pids", f"{name}.pid")) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if part:
            parts[part][pid] = proc_cpu(pid)
            continue
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/comm") as f:
                    comm = f.read().strip()
            except OSError:
                continue
            parts["rdkafka" if comm.startswith("rdk:") else "evidence"][int(tid)] = proc_cpu(f"{pid}/task/{tid}")
    parts["bench"][os.getpid()] = proc_cpu(os.getpid())
    return {k: {p: c for p, c in v.items() if c is not None} for k, v in parts.items()}


def cpu_used(before, after, parts=("evidence", "rdkafka", "postgres")):
    """CPU seconds of the given parts between two evidence_cpu() snapshots (a
    process or thread started meanwhile counts from 0), or None."""
    total = sum(c - before.get(k, {}).get(p, 0.0) for k in parts for p, c in after.get(k, {}).items())
    return total if any(after.get(k) for k in parts) else None


def raw_copy(pg, tenant, team, total, temp):
    """Rows/s of a raw COPY of the same rows into a table like
    evidence.run_events: a temporary one (no WAL, as this bench first
    measured) or a logged one (what evidence writes: WAL, the same primary
    key; the fair reference)."""
    table = "bench_copy" if temp else "public.bench_ingest_copy"
    if temp:
        pg.execute("CREATE TEMP TABLE IF NOT EXISTS bench_copy (LIKE evidence.run_events INCLUDING ALL)")
    else:
        pg.execute("CREATE TABLE IF NOT EXISTS public.bench_ingest_copy (LIKE evidence.run_events INCLUDING ALL)")
    pg.execute(f"TRUNCATE {table}")
    run_id = str(uuid.uuid4())
    buf = io.StringIO()
    for s in range(1, total + 1):
        data = '{"path":"node_modules/pkg%d/lib/index.js","mode":"create","pid":4242}' % s
        buf.write(f"{run_id}\t{s}\t{tenant}\t{team}\t2026-12-05T00:00:00Z\tfile_access\tagent\t{data}\n")
    text = buf.getvalue()
    backend = pg.execute("SELECT pg_backend_pid()").fetchone()[0]
    c0, t0 = proc_cpu(backend), time.time()
    with pg.cursor() as cur:
        with cur.copy(f"COPY {table} (run_id, seq, tenant_id, team_id, ts, kind, actor, data) FROM STDIN") as cp:
            cp.write(text)
    rate = total / (time.time() - t0)
    c1 = proc_cpu(backend)
    if not temp:
        pg.execute("DROP TABLE public.bench_ingest_copy")
    # the COPY's CPU per row (its backend's, from /proc): on a shared
    # machine a steadier reference than the wall clock
    return rate, (c1 - c0) / total * 1e6 if c0 is not None and c1 is not None else None


def evidence_rounds(ops_url):
    """paddock_evidence_event_batches_total from evidence's /metrics (the
    transactions it stored run events in), or None."""
    import urllib.request
    if not ops_url:
        return None
    try:
        with urllib.request.urlopen(ops_url.rstrip("/") + "/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("paddock_evidence_event_batches_total "):
                    return int(float(line.split()[1]))
    except (OSError, ValueError):
        pass
    return None


def parts_text(before, after, total, wall, rounds):
    """Where the run's time went: CPU us per event of each part, wall us per
    event, and the transactions evidence stored it in."""
    per = " ".join(f"{k} {cpu_text(cpu_used(before, after, (k,)), total).strip()}" for k in after)
    tx = f", {rounds} transactions ({total / rounds:.0f} events each)" if rounds else ""
    return f"{'':>8} cpu us/ev by part: {per}; wall {wall / total * 1e6:.1f} us/ev{tx}"


def cpu_text(v, per=None):
    if v is None:
        return f"{'n/a':>9}"
    return f"{v / per * 1e6 if per else v:>9.1f}"


def ratio_text(copy_us, used, total):
    if copy_us is None or not used:
        return f"{'n/a':>6}"
    return f"{copy_us / (used / total * 1e6):>6.2f}"


def main():
    from confluent_kafka import Producer
    state = state_dir()
    env = load_env(os.path.join(state, "endpoints.env"))
    dsn = env["PADDOCK_PG_DSN"]
    signer = BusSigner(f"node:{NODE}")
    with open(env["PADDOCK_TRUSTED_KEYS"], "a") as f:
        f.write(f"{signer.identity} {signer.public_b64()}\n")
    # compressed like the runner-agent (lib/kafka: zstd)
    producer = Producer({"bootstrap.servers": env["PADDOCK_KAFKA_BOOTSTRAP"], "linger.ms": 5, "compression.type": "zstd",
                         "enable.idempotence": True, "acks": "all"})
    # the topic's metadata and the brokers' connections before any clock
    # starts: a long-lived runner-agent producer has them already
    producer.list_topics(EVENTS, timeout=10)
    pg = psycopg.connect(dsn, autocommit=True)
    row = pg.execute("SELECT s.tenant_id, s.team_id, s.id, v.version, s.created_by FROM api.sandboxes s"
                     " JOIN api.sandbox_versions v ON v.sandbox_id = s.id LIMIT 1").fetchone()
    if not row:
        sys.exit("bench/ingest: the stack has no published sandbox yet (./dev up launches a demo run)")
    tenant, team, sandbox, version, user = (str(x) if not isinstance(x, int) else x for x in row)
    load = os.getloadavg()
    print(f"bench/ingest  (load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} cpus)")
    print(f"{'events':>8} {'target/s':>9} {'produced/s':>10} {'durable/s':>10} {'raw COPY/s':>11} {'ratio':>6} {'temp COPY/s':>11} {'ratio':>6} {'p50 lag':>8} "
          f"{'p99 lag':>8} {'cpu us/ev':>9} {'COPY us/ev':>10} {'ratio':>6}   (targets: ratio >= 0.50, p99 <= 1.000 s)", flush=True)
    for total in SIZES:
        temp_rate, _ = raw_copy(pg, tenant, team, total, True)
        copy_rate, copy_us = raw_copy(pg, tenant, team, total, False)
        max_durable = None
        for r in RATES:
            if r == "sustained" and not max_durable:
                continue  # no "max" run of this size measured before it
            backlog = r == "backlog"
            rate = None if r in ("max", "backlog") else int(SUSTAINED * max_durable) if r == "sustained" else int(r)
            label = f"s{rate}" if r == "sustained" else r
            if rate is not None and total / rate > 120:
                continue  # 200,000 events at 1k/s would take 200 s: skipped
            if backlog and total > BACKLOG_MAX_EVENTS:
                print(f"{total:>8} {label:>9}  skipped: a paused consumer's backlog of more than {BACKLOG_MAX_EVENTS} "
                      "events overflows the Kafka mock's partition log", flush=True)
                continue
            run_id = fake_run(pg, tenant, team, sandbox, version, user)
            ts_of, out = {}, {}
            w = threading.Thread(target=stored_watch, args=(dsn, run_id, total, ts_of, out))
            w.start()
            cpu0, rounds0 = evidence_cpu(pg, state), evidence_rounds(env.get("PADDOCK_EVIDENCE_OPS_URL"))
            # built before evidence is paused and before the run's clock starts
            records = run_records(tenant, team, run_id, total, rate)
            if backlog:
                paused = evidence_pid(state)
                os.kill(paused, signal.SIGSTOP)
                try:
                    start, produced_at = produce_run(producer, signer, run_id, records, rate, ts_of)
                finally:
                    os.kill(paused, signal.SIGCONT)
                pause = time.time() - start
                if pause > BACKLOG_PAUSE_MAX_S:
                    print(f"{total:>8} {label:>9}  evidence was paused {pause:.1f} s: its resume may include a "
                          "consumer group rebalance", flush=True)
                start = time.time()  # durable/s and the lags count from the resume
                for s in ts_of:
                    ts_of[s] = start
            else:
                start, produced_at = produce_run(producer, signer, run_id, records, rate, ts_of)
            w.join()
            cpu1, rounds1 = evidence_cpu(pg, state), evidence_rounds(env.get("PADDOCK_EVIDENCE_OPS_URL"))
            used = cpu_used(cpu0, cpu1)
            if out.get("stored", 0) < total:
                # librdkafka's mock cluster keeps a bounded log per partition:
                # a consumer far enough behind loses the oldest records there
                print(f"{total:>8} {label:>9}  only {out.get('stored', 0)} events stored within 600 s", flush=True)
                continue
            durable = total / (out["done_at"] - start)
            if r == "max":
                max_durable = durable
            lags = out["lags"]
            produced = total / max(pause if backlog else produced_at - start, 1e-6)
            print(f"{total:>8} {label:>9} {produced:>10.0f} {durable:>10.0f} {copy_rate:>11.0f} {durable / copy_rate:>6.2f} "
                  f"{temp_rate:>11.0f} {durable / temp_rate:>6.2f} "
                  f"{statistics.median(lags):>7.3f}s {pct(lags, 99):>7.3f}s {cpu_text(used, total)} "
                  f"{cpu_text(copy_us)} {ratio_text(copy_us, used, total)}", flush=True)
            print(parts_text(cpu0, cpu1, total, out["done_at"] - start,
                             rounds1 - rounds0 if rounds0 is not None and rounds1 is not None else None), flush=True)
    pg.close()


if __name__ == "__main__":
    main()
