"""A busy run stalls nothing (issue 10, docs/CONTRACTS.md "Kafka"): while a
command run floods paddock.runs.events (20,000 files created, the runner's
whole file-event budget, as an `npm install` does), short runs launched
meanwhile all succeed, no node is declared dead, no run fails for a dead
node, and the consumers that decide about runs and nodes (consumer groups
paddock-scheduler, paddock-scheduler-nodes, paddock-api-status) never fall
behind: they read only paddock.runs.status and paddock.nodes, which the
flood does not touch.

Lag is measured from outside, as Kafka defines it: for every partition a
group has committed an offset on, the records produced (high watermark) not
yet committed by the group. Before the status topic the scheduler and the
api's status consumer read the firehose and were thousands of records
behind after such a burst (about 1,000 events/s each)."""

import re
import threading
import time
import uuid

import pytest
import requests
from confluent_kafka import Consumer, TopicPartition

from conftest import TERMINAL, command_spec, wait_for, wait_run_status

FLOOD_FILES = 20000
SHORT_RUNS = 3
# the status topic carries a handful of records per run: a bound far below
# the burst, and far above what the few runs of this test put there
MAX_LAG = 50
GROUPS = ("paddock-scheduler", "paddock-scheduler-nodes", "paddock-api-status")


class LagProbe:
    """Committed offsets of the watched groups against the high watermarks of
    every paddock topic (a client of the group's offsets only: it never joins
    a group)."""

    def __init__(self, endpoints):
        self.bootstrap = endpoints.need("PADDOCK_KAFKA_BOOTSTRAP")
        for hp in self.bootstrap.split(","):
            assert hp.rsplit(":", 1)[0] in ("127.0.0.1", "localhost", "[::1]"), self.bootstrap
        self.clients = {g: Consumer({"bootstrap.servers": self.bootstrap, "group.id": g,
                                     "enable.auto.commit": False}) for g in GROUPS}
        md = next(iter(self.clients.values())).list_topics(timeout=10)
        self.partitions = [TopicPartition(t, p) for t, tm in md.topics.items() if t.startswith("paddock.")
                           for p in tm.partitions]
        assert any(tp.topic == "paddock.runs.status" for tp in self.partitions), sorted(md.topics)

    def high(self, topic):
        c = next(iter(self.clients.values()))
        return sum(c.get_watermark_offsets(tp, timeout=10)[1] for tp in self.partitions if tp.topic == topic)

    def snapshot(self):
        """{(group, topic, partition): (committed offset, high watermark)}."""
        any_client = next(iter(self.clients.values()))
        highs = {(tp.topic, tp.partition): any_client.get_watermark_offsets(tp, timeout=10)[1]
                 for tp in self.partitions}
        return {(g, tp.topic, tp.partition): (tp.offset, highs[(tp.topic, tp.partition)])
                for g, c in self.clients.items() for tp in c.committed(self.partitions, timeout=10)}

    def lag(self):
        """{group: (records behind, {topic: records behind})} over the
        partitions each group reads, i.e. whose committed offset moved since
        the probe started. Left out: no offset committed (a topic the group
        never read) and offsets an earlier binary left on a topic this one
        does not read (they never move). A group that reads a partition but
        never commits on it is no lag seen here: the runs' outcomes catch it."""
        now = self.snapshot()
        if not hasattr(self, "start"):
            self.start = now
        out = {g: (0, {}) for g in GROUPS}
        for (g, topic, part), (committed, high) in now.items():
            if committed < 0 or committed == self.start[(g, topic, part)][0]:
                continue
            behind = high - committed
            if behind > 0:
                total, per_topic = out[g]
                per_topic[topic] = per_topic.get(topic, 0) + behind
                out[g] = (total + behind, per_topic)
        return out

    def close(self):
        for c in self.clients.values():
            c.close()


