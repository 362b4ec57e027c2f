"""Timing helpers for the scripts in benchmarks/ (ratios within one run)."""
import time
from typing import Any, Callable

import jax
import numpy as np


def time_fn(fn: Callable[..., Any], *args: Any, reps: int = 10,
            warmup: int = 2) -> float:
  """Median wall seconds of `fn(*args)`, blocking on the result."""
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  return float(np.median(times))


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int = 5,
                reps: int = 3) -> dict[str, float]:
  """Median seconds per call of each thunk, timed in alternating rounds.

  Alternating the candidates spreads machine noise (other processes, clock
  changes) evenly over them, which matters for ratios close to 1.
  """
  for f in fns.values():
    jax.block_until_ready(f())
  samples = {k: [] for k in fns}
  for _ in range(rounds):
    for k, f in fns.items():
      for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(f())
        samples[k].append(time.perf_counter() - t)
  return {k: float(np.median(v)) for k, v in samples.items()}
