"""Metric sinks: a JSONL log and TensorBoard event files in the workdir.

Only process 0 writes. Every record carries `step` (run-wide) and `split`.
A `checkpoint` record marks each saved checkpoint; a run that resumes from
a checkpoint first drops the records written after its mark (`rewind`),
so `metrics.jsonl` never holds the same step twice, and nothing logged up
to the checkpoint is lost.
"""
import json
import os
import time
from typing import Any

import jax
import numpy as np


def _plain(v: Any) -> Any:
  if isinstance(v, (np.generic, np.ndarray, jax.Array)):
    v = np.asarray(v).tolist()
  return v


class MetricWriter:
  """Writes scalars to `<workdir>/metrics.jsonl` and `<workdir>/tensorboard`.

  Files are opened at the first record, so a run that stops with an error
  before logging anything leaves no new file behind.
  """

  def __init__(self, workdir: str):
    self.active = jax.process_index() == 0
    self.workdir = workdir
    self._path = os.path.join(workdir, 'metrics.jsonl')
    self._jsonl = None
    self._tb = None

  def _open(self) -> None:
    if self._jsonl is not None:
      return
    os.makedirs(self.workdir, exist_ok=True)
    self._jsonl = open(self._path, 'a')
    try:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(os.path.join(self.workdir, 'tensorboard'))
    except ImportError:  # TensorBoard output is optional.
      self._tb = None

  def write(self, step: int, split: str, **scalars: Any) -> None:
    """Logs `scalars` under `split/` at `step`."""
    if not self.active:
      return
    self._open()
    record = {'time': time.time(), 'step': int(step), 'split': split,
              **{k: _plain(v) for k, v in scalars.items()}}
    self._jsonl.write(json.dumps(record) + '\n')
    self._jsonl.flush()
    if self._tb is not None:
      for k, v in scalars.items():
        if isinstance(_plain(v), (int, float)):
          self._tb.add_scalar(f'{split}/{k}', float(_plain(v)), int(step))

  def mark(self, step: int, **fields: Any) -> None:
    """Records that a checkpoint at `step` (run-wide) was saved."""
    self.write(step, 'checkpoint', **fields)

  def rewind(self, step: int) -> None:
    """Drops the JSONL records after the last mark at or before `step`
    (all records when there is none): a run resumes from there."""
    if not self.active or not os.path.exists(self._path):
      return
    if self._jsonl is not None:
      self._jsonl.close()
      self._jsonl = None
    with open(self._path) as f:
      lines = f.readlines()
    keep = 0
    for i, line in enumerate(lines):
      try:
        r = json.loads(line)
      except ValueError:
        break  # A torn last line: everything after it goes.
      if r.get('split') == 'checkpoint' and r.get('step', 0) <= step:
        keep = i + 1
    if keep < len(lines):
      with open(self._path + '.tmp', 'w') as f:
        f.writelines(lines[:keep])
      os.replace(self._path + '.tmp', self._path)

  def close(self) -> None:
    if self._jsonl is not None and not self._jsonl.closed:
      self._jsonl.close()
      if self._tb is not None:
        self._tb.close()
