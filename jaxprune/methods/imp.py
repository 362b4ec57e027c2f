"""IMP: global unstructured magnitude pruning (methods.md 3.2).

The prunable weights are the kernels that produce a channel group (convs,
dense and attention projections), except those reading the model input
(the stem conv, the patch embedding) or writing the model output (the
classifier head); biases, norms and embeddings are never pruned. Each call
removes `rate` of the weights that remain, by global |w|.
"""
from typing import Any

import jax
import numpy as np

from jaxprune import structure


def prunable_paths(graph: structure.ChannelGraph,
                   params: Any) -> list[tuple[str, ...]]:
  """Paths (below 'params') of the kernels IMP prunes, in graph order."""
  out = []
  for g in graph.groups:
    for p in g.producers:
      path = tuple(p.path)
      if p.collection != 'params' or path in out:
        continue
      ndim = len(np.shape(structure.lookup(params, path)))
      if ndim < 2:
        continue
      touches = False
      for a in range(ndim):
        for gr, _ in graph.groups_of(structure.Member('params', path, a)):
          touches |= not gr.prunable and ('input' in gr.reason or
                                          'output' in gr.reason)
      if not touches:
        out.append(path)
  return out


def magnitude_masks(params: Any, paths: list[tuple[str, ...]],
                    rate: float | None = None, current: Any = None,
                    keep: int | None = None) -> Any:
  """Removes `rate` of the remaining weights of `paths` by global |w|.

  Args:
    params: the trained weights.
    paths: kernels to prune (`prunable_paths`).
    rate: fraction of the remaining (currently kept) weights to remove.
    current: masks from the previous state (a pytree like params, as this
      function returns); None keeps everything.
    keep: instead of `rate`: the number of weights to keep, among the
      remaining ones.

  Returns:
    A bool pytree like `params`: full-shape masks on `paths`, and shape
    (1,) * ndim True masks (broadcastable) elsewhere. Ties at the
    threshold go to the later weights in `paths` order.
  """
  if (rate is None) == (keep is None):
    raise ValueError('Pass exactly one of rate and keep.')
  if rate is not None and not 0 <= rate < 1:
    raise ValueError(f'rate={rate}; allowed: 0 <= rate < 1.')
  flat = []
  for path in paths:
    w = np.abs(np.asarray(structure.lookup(params, path), np.float64))
    live = (np.ones(w.shape, bool) if current is None else
            np.broadcast_to(np.asarray(structure.lookup(current, path), bool),
                            w.shape))
    flat.append(np.where(live, w, -1.0).ravel())
  values = np.concatenate(flat) if flat else np.zeros(0)
  remaining = int(np.sum(values >= 0))
  if keep is not None and not 0 <= keep <= remaining:
    raise ValueError(f'keep={keep}; allowed: 0..{remaining} (the remaining '
                     'weights).')
  drop = int(rate * remaining) if keep is None else remaining - keep
  order = np.argsort(values, kind='stable')
  kept = values >= 0
  dead = int(values.size - remaining)  # Already pruned: first in order.
  kept[order[dead:dead + drop]] = False
  masks = jax.tree.map(lambda x: np.ones((1,) * np.ndim(x), bool), params)
  start = 0
  for path, part in zip(paths, flat):
    node = masks
    for k in path[:-1]:
      node = node[k]
    node[path[-1]] = kept[start:start + part.size].reshape(
        np.shape(structure.lookup(params, path)))
    start += part.size
  return masks
