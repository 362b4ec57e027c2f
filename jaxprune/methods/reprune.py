"""REPrune: channel pruning by kernel representative selection.

Park et al., "REPrune: Channel Pruning via Kernel Representative Selection",
AAAI 2024. For every prunable channel group:

1. take the kernel of the conv (or dense layer) that produces the channels,
   `W[..., j, i]` for input channel j and output channel (filter) i;
2. cluster, for every live input channel j, the n kernels `W[..., j, :]`
   with agglomerative (Ward) linkage (`jaxprune.cluster.linkage`, all input
   channels of all equally shaped layers in one jitted call);
3. cut every dendrogram at the layer height h = max_j of the m-th merge
   height, m = ceil(s n) (Alg. 1);
4. keep n - ceil(s n) filters chosen by greedy maximum cluster coverage
   (`jaxprune.coverage.greedy_batch`); the paper writes ceil((1 - s) n),
   which differs by one where s n is not an integer.

The per-layer sparsity s comes from the BN-gamma global quantile (Eqs. 8-9),
is uniform, or is searched (bisection on the global sparsity) so that the
masked network's MACs hit a target (`jaxprune.methods.allocation`). A layer
prunes p = ceil(s n) channels and keeps n - p. The method `REPrune`
(`--config.method=reprune`) runs the paper's schedule, the loop of CHEX
(Hou et al., CVPR 2022; `jaxprune.methods.explore`): soft masks while
training from scratch, a mask event every few epochs with regrowth, frozen
masks afterwards.

Everything here sees channel groups of a `ChannelGraph`, never model names.
"""
import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxprune import cluster, coverage, structure
from jaxprune.errors import check_choice
from jaxprune.methods import base, explore
from jaxprune.methods.explore import l1_masks, layers, regrow  # pylint: disable=unused-import
from jaxprune.methods.units import Unit



def kernel_points(params: Any, layer: Unit) -> jax.Array:
  """The points of Alg. 1: `[C_in, n, d]`, d = kh * kw (1 for 1x1 / dense)."""
  w = jnp.asarray(structure.lookup(params, layer.kernel))
  w = w.reshape((-1,) + w.shape[-2:])  # [d, C_in, n]
  return jnp.transpose(w, (1, 2, 0)).astype(jnp.float32)


# ---------------------------------------------------------------------------
# Alg. 1 for a batch of equally shaped layers.
# ---------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=('method', 'tie_break'))
def select_batch(points: jax.Array, pruned: jax.Array, key: jax.Array | None,
                 method: str = 'ward', tie_break: str = 'random',
                 given: jax.Array | None = None):
  """Alg. 1 on `L` layers of equal shape.

  Args:
    points: `[L, C_in, n, d]` kernel points (`kernel_points`).
    pruned: int `[L]`: channels to prune, p = ceil(s n), clipped to 0..n-1.
      The cut uses the p-th merge (m = p); ceil((1 - s) n) = n - p filters
      are kept.
    key: PRNG key for tie_break='random'.
    method: linkage method.
    tie_break: 'random' or 'lowest_index'.
    given: optional bool `[L, n]` keep masks: skip the greedy selection and
      report the coverage rate of these filters (with `pruned` = n - kept).

  Returns:
    (keep mask bool `[L, n]`, coverage rate `[L]` of the kept filters over
    the (live channel, cluster) pairs). Input channels whose kernels are all
    zero (already pruned) take no part.
  """
  num, c_in, n, _ = points.shape
  pruned = jnp.clip(jnp.asarray(pruned, jnp.int32), 0, n - 1)
  live = jnp.any(points != 0, axis=(2, 3))  # [L, C_in]
  z = cluster.linkage(points, method)  # [L, C_in, n - 1, 4]
  if n > 1:
    idx = jnp.maximum(pruned - 1, 0)[:, None, None, None]
    hj = jnp.take_along_axis(z[..., 2:3], idx, axis=2)[..., 0, 0]
    hj = jnp.where(live & (pruned[:, None] > 0), hj, -jnp.inf)
    h = jnp.max(hj, axis=1)  # The layer cut height.
    labels = cluster.cut(z, h[:, None])
  else:
    labels = jnp.zeros((num, c_in, n), jnp.int32)
  # A dead channel is one cluster every filter covers: its constant gain
  # never changes the greedy choice, so it is excluded exactly.
  labels = jnp.where(live[..., None], labels, 0)
  if given is None:
    keep = coverage.greedy_batch(labels, n - pruned, tie_break, key)
  else:
    keep = jnp.asarray(given, bool)
  return keep, coverage.coverage_rate(labels, keep, live)


