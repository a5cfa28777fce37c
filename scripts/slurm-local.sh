#!/usr/bin/env bash
# A real Slurm on this machine: installs Debian's slurm-wlm and munge (apt-get), starts a
# one-node cluster on localhost (munged, slurmctld, slurmd; their state, logs and settings
# in WORKDIR, nothing in /etc but munge's key), then submits a tiny sharded study with
# deploy/slurm/submit.sh: the teachers stage, an array of 3 shard tasks once it has
# succeeded, the merge once every shard has ended. It waits for the merge (at most
# SLURM_LOCAL_TIMEOUT seconds, default 1800), runs the same study in one process, and
# compares the two reports run by run (metrics without their timings). Stops the daemons it
# started on the way out. Needs root.
#
#   scripts/slurm-local.sh [WORKDIR]      # exit 0: the merged report matches
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d /tmp/distill-slurm.XXXXXX)}"
mkdir -p "$work"
work="$(cd "$work" && pwd)"
chmod 755 "$work" # munged runs as munge and keeps its socket in here
limit="${SLURM_LOCAL_TIMEOUT:-1800}"
say() { echo "--- $*"; }

if [ "$(id -u)" != 0 ]; then
    echo "scripts/slurm-local.sh installs packages and starts daemons: run it as root" >&2
    exit 2
fi
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v munged >/dev/null; then
    say "installing slurm-wlm and munge"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurm-wlm munge >/dev/null
fi

distill="${DISTILL:-$root/target/release/distill}"
if [ ! -x "$distill" ]; then
    say "building distill (release)"
    (cd "$root" && cargo build --release --bin distill)
    distill="${CARGO_TARGET_DIR:-$root/target}/release/distill"
fi

pids=()
cleanup() {
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "munge"
if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
mkdir -p "$work/munge"
chown munge:munge "$work/munge"
runuser -u munge -- munged --force --socket="$work/munge/munge.socket" \
    --pid-file="$work/munge/munged.pid" --log-file="$work/munge/munged.log" \
    --seed-file="$work/munge/munged.seed"
for _ in $(seq 50); do [ -s "$work/munge/munged.pid" ] && break; sleep 0.1; done
pids+=("$(cat "$work/munge/munged.pid")")

say "a one-node cluster on $(hostname -s)"
host="$(hostname -s)"
cpus="$(nproc)"
mem="$(awk '/MemTotal/ { print int($2 / 1024 * 0.8) }' /proc/meminfo)"
mkdir -p "$work/slurm/state" "$work/slurm/spool" "$work/jobs"
cat >"$work/slurm/slurm.conf" <<EOF
ClusterName=distill-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$work/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$work/slurm/state
SlurmdSpoolDir=$work/slurm/spool
SlurmctldPidFile=$work/slurm/slurmctld.pid
SlurmdPidFile=$work/slurm/slurmd.pid
SlurmctldLogFile=$work/slurm/slurmctld.log
SlurmdLogFile=$work/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
MinJobAge=3600
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$work/slurm/slurm.conf"
slurmctld -i
slurmd
for _ in $(seq 100); do
    [ -s "$work/slurm/slurmctld.pid" ] && [ -s "$work/slurm/slurmd.pid" ] && break
    sleep 0.1
done
pids+=("$(cat "$work/slurm/slurmctld.pid")" "$(cat "$work/slurm/slurmd.pid")")
for i in $(seq 60); do
    state="$(sinfo -h -o %T 2>/dev/null | head -n1 || true)"
    [ "$state" = idle ] && break
    if [ "$i" = 60 ]; then
        echo "the node did not come up (state '$state'); see $work/slurm/*.log" >&2
        exit 1
    fi
    sleep 1
done
sinfo

say "the study: its settings"
cat >"$work/study.toml" <<EOF
device = "cpu"
data = "$root/datasets/fashion-mnist"
methods = "ce,kd,kd-transfer"
seeds = 2
max_train = 400
max_test = 100
teacher_epochs = 1
epochs = 2
label_fraction = 0.1
batch_size = 32
EOF

say "submitting: teachers, a 3-task array of shards, the merge"
started=$SECONDS
ids="$(cd "$work/jobs" && STUDY_DIR="$work/sharded" STUDY_CONFIG="$work/study.toml" SHARDS=3 \
    DISTILL="$distill" "$root/deploy/slurm/submit.sh" --cpus-per-task=1 --mem=2G \
    --chdir="$work/jobs")"
echo "$ids"
merge="$(echo "$ids" | awk '/^merge/ { print $2 }')"
while squeue -h -j "$merge" 2>/dev/null | grep -q .; do
    if [ $((SECONDS - started)) -gt "$limit" ]; then
        echo "the study did not end within $limit s; see $work/jobs" >&2
        squeue
        exit 1
    fi
    sleep 5
done
echo "the three jobs ended in $((SECONDS - started)) s"
scontrol show job "$merge" | grep -o 'JobState=[A-Z]*' || true
cat "$work"/jobs/distill-merge-*.out

say "the same study in one process"
"$distill" --config "$work/study.toml" --quiet study --out "$work/whole" >/dev/null

say "comparing the reports"
python3 - "$work/whole/study_report.json" "$work/sharded/study_report.json" <<'EOF'
import json, sys

def runs(path):
    r = json.load(open(path))
    out = []
    for x in r["runs"]:
        s = dict(x["summary"])
        s.pop("seconds_per_epoch")
        s["history"] = [
            {k: v for k, v in h.items() if k not in ("seconds", "images_per_second")}
            for h in s["history"]
        ]
        out.append((x["method"], x["seed"], s))
    return r, out

whole, a = runs(sys.argv[1])
sharded, b = runs(sys.argv[2])
assert sharded["merged"] and not sharded["missing"], sharded["missing"]
assert len(a) == 6 and a == b, "the runs differ"
print(f"the {len(a)} runs of the merged report equal those of the one-process study")
EOF
say "done: $work"
