"""Prunable units of the IMP/Refill/RSST state loop (methods.md section 3).

A *unit* is one channel group of the traced graph, classified by how its
producing kernels hold it, never by model names:

* 'head': a producer kernel has a later output axis too (an attention
  projection `[D, H, Dh]`: the group is H), or the group owns contiguous
  blocks of a flat output axis (a fused qkv `Dense(3 H Dh)` reshaped to
  `(3, H, Dh)`: each head owns its Dh-blocks of q, k and v);
* 'neuron': the producer is a 2-D dense kernel `[in, out]`;
* 'channel': the producer is a convolution `[*spatial, in, out]`.

Groups on the last axis of a kernel that also has an earlier output axis,
or strided through a flat one (the head dimension Dh), are not units; neither are residual groups (the
residual stream keeps its width) nor groups fed by the model input.

`magnitude_scores` is the L1 norm of a unit's producer weights (for a head:
its Q, K and V weights; for an MLP neuron: its fc1 weights), Refill's
transformer criterion (`jaxprune.methods.refill`).
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
    index: per producer, None (unit c is entry c of the axis) or an int
      array [size, k]: the k entries of the axis that unit c owns (a
      composite axis, `ChannelGraph` group index).
  """
  group: str
  size: int
  kind: str
  producers: tuple[tuple[tuple[str, ...], int], ...]
  index: tuple[Any, ...] = dataclasses.field(default=(), compare=False)

  def entries(self, i: int) -> np.ndarray | None:
    """The index of producer i (None for a plain axis)."""
    return self.index[i] if self.index else None


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
    prods, kinds, index = [], set(), []
    for p in g.producers:
      if p.collection != 'params':
        continue
      ndim = len(np.shape(structure.lookup(params, p.path)))
      axes = out_axes.get(tuple(p.path), set())
      if p in g.index:
        # A flat axis: heads own contiguous blocks, a head dimension is
        # strided through them.
        kinds.add('head' if _blocks(g.index[p]) else 'sub')
      elif any(a > p.axis for a in axes):
        kinds.add('head')
      elif any(a < p.axis for a in axes):
        kinds.add('sub')
      elif ndim == 2:
        kinds.add('neuron')
      elif ndim > 2:
        kinds.add('channel')
      prods.append((tuple(p.path), p.axis))
      index.append(np.asarray(g.index[p]) if p in g.index else None)
    if not prods or 'sub' in kinds or len(kinds) != 1:
      continue
    if not input_layer and _fed_by_input(graph, params, prods):
      continue
    found.append(Unit(g.name, g.size, kinds.pop(), tuple(prods),
                      tuple(index) if any(i is not None for i in index)
                      else ()))
  return found


def _blocks(index: np.ndarray) -> bool:
  """Whether each unit's entries include runs of consecutive indices."""
  rows = np.sort(np.asarray(index), axis=1)
  return rows.shape[1] > 1 and bool(np.any(np.diff(rows, axis=1) == 1))


def _fed_by_input(graph, params, prods) -> bool:
  for path, axis in prods:
    ndim = len(np.shape(structure.lookup(params, path)))
    for a in range(ndim):
      if a == axis:
        continue
      for gr, _ in graph.groups_of(structure.Member('params', path, a)):
        if not gr.prunable and 'input' in gr.reason:
          return True
  return False


def producer_sum(unit: Unit, per_producer) -> jax.Array:
  """Sum over the unit's producers of `per_producer(path, axis, index)`
  (each a float [size]): float32 [size]."""
  total = jnp.zeros((unit.size,), jnp.float32)
  for i, (path, axis) in enumerate(unit.producers):
    total = total + per_producer(path, axis, unit.entries(i))
  return total


def magnitude_scores(params: Any, unit: Unit) -> jax.Array:
  """Sum of |W| of the unit's producer weights, per unit: float [size]."""
  return producer_sum(unit, lambda path, axis, index: unit_sums(
      jnp.abs(jnp.asarray(structure.lookup(params, path), jnp.float32)),
      axis, index))


def axis_sums(x: jax.Array, axis: int) -> jax.Array:
  """Sums of `x` over everything but `axis`: [x.shape[axis]]."""
  return jnp.sum(jnp.moveaxis(x, axis, 0).reshape(x.shape[axis], -1), axis=1)


def unit_sums(x: jax.Array, axis: int, index=None) -> jax.Array:
  """Per-unit sums of `x` over everything but `axis`, where unit c owns
  entry c of the axis (index None) or the entries index[c]."""
  per_entry = axis_sums(x, axis)
  return per_entry if index is None else jnp.sum(per_entry[index], axis=1)
