"""Prunable units of the IMP/Refill/RSST state loop (methods.md section 3).

A *unit* is one channel group of the traced graph, classified by how its
producing kernels hold it, never by model names:

* 'head': a producer kernel has a later output axis too (an attention
  projection `[D, H, Dh]`: the group is H);
* 'neuron': the producer is a 2-D dense kernel `[in, out]`;
* 'channel': the producer is a convolution `[*spatial, in, out]`.

Groups on the last axis of a kernel that also has an earlier output axis
(the head dimension Dh) are not units; neither are residual groups (the
residual stream keeps its width) nor groups fed by the model input.

Refill scores a unit by the L1 norm of its producers' weights (for a head:
its Q, K and V weights; for an MLP neuron: its fc1 weights) and keeps the
top `int(N (1 - rate))` of each kind in one global pool.
"""
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune import structure

KINDS = ('head', 'neuron', 'channel')


@dataclasses.dataclass(frozen=True)
class Unit:
  """A prunable group for the state-loop methods.

  Attributes:
    group: the channel group's name.
    size: number of units (heads, neurons or channels).
    kind: 'head', 'neuron' or 'channel'.
    producers: (kernel path below 'params', axis) of every kernel that
      creates the units.
  """
  group: str
  size: int
  kind: str
  producers: tuple[tuple[tuple[str, ...], int], ...]


def _leaf(tree, path):
  for k in path:
    tree = tree[k]
  return tree


def units(graph: structure.ChannelGraph, params: Any,
          input_layer: bool = False) -> list[Unit]:
  """The graph's units (module docstring), in graph order."""
  out_axes: dict[tuple[str, ...], set[int]] = {}
  for g in graph.groups:
    for p in g.producers:
      if p.collection == 'params':
        out_axes.setdefault(tuple(p.path), set()).add(p.axis)
  found = []
  for g in graph.prunable:
    if g.residual:
      continue
    prods, kinds = [], set()
    for p in g.producers:
      if p.collection != 'params' or p in g.index:
        continue
      ndim = len(np.shape(_leaf(params, p.path)))
      axes = out_axes.get(tuple(p.path), set())
      if any(a > p.axis for a in axes):
        kinds.add('head')
      elif any(a < p.axis for a in axes):
        kinds.add('sub')
      elif ndim == 2:
        kinds.add('neuron')
      elif ndim > 2:
        kinds.add('channel')
      prods.append((tuple(p.path), p.axis))
    if not prods or 'sub' in kinds or len(kinds) != 1:
      continue
    if not input_layer and _fed_by_input(graph, params, prods):
      continue
    found.append(Unit(g.name, g.size, kinds.pop(), tuple(prods)))
  return found


def _fed_by_input(graph, params, prods) -> bool:
  for path, axis in prods:
    ndim = len(np.shape(_leaf(params, path)))
    for a in range(ndim):
      if a == axis:
        continue
      for gr, _ in graph.groups_of(structure.Member('params', path, a)):
        if not gr.prunable and 'input' in gr.reason:
          return True
  return False


def magnitude_scores(params: Any, unit: Unit) -> jax.Array:
  """Sum of |W| of the unit's producer weights, per unit: float [size]."""
  total = jnp.zeros((unit.size,), jnp.float32)
  for path, axis in unit.producers:
    w = jnp.abs(jnp.asarray(_leaf(params, path), jnp.float32))
    total = total + jnp.sum(jnp.moveaxis(w, axis, 0).reshape(unit.size, -1),
                            axis=1)
  return total


def keep_count(total: int, rate: float) -> int:
  """int(N (1 - rate)): the seed-003 count of kept units."""
  return int(total * (1 - rate))


def global_top(scores: dict[str, jax.Array], keep: int) -> dict[str, np.ndarray]:
  """Keeps the `keep` highest scores over all groups of one pool.

  Ties go to the earlier group, then the lower index (a stable order).

  Returns:
    group -> bool keep mask.
  """
  names = list(scores)
  flat = np.concatenate([np.asarray(scores[k], np.float64) for k in names])
  if not 0 <= keep <= flat.size:
    raise ValueError(f'keep={keep}; allowed: 0..{flat.size}.')
  order = np.argsort(-flat, kind='stable')
  chosen = np.zeros(flat.size, bool)
  chosen[order[:keep]] = True
  out, start = {}, 0
  for k in names:
    n = np.size(scores[k])
    out[k] = chosen[start:start + n]
    start += n
  return out


def refill_masks(params: Any, found: list[Unit], rate: float,
                 kinds: tuple[str, ...] = ('head', 'neuron')
                 ) -> dict[str, np.ndarray]:
  """Transformer Refill: one global pool per kind, top `int(N (1 - rate))`.

  Args:
    params: trained, unmasked weights (a dropped unit can come back).
    found: units from `units`.
    rate: fraction of each pool removed.
    kinds: the pools to prune.

  Returns:
    Channel masks for the groups of those kinds.
  """
  out = {}
  for kind in kinds:
    pool = [u for u in found if u.kind == kind]
    if not pool:
      continue
    scores = {u.group: magnitude_scores(params, u) for u in pool}
    out.update(global_top(scores, keep_count(sum(u.size for u in pool),
                                             rate)))
  return out
