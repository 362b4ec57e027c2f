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
  """
  group: str
  size: int
  kind: str
  producers: tuple[tuple[tuple[str, ...], int], ...]


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
      ndim = len(np.shape(structure.lookup(params, p.path)))
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
    ndim = len(np.shape(structure.lookup(params, path)))
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
    total = total + axis_sums(
        jnp.abs(jnp.asarray(structure.lookup(params, path), jnp.float32)),
        axis)
  return total


def axis_sums(x: jax.Array, axis: int) -> jax.Array:
  """Sums of `x` over everything but `axis`: [x.shape[axis]]."""
  return jnp.sum(jnp.moveaxis(x, axis, 0).reshape(x.shape[axis], -1), axis=1)
