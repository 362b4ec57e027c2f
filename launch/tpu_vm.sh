#!/usr/bin/env bash
# One jaxprune run on every worker of a Cloud TPU VM slice (v4-32, v5e-16,
# ...): the same command on all workers at once, through
# `gcloud compute tpus tpu-vm ssh --worker=all`. jax.distributed finds the
# slice's coordinator and process ids itself on TPU VMs
# (--config.distributed=True asks for it).
#
#   bash launch/tpu_vm.sh TPU_NAME ZONE CONFIG WORKDIR [--config.x=y ...]
#
#   bash launch/tpu_vm.sh my-v4-32 us-central2-b configs/reprune/resnet50_imagenet.py \
#       /mnt/shared/runs/r50 --config.data_dir=/mnt/shared/tensorflow_datasets
#
# Before the first run, every worker needs this checkout (at $REPO_DIR)
# and its install, e.g.
#   gcloud compute tpus tpu-vm ssh TPU_NAME --zone=ZONE --worker=all \
#       --command="git clone URL ~/jaxprune && pip install -e ~/jaxprune 'jax[tpu]'"
#
# WORKDIR and --config.data_dir must be the same directory on every worker
# (a shared filesystem such as Filestore/NFS, or a gcsfuse mount of a GCS
# bucket): process 0 writes run.json, results and logs there, and every
# process takes part in writing and reading the orbax checkpoints. Each
# process reads its own shard of every batch from the TFDS data dir.
# Rerunning the same command resumes from the newest checkpoint in WORKDIR.
#
# Environment:
#   REPO_DIR  the checkout on the workers (default: ~/jaxprune)
#   PYTHON    the interpreter there (default: python3)
#   PROJECT   a gcloud project (default: gcloud's own)
#   DRY_RUN=1 print the gcloud command instead of running it
set -euo pipefail
usage="usage: bash launch/tpu_vm.sh TPU_NAME ZONE CONFIG WORKDIR [--config.x=y ...]"
TPU=${1:?$usage}
ZONE=${2:?$usage}
CONFIG=${3:?$usage}
WORKDIR=${4:?$usage}
shift 4
REPO_DIR=${REPO_DIR:-'~/jaxprune'}
PYTHON=${PYTHON:-python3}
# The remote command, each argument quoted for the workers' shell.
remote="cd $REPO_DIR && $(printf '%q ' "$PYTHON" -m jaxprune.main \
    "--config=$CONFIG" "--workdir=$WORKDIR" --config.distributed=True "$@")"
cmd=(gcloud compute tpus tpu-vm ssh "$TPU" "--zone=$ZONE" --worker=all
     "--command=$remote")
if [[ -n "${PROJECT:-}" ]]; then
  cmd+=("--project=$PROJECT")
fi
if [[ "${DRY_RUN:-0}" == 1 ]]; then
  printf '%q ' "${cmd[@]}"
  echo
  exit 0
fi
exec "${cmd[@]}"
