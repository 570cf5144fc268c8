#!/usr/bin/env bash
# Renders Strimzi KafkaTopic resources from deploy/topics.txt, the one topic list
# the local mock cluster also reads. Usage: render-topics.sh [cluster-name] > topics.yaml
set -euo pipefail
cluster=${1:-paddock}
topics="$(dirname "$0")/../topics.txt"
grep -vE '^\s*(#|$)' "$topics" | while read -r name partitions replicas; do
  cat <<YAML
---
apiVersion: kafka.strimzi.io/v1beta2
kind: KafkaTopic
metadata:
  name: ${name//./-}
  labels: {strimzi.io/cluster: ${cluster}}
spec:
  topicName: ${name}
  partitions: ${partitions}
  replicas: ${replicas}
  config: {min.insync.replicas: "2"}
YAML
done