METRIC = re.compile(r"^(paddock_scheduler_(?:node_deaths_total|runs_failed_node_dead_total)) (\d+)$", re.M)


def scheduler_counters(endpoints):
    text = requests.get(endpoints.need("PADDOCK_SCHEDULER_OPS_URL") + "/metrics", timeout=10).text
    found = {m.group(1): int(m.group(2)) for m in METRIC.finditer(text)}
    assert set(found) == {"paddock_scheduler_node_deaths_total", "paddock_scheduler_runs_failed_node_dead_total"}, \
        text[:2000]
    return found


def launch(runs, spec):
    return runs.start(spec, name=f"flood-{uuid.uuid4().hex[:10]}")


def test_a_flooding_run_stalls_no_other_run_and_kills_no_node(endpoints, api, runs):
    probe = LagProbe(endpoints)
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            samples.append((time.monotonic(), probe.lag()))
            stop.wait(0.5)

    try:
        probe.lag()  # the starting point
        before = scheduler_counters(endpoints)
        firehose_before = probe.high("paddock.runs.events")
        ready = wait_for("a ready node", lambda: {n["id"] for n in api.ok("GET", "/v1/nodes", expect=(200,))["items"]
                                                  if n["state"] == "ready"}, timeout=60)

        # creating a file is a create and a write (close) access: the run
        # spends its whole file-event budget (PADDOCK_RUN_MAX_FILE_EVENTS)
        flood = launch(runs, command_spec(
            ["/bin/sh", "-c", f"seq 1 {FLOOD_FILES} | sed s/^/f/ | xargs touch && ls | wc -l"], timeout_s=600))
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # the firehose carries RunEventBatch records (many events each): the
        # burst is counted in the run's events evidence has stored
        deadline = time.monotonic() + 180
        while True:
            run = api.ok("GET", f"/v1/runs/{flood}", expect=(200,))
            if run["history"]["events_stored"] >= FLOOD_FILES // 2:
                break
            assert time.monotonic() < deadline, f"the flood never reached the firehose: {run['history']}"
            assert run["status"] not in TERMINAL or run["status"] == "succeeded", f"the flooding run ended {run}"
            time.sleep(0.2)

        # runs launched in the middle of the burst
        short = [launch(runs, command_spec(["/bin/sh", "-c", f"echo short {i}"], timeout_s=120))
                 for i in range(SHORT_RUNS)]
        ended = {rid: wait_run_status(api, rid, timeout=240) for rid in short + [flood]}
        # a last look once everything ended, and at least 10 looks in all:
        # a fast machine ends the flood within a few samples
        last_look = time.monotonic() + 3
        while time.monotonic() < last_look or len(samples) < 10:
            time.sleep(0.2)
    finally:
        stop.set()
    sampler.join(30)
    after = scheduler_counters(endpoints)
    flooded = probe.high("paddock.runs.events") - firehose_before
    probe.close()

    for rid, run in ended.items():
        assert run["status"] == "succeeded", f"{rid} ({'flood' if rid == flood else 'short'}): {run}"
    events = ended[flood]["history"]["events_total"]
    assert events >= FLOOD_FILES, f"the flood put only {events} events on paddock.runs.events ({flooded} records)"
    assert after == before, f"nodes declared dead or runs failed for it during the flood: {before} -> {after}"
    nodes = {n["id"]: n["state"] for n in api.ok("GET", "/v1/nodes", expect=(200,))["items"]}
    assert all(nodes.get(n) == "ready" for n in ready), nodes

    assert len(samples) >= 10, f"only {len(samples)} lag samples"
    worst = {g: max(s[1][g][0] for s in samples) for g in GROUPS}
    print(f"{events} events in {flooded} records on the firehose; worst lag in records: {worst}")
    for g in GROUPS:
        n, per_topic = max((s[g] for _, s in samples), key=lambda x: x[0])
        assert n <= MAX_LAG, f"group {g} fell {n} records behind ({per_topic}) during the flood"
