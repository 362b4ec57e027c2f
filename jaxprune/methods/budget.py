"""How much a baseline prunes: a channel ratio or a MACs target, per layer
or by one global ranking, over the groups its policy allows.

Every baseline (`l1`, `sfp`, `fpgm`, `cup`, `bn_slimming`) declares the
same fields (`fields`) and turns importance scores into channel masks with
one `Budget`:

* `ranking='layer'`: every unit prunes p = ceil(s n) of its n channels
  (`allocation.uniform_counts`), keeping the n - p best-scored ones;
* `ranking='global'`: one threshold over every unit's scores: the s
  quantile, and unit l prunes its channels scored at or below it (the
  BN-gamma rule of Eqs. 8-9 of REPrune, with any scores); at least one
  channel per unit is kept.

With `target_macs` or `target_reduction` the global sparsity s is found by
the same bisection as REPrune's (`allocation.search`), channels are then
given back while the MACs stay at most the target, so a method lands
within about 1% below it. Without a target, s = `sparsity`.

The group policy is `jaxprune.methods.units.select`'s: by default only
groups off the residual stream and not fed by the model input (the
block-internal widths).
"""
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from jaxprune import structure
from jaxprune.errors import JaxpruneError, check_choice
from jaxprune.methods import allocation, criteria, units as units_lib
from jaxprune.methods.units import Unit

RANKINGS = ('layer', 'global')


def fields(c: ml_collections.ConfigDict, sparsity: float = 0.5,
           ranking: str = 'layer') -> ml_collections.ConfigDict:
  """Adds the shared budget and policy fields to a method's sub-dict."""
  c.sparsity = sparsity  # Channel sparsity s (ignored with a MACs target).
  c.ranking = ranking  # layer: ceil(s n) per unit | global: one score threshold.
  c.target_macs = 0.0  # MACs per example to reach (bisection on s); 0: off.
  c.target_reduction = 0.0  # Or: fraction of the MACs to remove; 0: off.
  c.residual = False  # Also prune groups coupled to a residual add.
  c.input_layer = False  # Also prune groups produced from the model input.
  c.exclude = ''  # Regex of group names never pruned.
  return c


def layer_counts(found: list[Unit], sparsity: float) -> dict[str, int]:
  """p = ceil(s n) pruned per unit, at most n - 1 (n - p are kept)."""
  return allocation.uniform_counts(found, sparsity)


def global_counts(scores: dict[str, Any], found: list[Unit],
                  sparsity: float) -> dict[str, int]:
  """Pruned per unit under one threshold: the `sparsity` quantile of all
  scores; a unit prunes #{score <= threshold} (n when all, which callers
  clip to n - 1)."""
  if not found:
    return {}
  flat = np.concatenate([np.asarray(scores[u.group], np.float64)
                         for u in found])
  if sparsity <= 0:
    return {u.group: 0 for u in found}
  thr = np.quantile(flat, float(sparsity))
  return {u.group: int(np.sum(np.asarray(scores[u.group]) <= thr))
          for u in found}


