"""How many channels each unit loses: uniform, BN-gamma quantile, MACs target.

Counts are the channels to *prune* per group (`{group: p}`):

* `uniform_counts`: p = ceil(s n) for every unit (at most n - 1);
* `bn_gamma_counts`: the global |gamma| quantile (REPrune Eqs. 8-9, Park et
  al., AAAI 2024): gamma* = quantile(|gamma| of every unit, s), and unit l
  prunes #{|gamma_l| <= gamma*};
* `search`: bisection on the global sparsity s of either rule until the
  masked network's MACs (from the graph) reach a target.
"""
import math
from typing import Callable

import numpy as np

from jaxprune import structure
from jaxprune.methods import criteria
from jaxprune.methods.units import Unit

ALLOCATIONS = ('bn_gamma', 'uniform')


def _ceil(x: float) -> int:
  return int(math.ceil(round(x, 6)))


def uniform_counts(found: list[Unit], sparsity: float) -> dict[str, int]:
  """p = ceil(s n) for every unit (at most n - 1)."""
  return {u.group: min(_ceil(sparsity * u.size), u.size - 1) for u in found}


def bn_gamma_counts(params, found: list[Unit],
                    sparsity: float) -> dict[str, int]:
  """Channels to prune per unit from the global |gamma| quantile (Eq. 8-9).

  A unit that would lose every channel reports n (callers leave it alone).
  """
  if not found:
    return {}
  mags = [np.asarray(criteria.bn_gamma(params, u)) for u in found]
  thr = np.quantile(np.concatenate(mags), float(sparsity))
  return {u.group: int(np.sum(m <= thr)) for u, m in zip(found, mags)}


def gammas_tied(params, found: list[Unit]) -> bool:
  """Whether every |gamma| is equal (they rank nothing, e.g. at init)."""
  mags = np.concatenate([np.asarray(criteria.bn_gamma(params, u))
                         for u in found])
  return bool(mags.max() == mags.min())


def counts_fn(params, found: list[Unit],
              allocation: str) -> Callable[[float], dict[str, int]]:
  """Global sparsity -> counts, for 'bn_gamma' or 'uniform'."""
  if allocation == 'bn_gamma':
    return lambda s: bn_gamma_counts(params, found, s)
  return lambda s: uniform_counts(found, s)


def macs_of_counts(graph: structure.ChannelGraph, found: list[Unit],
                   pruned: dict[str, int]) -> int:
  """MACs of the network with `pruned[g]` channels of each group removed."""
  cm = {u.group: np.arange(u.size) >= min(pruned[u.group], u.size - 1)
        for u in found}
  return graph.macs(cm)


def search(graph: structure.ChannelGraph, found: list[Unit],
           counts: Callable[[float], dict[str, int]], target_macs: float,
           iters: int = 40, tol: float = 0.005, refine: bool = True
           ) -> tuple[float, dict[str, int], int]:
  """Bisection on the global sparsity until the MACs reach `target_macs`.

  Args:
    graph: channel graph.
    found: pruned units.
    counts: global sparsity -> channels to prune per unit (monotone).
    target_macs: MACs to reach.
    iters: bisection steps.
    tol: relative tolerance; when the bisection ends more than `tol` below
      the target (coarse layers), channels are given back one at a time
      while the MACs stay at most the target.
    refine: whether to give channels back as just said.

  Returns:
    (sparsity, counts, macs): the smallest sparsity found whose MACs are at
    most the target, with its counts and MACs.
  """
  lo, hi = 0.0, 1.0
  best = (1.0, counts(1.0))
  for _ in range(iters):
    mid = (lo + hi) / 2
    c = counts(mid)
    if macs_of_counts(graph, found, c) <= target_macs:
      hi, best = mid, (mid, c)
    else:
      lo = mid
  s, c = best
  macs = macs_of_counts(graph, found, c)
  if refine and macs < (1 - tol) * target_macs:
    c, macs = give_back(graph, found, c, target_macs)
  return s, c, macs


def give_back(graph, found: list[Unit], counts: dict[str, int],
              target_macs: float) -> tuple[dict[str, int], int]:
  """Gives channels back, one per unit per pass, while MACs <= target.

  Ratio-based counts move in coarse steps on narrow layers (a 16-channel
  layer moves 6% at a time); this closes the gap below the target.
  """
  counts = dict(counts)
  macs = macs_of_counts(graph, found, counts)
  changed = True
  while changed:
    changed = False
    for u in sorted(found, key=lambda u: -u.size):
      if counts[u.group] <= 0:
        continue
      counts[u.group] -= 1
      trial = macs_of_counts(graph, found, counts)
      if trial <= target_macs:
        macs, changed = trial, True
      else:
        counts[u.group] += 1
  return counts, macs
