#!/usr/bin/env bash
# Submits a sharded study to Slurm: the teachers stage; an array of SHARDS shard tasks that
# starts when the teachers stage has succeeded (afterok); the merge, which starts when every
# shard task has ended, succeeded or not (afterany), and names the runs that did not finish.
#
#   STUDY_DIR=/shared/studies/fm-3x3 [STUDY_CONFIG=deploy/study.toml] [SHARDS=3] \
#       deploy/slurm/submit.sh [extra sbatch options, e.g. --partition=cpu]
#
# STUDY_DIR must be on storage every node mounts (NFS, Lustre, …); the jobs get it, and
# STUDY_CONFIG and DISTILL (the binary, default `distill` on PATH), through sbatch's default
# --export=ALL. Prints the three job ids.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${STUDY_DIR:?set STUDY_DIR to a directory every node mounts}"
STUDY_CONFIG="${STUDY_CONFIG:-$here/../study.toml}"
STUDY_CONFIG="$(cd "$(dirname "$STUDY_CONFIG")" && pwd)/$(basename "$STUDY_CONFIG")"
export STUDY_DIR STUDY_CONFIG
shards="${SHARDS:-3}"
if ! [[ "$shards" =~ ^[1-9][0-9]*$ ]]; then
    echo "SHARDS must be a whole number >= 1, not '$shards'" >&2
    exit 2
fi
id() { cut -d';' -f1; } # --parsable prints "jobid[;cluster]"
teachers="$(sbatch --parsable "$@" "$here/teachers.sbatch" | id)"
array="$(sbatch --parsable "$@" --dependency="afterok:$teachers" --array="0-$((shards - 1))" \
    "$here/shards.sbatch" | id)"
merge="$(sbatch --parsable "$@" --dependency="afterany:$array" "$here/merge.sbatch" | id)"
echo "teachers $teachers"
echo "shards   $array (tasks 0-$((shards - 1)))"
echo "merge    $merge"
