"""CUP: cluster pruning, one representative filter per cluster.

Duggal et al., "CUP: Cluster Pruning for Compressing Deep Neural
Networks", 2019 (arXiv:1911.08630). Every pruned layer's filters become
points: filter i's feature concatenates its incoming weights (the
producing kernel's `W[..., i]`) and its outgoing weights (slice i of every
kernel that reads the channel). Each layer's points are clustered
agglomeratively (`jaxprune.cluster.linkage`, Ward by default), and one
global height t cuts every layer's tree; each cluster keeps one filter,
the one nearest its cluster's centroid, and the others are pruned.

One height means the same across layers because each layer's features are
divided by their root-mean-square norm (our choice; the weights of
different layers have different scales). t is the `sparsity` quantile of
every layer's merge heights (a layer prunes the merges at or below t), or
is found by bisection so that the MACs reach a target
(`jaxprune.methods.budget`). Phase 0 trains (or takes `init_from` weights),
phase 1 fine-tunes the pruned network; it is slimmed at the end.

`--config.method=cup`.
"""
from typing import Any

import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxprune import cluster, structure
from jaxprune.errors import check_choice
from jaxprune.methods import base, budget, oneshot
from jaxprune.methods.units import Unit


def features(params: Any, graph: structure.ChannelGraph,
             unit: Unit) -> np.ndarray:
  """[n, d] filter features: incoming then outgoing weights, per filter,
  divided by the layer's root-mean-square feature norm."""
  w = np.asarray(structure.lookup(params, unit.kernel), np.float64)
  parts = [w.reshape(-1, w.shape[-1]).T]
  group = graph.group(unit.group)
  producers = set(group.producers)
  for m in group.members:
    if (m.collection != 'params' or m in producers or m in group.index or
        m.path[-1] != 'kernel'):
      continue
    out = np.asarray(structure.lookup(params, m.path), np.float64)
    parts.append(np.moveaxis(out, m.axis, 0).reshape(out.shape[m.axis], -1))
  f = np.concatenate(parts, axis=1)
  rms = np.sqrt(np.mean(np.sum(f * f, axis=1)))
  return f / rms if rms > 0 else f


def representatives(points: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Keep mask with one point per cluster: the one nearest its centroid
  (ties to the lower index)."""
  labels = np.asarray(labels)
  k = labels.max() + 1
  sums = np.zeros((k, points.shape[1]))
  np.add.at(sums, labels, points)
  centroid = sums / np.bincount(labels, minlength=k)[:, None]
  dist = np.sum((points - centroid[labels]) ** 2, axis=1)
  order = np.lexsort((np.arange(len(labels)), dist, labels))
  _, first = np.unique(labels[order], return_index=True)
  keep = np.zeros(len(labels), bool)
  keep[order[first]] = True
  return keep


@base.register
class CUP(oneshot.OneShot):
  """Clusters each layer's filters, one global cut, one filter per cluster."""

  name = 'cup'
  config_name = 'cup'

  @classmethod
  def defaults(cls) -> ml_collections.ConfigDict:
    c = oneshot.oneshot_fields(ml_collections.ConfigDict())
    del c['ranking']  # One global height by construction.
    c.linkage = 'ward'  # Clustering: ward | single | complete | average.
    return c

  def __init__(self, config, ctx):
    check_choice('cup.linkage', config.cup.linkage, cluster.METHODS)
    super().__init__(config, ctx)

  def masks(self, trained):
    params, graph = trained['params'], self.ctx.graph
    points, trees, heights = {}, {}, {}
    for u in self.units:
      points[u.group] = features(params, graph, u)
      z = np.asarray(cluster.linkage(jnp.asarray(points[u.group][None],
                                                 jnp.float32),
                                     self.cfg.linkage))[0]
      trees[u.group], heights[u.group] = z, z[:, 2]
    _, pruned = self.budget.counts(
        fn=lambda s: budget.global_counts(heights, self.units, s))
    out = {}
    for u in self.units:
      p = min(pruned[u.group], u.size - 1)
      z = trees[u.group]
      labels = (np.asarray(cluster.cut(z, z[p - 1, 2])) if p else
                np.arange(u.size))
      out[u.group] = representatives(points[u.group], labels)
    return out
