"""The one view of a channel group through the kernels that produce it.

Every method sees a prunable group of the traced graph as a `Unit`,
classified by how its producing kernels hold it, never by model names:

* 'head': a producer kernel has a later output axis too (an attention
  projection `[D, H, Dh]`: the group is H), or the group owns contiguous
  blocks of a flat output axis (a fused qkv `Dense(3 H Dh)` reshaped to
  `(3, H, Dh)`: each head owns its Dh-blocks of q, k and v);
* 'kv_group': a head group of grouped-query attention: one key/value head
  with its query heads. Some of its producers (the query projection) also
  produce another head group that the others (the key/value projections)
  do not: the query heads *within* the groups, pruned alike in every group
  so that the slim model stays GQA, a group of kind 'head';
* 'neuron': the producer is a 2-D dense kernel `[in, out]`;
* 'channel': the producer is a convolution `[*spatial, in, out]`;
* 'other': anything else (the head dimension Dh, strided through a flat
  axis or on the last axis of a kernel with an earlier output axis; groups
  whose producers disagree; groups no kernel produces).

A unit also carries its `kernel` (the producer whose channels lie on its
last axis with plain indexing, the one with the most input channels: the
filters that REPrune clusters and L1-norm criteria score), its
normalisation scales (`gammas`, for BN-gamma criteria), and the flags
`residual` and `fed_by_input`. `views` gives every prunable group;
`select` (and `units`) apply a method's policy.
"""
import dataclasses
import re
from typing import Any

import numpy as np

from jaxprune import structure

KINDS = ('head', 'kv_group', 'neuron', 'channel')


@dataclasses.dataclass(frozen=True)
class Unit:
  """A prunable group, seen through its producing kernels.

  Attributes:
    group: the channel group's name.
    size: number of units (heads, neurons or channels).
    kind: 'head', 'kv_group', 'neuron', 'channel' or 'other' (module
      docstring).
    producers: (kernel path below 'params', axis) of every kernel that
      creates the units.
    index: per producer, None (unit c is entry c of the axis) or an int
      array [size, k]: the k entries of the axis that unit c owns (a
      composite axis, `ChannelGraph` group index); () when all are plain.
    kernel: path of the producing kernel with the group on its last axis
      and the most input channels, or None.
    gammas: paths of the group's normalisation scales (shape [size]).
    residual: the group passes through a residual add.
    fed_by_input: a producer reads the model input (the stem, the patch
      embedding).
  """
  group: str
  size: int
  kind: str
  producers: tuple[tuple[tuple[str, ...], int], ...]
  index: tuple[Any, ...] = dataclasses.field(default=(), compare=False)
  kernel: tuple[str, ...] | None = None
  gammas: tuple[tuple[str, ...], ...] = ()
  residual: bool = False
  fed_by_input: bool = False

  def entries(self, i: int) -> np.ndarray | None:
    """The index of producer i (None for a plain axis)."""
    return self.index[i] if self.index else None


def _shape(params, path) -> tuple[int, ...]:
  return tuple(np.shape(structure.lookup(params, path)))


def _blocks(index: np.ndarray) -> bool:
  """Whether each unit's entries include runs of consecutive indices."""
  rows = np.sort(np.asarray(index), axis=1)
  return rows.shape[1] > 1 and bool(np.any(np.diff(rows, axis=1) == 1))


