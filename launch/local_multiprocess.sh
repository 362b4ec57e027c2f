#!/usr/bin/env bash
# Two (or N) JAX processes on one machine, talking over 127.0.0.1: a local
# rehearsal of a multi-host run. Each process gets its share of the batch.
#
#   bash launch/local_multiprocess.sh 2 configs/default.py /tmp/mp
set -euo pipefail
N=${1:?usage: local_multiprocess.sh NUM_PROCESSES CONFIG WORKDIR [flags...]}
CONFIG=${2:?config}
WORKDIR=${3:?workdir}
shift 3
PORT=${PORT:-12355}
pids=()
for ((i = 0; i < N; i++)); do
  JAX_COORDINATOR_ADDRESS=127.0.0.1:$PORT JAX_NUM_PROCESSES=$N JAX_PROCESS_ID=$i \
    python -m jaxprune.main --config="$CONFIG" --workdir="$WORKDIR" \
    --config.distributed=True "$@" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
