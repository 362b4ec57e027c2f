"""Orbax checkpoints in `<workdir>/checkpoints`, guarded by run metadata.

`<workdir>/run.json` records what the checkpoints hold: the whole config
and the run's identity (model, dataset, method). A rerun on the same
workdir resumes; a rerun whose settings differ (other than the fields that
cannot change results, `jaxprune.config.NEUTRAL`) stops with an error
naming them before anything is written, so an existing run is never
overwritten by another. An unreadable newest checkpoint is skipped for an
older one.
"""
import contextlib
import gc
import glob
import json
import logging as logging_std
import os
import sys
import tempfile
import time
from typing import Any

from absl import logging
import jax
import orbax.checkpoint as ocp

from jaxprune import structure
from jaxprune.errors import JaxpruneError


def _meta_path(workdir: str) -> str:
  return os.path.join(workdir, 'run.json')


def _flat(tree: Any, prefix: str = '') -> dict[str, Any]:
  """{'a.b': value} of a nested dict (JSON lists compare as lists)."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flat(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = list(v) if isinstance(v, tuple) else v
  return out


def check_workdir(workdir: str, meta: dict[str, Any],
                  neutral: tuple[str, ...] = (),
                  defaults: dict[str, Any] | None = None) -> None:
  """Raises if `workdir` holds a run whose settings differ from `meta`.

  `meta` holds the whole config (`meta['config']`) and the run's identity
  (model, dataset, method, ...). Every field is compared except the
  `neutral` ones (fields that cannot change results). A field the stored
  run lacks (added by a newer jaxprune) matches when it holds its value
  in `defaults` (the base config, as a dict), which is the behaviour the
  stored run had. Nothing is written.
  """
  path = _meta_path(workdir)
  if not os.path.exists(path):
    ckpt = os.path.join(workdir, 'checkpoints')
    results = os.path.join(workdir, 'results.json')
    phases = glob.glob(os.path.join(workdir, 'state_*'))
    if (os.path.isdir(ckpt) and os.listdir(ckpt)) or os.path.exists(
        results) or phases:
      raise JaxpruneError(
          f'{workdir} holds a run but {path} is missing, so it cannot be '
          'matched to this config; use another --workdir.')
    return
  try:
    with open(path) as f:
      old = json.load(f)
  except (OSError, ValueError) as e:
    raise JaxpruneError(f'{path} is unreadable ({e}); use another '
                        '--workdir.') from e
  new = json.loads(json.dumps(meta, default=str))
  a, b = _flat(old), _flat(new)
  skip = {f'config.{n}' for n in neutral}
  if 'config' not in old:  # Written by an older jaxprune: identity only.
    keys = [k for k in b if not k.startswith('config.')]
  else:  # The whole config (which holds the identity fields too).
    keys = sorted(k for k in set(a) | set(b) if k.startswith('config.'))
  missing = object()
  base = _flat({'config': json.loads(json.dumps(defaults, default=str))}
               ) if defaults is not None else {}
  diff = [(k, a.get(k, missing), b.get(k, missing)) for k in keys
          if k not in skip and a.get(k, missing) != b.get(k, missing)
          and not (k not in a and k in base and base[k] == b.get(k, missing))]
  if diff:
    show = lambda v: 'unset' if v is missing else repr(v)
    what = '; '.join(f'{k.removeprefix("config.")}: {show(x)} in the '
                     f'workdir, {show(y)} now' for k, x, y in diff)
    raise JaxpruneError(
        f'Workdir {workdir} holds a run with other settings ({what}). Use '
        'another --workdir, or the settings in its run.json; nothing was '
        'changed.')


def write_meta(workdir: str, meta: dict[str, Any]) -> None:
  """Writes run.json (process 0), atomically, unless it already holds
  exactly `meta`."""
  if jax.process_index():
    return
  text = json.dumps(json.loads(json.dumps(meta, default=str)), indent=1,
                    sort_keys=True)
  path = _meta_path(workdir)
  if os.path.exists(path):
    with open(path) as f:
      if f.read() == text:
        return
  with open(path + '.tmp', 'w') as f:
    f.write(text)
  os.replace(path + '.tmp', path)


def manager(workdir: str, keep: int) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, 'checkpoints')),
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
      # Known up front, so that `item_metadata` reads before any restore.
      item_handlers=ocp.StandardCheckpointHandler())


def restore_latest(mgr: ocp.CheckpointManager, target: Any) -> Any | None:
  """Restores the newest checkpoint that restores, onto `target`'s shapes
  and shardings.

  A newest checkpoint that cannot be read (a truncated or deleted file) is
  skipped with a warning and moved aside to `<dir>.corrupt/<step>` (kept,
  not deleted), and the next newer one is tried. Raises JaxpruneError, in
  one line, when none restores.
  """
  steps = sorted(mgr.all_steps(), reverse=True)
  if not steps:
    return None
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                     sharding=getattr(x, 'sharding', None)),
      target)
  errors = []
  for step in steps:
    misfit = _misfit(mgr, step, abstract)
    if misfit:
      raise JaxpruneError(
          f'Checkpoint step {step} in {mgr.directory} does not fit this model '
          f'({misfit}); use another --workdir. Nothing was changed.')
    try:
      with _stderr_quiet():
        got = mgr.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # pylint: disable=broad-except
      msg = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
      errors.append((step, msg))
      logging.warning('Checkpoint step %d in %s does not restore (%s); '
                      'trying an older one.', step, mgr.directory, msg)
      continue
    if errors:
      _set_aside(mgr, [s for s, _ in errors])
    return got
  step, msg = errors[0]
  raise JaxpruneError(
      f'No checkpoint in {mgr.directory} restores (newest, step {step}: '
      f'{msg}); use another --workdir.')


def _shapes(tree, is_leaf=None) -> dict[str, tuple[int, ...]]:
  """'a/b/0/c' -> shape of every array leaf of a tree (dict, dataclass or
  orbax metadata alike)."""
  flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)[0]
  return {'/'.join(structure.key_name(k) for k in path): tuple(leaf.shape)
          for path, leaf in flat if hasattr(leaf, 'shape')}


def _misfit(mgr: ocp.CheckpointManager, step: int, abstract: Any) -> str:
  """How a checkpoint's stored arrays differ from `abstract` ('' if they
  fit, or if the metadata is unreadable: then the restore tells)."""
  try:
    with _stderr_quiet():
      meta = mgr.item_metadata(step)
    stored = _shapes(meta, is_leaf=lambda m: hasattr(m, 'shape') and
                     hasattr(m, 'dtype'))
  except Exception:  # pylint: disable=broad-except
    return ''
  if not stored:
    return ''
  want = _shapes(abstract)
  for name in sorted(set(stored) | set(want),
                     key=lambda n: (not n.startswith('params'), n)):
    if name not in want:
      return f'{name} is stored but not in this model'
    if name not in stored:
      return f'{name} is not stored'
    if stored[name] != want[name]:
      return f'{name} is {stored[name]} stored, {want[name]} now'
  return ''


class _FailedReadFilter(logging_std.Filter):
  """Drops asyncio's 'Task exception was never retrieved' for orbax's
  failed reads of a corrupt checkpoint: it is logged whenever the task is
  garbage collected, possibly long after the restore that was reported in
  one line."""

  def filter(self, record):
    if not record.getMessage().startswith('Task exception was never'):
      return True
    exc = record.exc_info[1] if record.exc_info else None
    tb = exc.__traceback__ if exc is not None else None
    while tb is not None:
      if 'orbax' in tb.tb_frame.f_code.co_filename:
        return False
      tb = tb.tb_next
    return True


_FAILED_READS = _FailedReadFilter()


@contextlib.contextmanager
def _stderr_quiet():
  """Holds back what a failing restore's threads print to stderr (one
  traceback per array of a corrupt checkpoint); shown again on success."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as tmp:
    os.dup2(tmp.fileno(), 2)
    ok = False
    try:
      yield
      ok = True
    finally:
      if not ok:
        logging_std.getLogger('asyncio').addFilter(_FAILED_READS)
        gc.collect()  # Unretrieved failed reads report when collected.
        time.sleep(1.0)  # The failed reads' callbacks print late.
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      if ok:
        tmp.seek(0)
        text = tmp.read()
        if text:
          os.write(2, text)


def _set_aside(mgr: ocp.CheckpointManager, steps: list[int]) -> None:
  """Moves unreadable checkpoint steps out of the manager's directory."""
  if jax.process_index() == 0:
    directory = str(mgr.directory)
    aside = directory.rstrip('/') + '.corrupt'
    os.makedirs(aside, exist_ok=True)
    for step in steps:
      src = os.path.join(directory, str(step))
      if os.path.exists(src):
        dst = os.path.join(aside, str(step))
        if os.path.exists(dst):
          dst += f'.{len(os.listdir(aside))}'
        os.replace(src, dst)
        logging.warning('Moved the unreadable checkpoint step %d to %s.',
                        step, dst)
  mgr.reload()


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
