"""Metric sinks: a JSONL log and TensorBoard event files in the workdir.

Only process 0 writes. Every record carries `step` and `epoch`; a resumed
run appends, so nothing logged before the interruption is lost.
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
  """Writes scalars to `<workdir>/metrics.jsonl` and `<workdir>/tensorboard`."""

  def __init__(self, workdir: str):
    self.active = jax.process_index() == 0
    self._tb = None
    if self.active:
      os.makedirs(workdir, exist_ok=True)
      self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a')
      try:
        from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
        self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'))
      except ImportError:  # TensorBoard output is optional.
        self._tb = None

  def write(self, step: int, split: str, **scalars: Any) -> None:
    """Logs `scalars` under `split/` at `step`."""
    if not self.active:
      return
    record = {'time': time.time(), 'step': int(step), 'split': split,
              **{k: _plain(v) for k, v in scalars.items()}}
    self._jsonl.write(json.dumps(record) + '\n')
    self._jsonl.flush()
    if self._tb is not None:
      for k, v in scalars.items():
        if isinstance(_plain(v), (int, float)):
          self._tb.add_scalar(f'{split}/{k}', float(_plain(v)), int(step))

  def close(self) -> None:
    if self.active:
      self._jsonl.close()
      if self._tb is not None:
        self._tb.close()
