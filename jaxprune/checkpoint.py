"""Orbax checkpoints in `<workdir>/checkpoints`, guarded by run metadata.

`<workdir>/run.json` records what the checkpoints hold (model, overrides,
dataset). A rerun on the same workdir resumes; a rerun with a different
model or dataset stops with an error before anything is written, so an
existing checkpoint is never overwritten by an unrelated run.
"""
import json
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxprune.errors import JaxpruneError


def _meta_path(workdir: str) -> str:
  return os.path.join(workdir, 'run.json')


def check_workdir(workdir: str, meta: dict[str, Any]) -> None:
  """Raises if `workdir` holds checkpoints of a different run identity."""
  path = _meta_path(workdir)
  if not os.path.exists(path):
    ckpt = os.path.join(workdir, 'checkpoints')
    if os.path.isdir(ckpt) and os.listdir(ckpt):
      raise JaxpruneError(
          f'{ckpt} holds checkpoints but {path} is missing, so they cannot be '
          'matched to this config; use another --workdir.')
    return
  with open(path) as f:
    old = json.load(f)
  diff = {k: (old.get(k), v) for k, v in meta.items() if old.get(k) != v}
  if diff:
    what = '; '.join(f'{k}: checkpoint has {a!r}, config asks for {b!r}'
                     for k, (a, b) in diff.items())
    raise JaxpruneError(f'Workdir {workdir} holds checkpoints of a different '
                        f'run ({what}). Use another --workdir; the existing '
                        'checkpoints were left untouched.')


def write_meta(workdir: str, meta: dict[str, Any]) -> None:
  if jax.process_index() == 0:
    with open(_meta_path(workdir), 'w') as f:
      json.dump(meta, f, indent=1, sort_keys=True)


def manager(workdir: str, keep: int) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, 'checkpoints')),
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))


def restore_latest(mgr: ocp.CheckpointManager, target: Any) -> Any | None:
  """Restores the newest checkpoint onto `target`'s shapes and shardings."""
  step = mgr.latest_step()
  if step is None:
    return None
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                     sharding=getattr(x, 'sharding', None)),
      target)
  try:
    return mgr.restore(step, args=ocp.args.StandardRestore(abstract))
  except (ValueError, KeyError, TypeError) as e:
    raise JaxpruneError(
        f'The checkpoint at step {step} in {mgr.directory} does not fit this '
        f'model ({str(e).splitlines()[0][:200]}); use another --workdir.'
    ) from e


def save(mgr: ocp.CheckpointManager, step: int, state: Any) -> None:
  mgr.save(step, args=ocp.args.StandardSave(state))


def load(workdir: str, step: int | None = None) -> tuple[int, Any]:
  """Reads a checkpoint of `workdir` onto this host's first device.

  Works whatever the device topology the checkpoint was written with.

  Args:
    workdir: the run's workdir.
    step: the step to read; the newest when None.

  Returns:
    (step, state tree with `params`, `batch_stats`, `opt_state`, ...).
  """
  with ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, 'checkpoints')),
      item_handlers=ocp.StandardCheckpointHandler()) as mgr:
    step = mgr.latest_step() if step is None else step
    if step is None:
      raise JaxpruneError(f'No checkpoint in {workdir}.')
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    meta = mgr.item_metadata(step)
    target = jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
        meta, is_leaf=lambda m: hasattr(m, 'shape') and hasattr(m, 'dtype'))
    return step, mgr.restore(step, args=ocp.args.StandardRestore(target))
