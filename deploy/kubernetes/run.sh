#!/usr/bin/env bash
# Runs the study of these manifests on the cluster kubectl points at: the volume and the
# settings, the teachers Job, then (once it has completed) the shards' Indexed Job, then (once
# that has ended, completed or failed) the merge Job, and prints the merge's output. Jobs
# have no dependencies of their own in Kubernetes, so this script waits between them.
#
#   deploy/kubernetes/run.sh [--namespace NS]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
k() { kubectl "$@"; }
# Waits until job $1 has condition Complete or Failed, and prints which.
ended() {
    while :; do
        state="$(k get job "$1" -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type}{"\n"}{end}' "${@:2}" | grep -E '^(Complete|Failed)$' | head -n1 || true)"
        if [ -n "$state" ]; then echo "$state"; return; fi
        sleep 30
    done
}
k apply -f "$here/storage.yaml" "$@"
k apply -f "$here/teachers.yaml" "$@"
if [ "$(ended distill-teachers "$@")" != Complete ]; then
    echo "the teachers Job failed: see kubectl logs job/distill-teachers" >&2
    exit 1
fi
k apply -f "$here/shards.yaml" "$@"
echo "shards: $(ended distill-shards "$@")"
k apply -f "$here/merge.yaml" "$@"
if [ "$(ended distill-merge "$@")" != Complete ]; then
    echo "the merge Job failed: see kubectl logs job/distill-merge" >&2
    exit 1
fi
k logs job/distill-merge "$@"