class Budget:
  """A method's units, its target, and scores -> channel masks.

  Args:
    graph: the model's channel graph.
    params: the 'params' collection (arrays or shape structs).
    cfg: the method's sub-dict (`fields`).
    name: the sub-dict's name, for error messages.
    kernel: keep only units with a `kernel` (filter criteria).
    kinds: unit kinds allowed (`units.KINDS` by default).
  """

  def __init__(self, graph: structure.ChannelGraph, params: Any,
               cfg: ml_collections.ConfigDict, name: str,
               kernel: bool = True,
               kinds: tuple[str, ...] | None = units_lib.KINDS):
    self.ranking = cfg.get('ranking', 'layer')
    check_choice(f'{name}.ranking', self.ranking, RANKINGS)
    if not 0 <= cfg.sparsity < 1:
      raise JaxpruneError(f'{name}.sparsity={cfg.sparsity}; allowed: '
                          '0 <= sparsity < 1.')
    if cfg.target_macs < 0 or not 0 <= cfg.target_reduction < 1:
      raise JaxpruneError(
          f'{name}.target_macs={cfg.target_macs}, {name}.target_reduction='
          f'{cfg.target_reduction}; allowed: target_macs >= 0 and 0 <= '
          'target_reduction < 1.')
    if cfg.target_macs and cfg.target_reduction:
      raise JaxpruneError(
          f'{name}.target_macs={cfg.target_macs} and {name}.target_reduction'
          f'={cfg.target_reduction}; allowed: one of them (the other 0), '
          'not both.')
    self.graph, self.cfg, self.name = graph, cfg, name
    self.units = units_lib.units(graph, params, kinds=kinds,
                                 residual=cfg.residual,
                                 input_layer=cfg.input_layer,
                                 exclude=cfg.exclude, kernel=kernel)
    if not self.units:
      raise JaxpruneError(
          f'{name} found no channel group to prune (policy: residual='
          f'{cfg.residual}, input_layer={cfg.input_layer}, exclude='
          f'{cfg.exclude!r}{", with a kernel" if kernel else ""}); prunable '
          f'groups: {", ".join(g.name for g in graph.prunable) or "none"}.')
    self.dense_macs = int(graph.macs(graph.full_masks()))
    self.target = (float(cfg.target_macs) if cfg.target_macs else
                   self.dense_macs * (1 - cfg.target_reduction)
                   if cfg.target_reduction else None)
    floor = allocation.macs_of_counts(
        graph, self.units, {u.group: u.size - 1 for u in self.units})
    if self.target is not None and not floor <= self.target < self.dense_macs:
      raise JaxpruneError(
          f'{name}: MACs target {self.target:,.0f} is out of reach; allowed: '
          f'between {floor:,} (one channel per pruned group) and '
          f'{self.dense_macs:,} (dense).')

  def counts_fn(self, scores: dict[str, Any] | None
                ) -> Callable[[float], dict[str, int]]:
    """Global sparsity -> channels pruned per unit, for `cfg.ranking`."""
    if self.ranking == 'global':
      if scores is None:
        raise JaxpruneError(f"{self.name}.ranking='global' needs scores.")
      return lambda s: global_counts(scores, self.units, s)
    return lambda s: layer_counts(self.units, s)

  def counts(self, scores: dict[str, Any] | None = None,
             fn: Callable[[float], dict[str, int]] | None = None
             ) -> tuple[float, dict[str, int]]:
    """(global sparsity, channels pruned per unit) meeting the budget.

    Args:
      scores: per-unit scores (for `ranking='global'`).
      fn: instead, a method's own monotone rule: global sparsity ->
        channels pruned per unit.
    """
    fn = fn or self.counts_fn(scores)
    if self.target is None:
      s = float(self.cfg.sparsity)
      return s, fn(s)
    s, counts, _ = allocation.search(self.graph, self.units, fn, self.target)
    return s, counts

  def masks(self, scores: dict[str, Any]) -> dict[str, np.ndarray]:
    """Channel keep masks: per unit, its n - p highest scores (ties to the
    lower index), p from `counts` (at most n - 1)."""
    _, counts = self.counts(scores)
    return self.masks_of_counts(scores, counts)

  def masks_of_counts(self, scores: dict[str, Any],
                      counts: dict[str, int]) -> dict[str, np.ndarray]:
    """Per unit, keeps its n - counts[g] highest scores (at least one)."""
    return {u.group: np.asarray(criteria.top_k(
        np.asarray(scores[u.group], np.float32),
        u.size - min(counts[u.group], u.size - 1))) for u in self.units}

  def kernel_scores(self, params: Any, name: str) -> dict[str, Any]:
    """A kernel criterion of every unit's kernel (`criteria.kernel_scores`)."""
    return {u.group: np.asarray(criteria.kernel_scores(params, u, name))
            for u in self.units}

  def producer_masks(self, channels: dict[str, Any], params: Any) -> Any:
    """Masks like `params` that prune only the producing kernels' output
    channels (and their biases), not the consumers nor the norms.

    Soft pruning (SFP) zeroes filters this way: the consumer weights stay,
    so a zeroed filter still gets a gradient and can regrow.
    """
    return producer_masks(self.units, channels, params)


def producer_masks(found: list[Unit], channels: dict[str, Any],
                   params: Any) -> Any:
  """See `Budget.producer_masks`; `params` gives shapes (a 'params' tree)."""
  out = jax.tree.map(lambda x: np.ones((1,) * np.ndim(x), bool), params)
  for u in found:
    keep = np.asarray(channels[u.group], bool)
    for i, (path, axis) in enumerate(u.producers):
      leaf_paths = [path]
      bias = path[:-1] + ('bias',)
      if path[-1] == 'kernel':
        try:
          if np.ndim(structure.lookup(params, bias)) == 1:
            leaf_paths.append(bias)
        except (KeyError, TypeError):
          pass
      for lp in leaf_paths:
        shape = np.shape(structure.lookup(params, lp))
        ax = axis if lp is path else 0
        idx = u.entries(i)
        along = np.ones(shape[ax], bool)
        if idx is None:
          along &= keep
        else:
          along[np.asarray(idx)[~keep].ravel()] = False
        node = out
        for k in lp[:-1]:
          node = node[k]
        old = np.broadcast_to(node[lp[-1]], (1,) * len(shape)) if np.size(
            node[lp[-1]]) == 1 else node[lp[-1]]
        b = [1] * len(shape)
        b[ax % len(shape)] = shape[ax]
        node[lp[-1]] = old & along.reshape(b)
  return out