def views(graph: structure.ChannelGraph, params: Any) -> list[Unit]:
  """Every prunable group of `graph` as a `Unit`, in graph order."""
  out_axes: dict[tuple[str, ...], set[int]] = {}
  for g in graph.groups:
    for p in g.producers:
      if p.collection == 'params':
        out_axes.setdefault(tuple(p.path), set()).add(p.axis)
  found = []
  for g in graph.prunable:
    prods, kinds, index, fed = [], set(), [], False
    kernel, kernel_in = None, -1
    for p in g.producers:
      if p.collection != 'params':
        continue
      shape = _shape(params, p.path)
      ndim = len(shape)
      axes = out_axes.get(tuple(p.path), set())
      if p in g.index:
        # A flat axis: heads own contiguous blocks, a head dimension is
        # strided through them.
        kinds.add('head' if _blocks(g.index[p]) else 'other')
      elif any(a > p.axis for a in axes):
        kinds.add('head')
      elif any(a < p.axis for a in axes):
        kinds.add('other')
      elif ndim == 2:
        kinds.add('neuron')
      elif ndim > 2:
        kinds.add('channel')
      prods.append((tuple(p.path), p.axis))
      index.append(np.asarray(g.index[p]) if p in g.index else None)
      fed |= any('input' in graph.touches(structure.Member('params', p.path,
                                                           a))
                 for a in range(ndim) if a != p.axis)
      if (ndim >= 2 and p.axis == ndim - 1 and p not in g.index and
          shape[-2] > kernel_in):
        kernel, kernel_in = tuple(p.path), shape[-2]
    gammas = tuple(
        tuple(m.path) for m in g.members
        if m.collection == 'params' and m.path[-1] == 'scale' and
        m.axis == 0 and m not in g.index and
        _shape(params, m.path) == (g.size,))
    kind = kinds.pop() if len(kinds) == 1 else 'other'
    found.append(Unit(g.name, g.size, kind, tuple(prods),
                      tuple(index) if any(i is not None for i in index)
                      else (), kernel, gammas, g.residual, fed))
  return _kv_groups(found)


def _kv_groups(found: list[Unit]) -> list[Unit]:
  """Marks GQA key/value groups: head units some of whose producers (the
  query projection) also produce another head unit that the others (the
  key/value projections) do not: the query heads within each group."""
  kernels = lambda u: {path for path, _ in u.producers}
  heads = [u for u in found if u.kind == 'head']
  out = []
  for u in found:
    if u.kind == 'head' and any(
        other is not u and kernels(other) and kernels(other) < kernels(u)
        for other in heads):
      u = dataclasses.replace(u, kind='kv_group')
    out.append(u)
  return out


def select(found: list[Unit], kinds: tuple[str, ...] | None = None,
           residual: bool = False, input_layer: bool = False,
           exclude: str = '', kernel: bool = False) -> list[Unit]:
  """A method's policy over `views(...)`.

  Args:
    found: units from `views`.
    kinds: keep only these kinds (None: any).
    residual: also keep groups coupled to a residual add (by default the
      residual stream keeps its width).
    input_layer: also keep groups produced from the model input.
    exclude: a regular expression; units whose group name it matches
      (re.search) are left out.
    kernel: keep only units with a `kernel` (clustering, filter norms).
  """
  pattern = re.compile(exclude) if exclude else None
  return [u for u in found
          if (kinds is None or u.kind in kinds)
          and (residual or not u.residual)
          and (input_layer or not u.fed_by_input)
          and (pattern is None or not pattern.search(u.group))
          and (not kernel or u.kernel is not None)]


def units(graph: structure.ChannelGraph, params: Any,
          kinds: tuple[str, ...] | None = KINDS, **policy) -> list[Unit]:
  """The units a method prunes: `select(views(graph, params), kinds,
  **policy)`; by default the heads, neurons and channels off the residual
  stream and not fed by the model input."""
  return select(views(graph, params), kinds, **policy)


def prunable_kernels(graph: structure.ChannelGraph,
                     params: Any) -> list[tuple[str, ...]]:
  """Paths (below 'params') of the kernels unstructured pruning may touch.

  The kernels that produce a channel group (convs, dense and attention
  projections), except those reading the model input (the stem conv, the
  patch embedding) or writing the model output (the classifier head);
  biases, norms and embeddings are never included. In graph order.
  """
  out = []
  for g in graph.groups:
    for p in g.producers:
      path = tuple(p.path)
      if p.collection != 'params' or path in out:
        continue
      ndim = len(_shape(params, path))
      if ndim < 2:
        continue
      if not any(graph.touches(structure.Member('params', path, a))
                 for a in range(ndim)):
        out.append(path)
  return out
