# deploy/local/lib/kafka.sh — sourced by deploy/local/stack.sh (not run on its own).

# ---------------------------------------------------------------- Kafka mock

kafka_mock_bin() {
        local b="$BUILD/deploy/local/kafka-mock/paddock-kafka-mock"
        if [[ ! -x $b ]]; then
                say "building paddock-kafka-mock in $BUILD"
                { cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
                        cmake --build "$BUILD" --target paddock-kafka-mock -j2 >/dev/null; } ||
                        die "could not build paddock-kafka-mock (run: make build)"
        fi
        echo "$b"
}

KAFKA_RESTARTED=
kafka_up() {
        local bin
        if running kafka-mock && [[ -s $STATE/kafka-bootstrap ]]; then
                KAFKA_BOOTSTRAP=$(cat "$STATE/kafka-bootstrap")
                say "Kafka mock already running at $KAFKA_BOOTSTRAP"
                return 0
        fi
        bin=$(kafka_mock_bin)
        rm -f "$STATE/kafka-bootstrap" "$STATE/kafka-control" # kafka-control: the mock's fault API (tests/chaos)
        start_bg kafka-mock "$bin" --brokers 3 --topics "$REPO/deploy/topics.txt" \
                --bootstrap-file "$STATE/kafka-bootstrap" --control-file "$STATE/kafka-control"
        wait_for "the Kafka mock" 30 kafka-mock test -s "$STATE/kafka-bootstrap"
        KAFKA_BOOTSTRAP=$(cat "$STATE/kafka-bootstrap")
        KAFKA_RESTARTED=1
        say "Kafka mock (3 brokers, in memory: empty after every start) at $KAFKA_BOOTSTRAP"
}
