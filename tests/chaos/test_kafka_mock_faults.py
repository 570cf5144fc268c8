"""The Kafka mock's fault API (deploy/local/kafka-mock/main.c, docs/CONTRACTS.md
"Kafka mock fault API") on its own, against a mock this test starts in a
temporary directory (no stack): the chaos suite relies on each command doing
what it says, so each is seen through a real Kafka client (Debian's
confluent-kafka on librdkafka): a down broker refuses its partitions'
produces until `up` or `reset`, queued request errors fail exactly that many
produces and `clear` drops the rest, bad commands answer an error naming the
syntax and change nothing, and the API listens on loopback only."""
import os
import pathlib
import socket
import subprocess
import time

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient

MOCK = os.environ.get("PADDOCK_KAFKA_MOCK", "")
TOPIC = "faults.test"
PRODUCE = 0  # Kafka API key of Produce
NOT_LEADER = KafkaError.NOT_LEADER_FOR_PARTITION  # 6: retriable (librdkafka retries it even with retries 0)
INVALID_RECORD = KafkaError.INVALID_RECORD  # 87: not retriable, the producer reports it


class Mock:
    """paddock-kafka-mock with 3 brokers and one 3-partition topic, its fault
    API reached through one connection (a line per command)."""

    def __init__(self, tmp):
        topics = tmp / "topics.txt"
        topics.write_text(f"{TOPIC} 3 1\n")
        self.bootstrap_file, self.control_file = tmp / "bootstrap", tmp / "control"
        self.proc = subprocess.Popen([MOCK, "--brokers", "3", "--topics", str(topics),
                                      "--bootstrap-file", str(self.bootstrap_file),
                                      "--control-file", str(self.control_file)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not (self.bootstrap_file.exists() and self.bootstrap_file.read_text().strip()
                   and self.control_file.exists() and self.control_file.read_text().strip()):
            assert self.proc.poll() is None, f"paddock-kafka-mock exited with {self.proc.returncode}"
            assert time.monotonic() < deadline, "paddock-kafka-mock wrote no bootstrap or control file in 30 s"
            time.sleep(0.1)
        self.bootstrap = self.bootstrap_file.read_text().strip()
        self.control = self.control_file.read_text().strip()
        host, port = self.control.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.f = self.sock.makefile("rw", encoding="ascii", newline="\n")

    def cmd(self, line):
        self.f.write(line + "\n")
        self.f.flush()
        return self.f.readline().rstrip("\n")

    def leaders(self):
        md = AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(TOPIC, timeout=10)
        return {p.id: p.leader for p in md.topics[TOPIC].partitions.values()}

    def close(self):
        self.sock.close()
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def mock(tmp_path):
    if not MOCK or not pathlib.Path(MOCK).is_file():
        pytest.fail("PADDOCK_KAFKA_MOCK must name the built paddock-kafka-mock (ctest sets it)")
    m = Mock(tmp_path)
    yield m
    m.close()


def produce(bootstrap, partition, retries, timeout_ms=4000):
    """One message to TOPIC's partition; the delivery error (None: stored)."""
    p = Producer({"bootstrap.servers": bootstrap, "message.send.max.retries": retries,
                  "retry.backoff.ms": 50, "message.timeout.ms": timeout_ms,
                  "socket.connection.setup.timeout.ms": 1000, "reconnect.backoff.max.ms": 200})
    got = []
    p.produce(TOPIC, b"v", partition=partition, on_delivery=lambda err, msg: got.append(err))
    p.flush(timeout_ms / 1000 + 10)
    assert len(got) == 1, "no delivery report"
    return got[0]


def test_the_api_listens_on_loopback_and_names_the_brokers(mock):
    assert mock.control.startswith("127.0.0.1:"), mock.control
    assert mock.cmd("brokers") == "ok 1 2 3"


def test_a_down_broker_refuses_produce_until_up_and_reset(mock):
    leader = mock.leaders()[0]
    assert produce(mock.bootstrap, 0, retries=0) is None
    assert mock.cmd(f"down {leader}") == "ok"
    err = produce(mock.bootstrap, 0, retries=0, timeout_ms=3000)
    assert err is not None and err.code() in (KafkaError._MSG_TIMED_OUT, KafkaError._TRANSPORT,
                                              KafkaError.NOT_LEADER_FOR_PARTITION), err
    assert mock.cmd(f"up {leader}") == "ok"
    assert produce(mock.bootstrap, 0, retries=2) is None
    # reset brings every broker up
    assert mock.cmd(f"down {leader}") == "ok"
    assert mock.cmd("reset") == "ok"
    assert produce(mock.bootstrap, 0, retries=2) is None


def test_queued_request_errors_fail_that_many_produces(mock):
    assert produce(mock.bootstrap, 1, retries=0) is None
    # two produces fail with the queued error, the third goes through
    assert mock.cmd(f"errors {PRODUCE} {INVALID_RECORD} 2") == "ok"
    for _ in range(2):
        err = produce(mock.bootstrap, 1, retries=0)
        assert err is not None and err.code() == INVALID_RECORD, err
    assert produce(mock.bootstrap, 1, retries=0) is None
    # a retriable error is ridden out by the producer (as the services' are)
    assert mock.cmd(f"errors {PRODUCE} {NOT_LEADER} 3") == "ok"
    assert produce(mock.bootstrap, 1, retries=5) is None
    # clear drops what is still queued, reset too
    for drop in (f"clear {PRODUCE}", "reset"):
        assert mock.cmd(f"errors {PRODUCE} {INVALID_RECORD} 50") == "ok"
        assert mock.cmd(drop) == "ok"
        assert produce(mock.bootstrap, 1, retries=0) is None


@pytest.mark.parametrize("line", ["down 0", "down 4", "up x", "errors 0 6 0", "errors 0 6 100001",
                                  "errors 101 6", "rtt 1 -5", "broker-errors 1 0 6 9 0", "clear", "bogus",
                                  "", "reset now"])
def test_a_bad_command_answers_an_error_and_changes_nothing(mock, line):
    reply = mock.cmd(line)
    assert reply.startswith("error "), (line, reply)
    if reply.startswith("error invalid command"):
        assert "down ID" in reply and "errors APIKEY CODE [COUNT]" in reply and "reset" in reply, reply
    assert produce(mock.bootstrap, 2, retries=0) is None
    assert mock.cmd("brokers") == "ok 1 2 3"


def test_a_line_too_long_is_refused(mock):
    assert mock.cmd("errors " + "1" * 300) == "error line too long"
    assert mock.cmd("brokers") == "ok 1 2 3"