def select(params: Any, lays: list[Unit], pruned: dict[str, Any],
           key: jax.Array | None = None, method: str = 'ward',
           tie_break: str = 'random', given: dict[str, Any] | None = None):
  """Alg. 1 for every layer; equally shaped layers share one call.

  Args:
    params: the 'params' collection.
    lays: layers from `layers`.
    pruned: group name -> channels to prune (int).
    key: PRNG key (tie_break='random').
    method: linkage method ('ward', 'single', 'complete', 'average').
    tie_break: 'random' or 'lowest_index'.
    given: optional keep masks per group: report their coverage rates at
      the cut of their own pruned counts instead of selecting.

  Returns:
    (channel masks {group: bool [n]}, coverage rates {group: float}).
  """
  cluster._check_method(method)  # pylint: disable=protected-access
  buckets: dict[tuple[int, ...], list[int]] = {}
  points = [kernel_points(params, l) for l in lays]
  for i, p in enumerate(points):
    buckets.setdefault(p.shape, []).append(i)
  masks, rates = {}, {}
  for b, (shape, members) in enumerate(buckets.items()):
    k = None if key is None else jax.random.fold_in(key, b)
    fixed = None if given is None else jnp.stack(
        [jnp.asarray(given[lays[i].group], bool) for i in members])
    counts = ([pruned[lays[i].group] for i in members] if fixed is None else
              shape[1] - fixed.sum(1))
    # Clustered in float64, as scipy does: with n kernels per input channel
    # and hundreds of channels, some pair of candidate merges is usually
    # within float32 rounding (1e-7) of a tie, and float32 would order it
    # differently from the float64 reference.
    with jax.enable_x64(True):
      keep, rate = select_batch(
          jnp.stack([points[i] for i in members]).astype(jnp.float64),
          jnp.asarray(counts, jnp.int32), k, method=method,
          tie_break=tie_break, given=fixed)
    for row, i in enumerate(members):
      masks[lays[i].group] = keep[row]
      rates[lays[i].group] = rate[row]
  return masks, rates


def reference_select(kernel: np.ndarray, pruned: int,
                     method: str = 'ward') -> np.ndarray:
  """Alg. 1 for one layer with scipy and a Python greedy (lowest index).

  A straightforward reference for tests and benchmarks: one
  `scipy.cluster.hierarchy.linkage` per live input channel, `fcluster` at
  the layer height, then greedy coverage in Python.
  """
  from scipy.cluster import hierarchy  # pylint: disable=g-import-not-at-top
  w = np.asarray(kernel, np.float64)
  w = w.reshape((-1,) + w.shape[-2:])
  n = w.shape[-1]
  live = [j for j in range(w.shape[1]) if np.any(w[:, j, :])]
  zs = [hierarchy.linkage(w[:, j, :].T, method) for j in live] if n > 1 \
      else []
  h = max((z[pruned - 1, 2] for z in zs), default=-np.inf) if pruned else \
      -np.inf
  labels = [hierarchy.fcluster(z, h, 'distance') if pruned else
            np.arange(n) for z in zs]
  covered, chosen = set(), []
  for _ in range(n - pruned):
    best, best_gain = -1, -1
    for i in range(n):
      if i in chosen:
        continue
      gain = sum((j, lab[i]) not in covered for j, lab in enumerate(labels))
      if gain > best_gain:
        best, best_gain = i, gain
    chosen.append(best)
    covered |= {(j, lab[best]) for j, lab in enumerate(labels)}
  mask = np.zeros(n, bool)
  mask[chosen] = True
  return mask


# ---------------------------------------------------------------------------
# The method.
# ---------------------------------------------------------------------------


@base.register
class REPrune(explore.ExploreLoop):
  """REPrune while training from scratch, with CHEX regrowth.

  The loop of `jaxprune.methods.explore.ExploreLoop`, selecting with Alg. 1
  (`select`); the BN-gamma allocation falls back to uniform while all
  |gamma| are equal (they rank nothing, e.g. at initialisation). With a
  MACs target, s is found by bisection at every event (`allocation.search`).
  """

  name = 'reprune'
  config_name = 'reprune'

  @classmethod
  def defaults(cls) -> ml_collections.ConfigDict:
    r = explore.loop_defaults(delta0=0.25)
    r.linkage = 'ward'  # Clustering: ward | single | complete | average.
    r.tie_break = 'random'  # Greedy coverage ties: random | lowest_index.
    r.coverage_every_epochs = 1  # Log the cluster coverage rate; 0: off.
    return r

  def __init__(self, config, ctx: base.Context):
    check_choice('reprune.linkage', config.reprune.linkage, cluster.METHODS)
    check_choice('reprune.tie_break', config.reprune.tie_break,
                 coverage.TIE_BREAKS)
    super().__init__(config, ctx)

  def choose(self, params, pruned, key):
    masks, rates = select(params, self.lays, pruned, key,
                          method=self.cfg.linkage,
                          tie_break=self.cfg.tie_break)
    return masks, {'coverage_rate': float(np.mean([float(r) for r in
                                                   rates.values()]))}

  def coverage(self, params, opt_state, key=None) -> float:
    """Mean cluster coverage rate of the current masks (paper's Fig. 3)."""
    host = jax.device_get(params)
    _, rates = select(host, self.lays, None, key, method=self.cfg.linkage,
                      tie_break='lowest_index',
                      given=self.current_masks(opt_state))
    return float(np.mean([float(r) for r in rates.values()]))

  def epoch_end(self, k, epoch, params, opt_state) -> dict[str, float]:
    """The coverage-rate log line after `epoch` (empty when not due)."""
    every = self.cfg.coverage_every_epochs
    if not every or (epoch + 1) % every:
      return {}
    return {'coverage_rate': self.coverage(params, opt_state)}
