"""REPrune: channel pruning by kernel representative selection.

Park et al., "REPrune: Channel Pruning via Kernel Representative Selection",
AAAI 2024; methods.md section 1. For every prunable channel group:

1. take the kernel of the conv (or dense layer) that produces the channels,
   `W[..., j, i]` for input channel j and output channel (filter) i;
2. cluster, for every live input channel j, the n kernels `W[..., j, :]`
   with agglomerative (Ward) linkage (`jaxprune.cluster.linkage`, all input
   channels of all equally shaped layers in one jitted call);
3. cut every dendrogram at the layer height h = max_j of the m-th merge
   height, m = ceil(s n) (Alg. 1);
4. keep ceil((1 - s) n) filters chosen by greedy maximum cluster coverage
   (`jaxprune.coverage.greedy_batch`).

The per-layer sparsity s comes from the BN-gamma global quantile (Eqs. 8-9),
is uniform, or is searched (bisection on the global sparsity) so that the
masked network's MACs hit a target. `Pruner` runs the schedule of section
1.4: soft masks while training from scratch, a mask event every few epochs
with CHEX regrowth, frozen masks afterwards.

Everything here sees channel groups of a `ChannelGraph`, never model names.
"""
import dataclasses
import functools
import math
import re
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune import cluster, coverage, structure
from jaxprune import optax as optax_lib
from jaxprune.errors import JaxpruneError

ALLOCATIONS = ('bn_gamma', 'uniform')


@dataclasses.dataclass(frozen=True)
class Layer:
  """One prunable group, seen through the kernel that produces it.

  Attributes:
    group: the channel group's name.
    size: n, the group's channel count.
    kernel: path (below 'params') of the producing kernel.
    out_axis: the kernel axis of the group's channels (the last one).
    gammas: paths of the group's normalisation scales (for Eqs. 8-9).
  """
  group: str
  size: int
  kernel: tuple[str, ...]
  out_axis: int
  gammas: tuple[tuple[str, ...], ...]


def layers(graph: structure.ChannelGraph, params: Any, residual: bool = False,
           input_layer: bool = False, exclude: str = '') -> list[Layer]:
  """The groups that REPrune prunes, with their producing kernels.

  A group qualifies when it is prunable, is produced by a kernel whose
  channels lie on its last axis with plain (non-composite) indexing, and
  passes the policy:

  Args:
    graph: the model's channel graph (`jaxprune.structure.trace`).
    params: the 'params' collection (arrays or shape structs).
    residual: also prune groups coupled to a residual add (methods.md 1.5
      prunes only the others, so the residual stream keeps its width).
    input_layer: also prune groups produced directly from the model input
      (the stem), which 1.5 never prunes.
    exclude: a regular expression; groups whose name it matches (re.search)
      are left alone.

  Returns:
    The qualifying groups in graph order. When a group has several
    producers (a depthwise conv shares an expansion conv's channels), the
    kernel with the most input channels is clustered.
  """
  pattern = re.compile(exclude) if exclude else None
  out = []
  for g in graph.prunable:
    if g.residual and not residual:
      continue
    if pattern is not None and pattern.search(g.name):
      continue
    best = None
    for p in g.producers:
      shape = (np.shape(structure.lookup(params, p.path))
               if p.collection == 'params' else ())
      if len(shape) < 2 or p.axis != len(shape) - 1 or p in g.index:
        continue
      if best is None or shape[-2] > best[1][-2]:
        best = (p, shape)
    if best is None:
      continue
    p, shape = best
    if not input_layer:
      fed = graph.groups_of(structure.Member('params', p.path, len(shape) - 2))
      if any(not gr.prunable and 'input' in gr.reason for gr, _ in fed):
        continue
    gammas = tuple(
        m.path for m in g.members
        if m.collection == 'params' and m.path[-1] == 'scale' and
        m.axis == 0 and m not in g.index and
        np.shape(structure.lookup(params, m.path)) == (g.size,))
    out.append(Layer(g.name, g.size, tuple(p.path), len(shape) - 1, gammas))
  return out


def kernel_points(params: Any, layer: Layer) -> jax.Array:
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


def select(params: Any, lays: list[Layer], pruned: dict[str, Any],
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
# How much to prune per layer.
# ---------------------------------------------------------------------------


def gamma_magnitudes(params: Any, layer: Layer) -> jax.Array:
  """|gamma| per channel, averaged over the group's normalisation scales."""
  if not layer.gammas:
    raise JaxpruneError(
        f'Group {layer.group!r} has no normalisation scale for the BN-gamma '
        "allocation; use allocation='uniform'.")
  return jnp.mean(jnp.stack([jnp.abs(structure.lookup(params, p)) for p in
                             layer.gammas]), axis=0)


def bn_gamma_counts(params: Any, lays: list[Layer],
                    sparsity: float) -> dict[str, int]:
  """Channels to prune per layer from the global |gamma| quantile (Eq. 8-9).

  gamma* = quantile(Gamma, s) over every layer's |gamma|; layer l prunes
  #{|gamma_l| <= gamma*}. A layer that would lose every channel reports n
  (the caller leaves it unchanged at that event).
  """
  if not lays:
    return {}
  mags = [np.asarray(gamma_magnitudes(params, l)) for l in lays]
  thr = np.quantile(np.concatenate(mags), float(sparsity))
  return {l.group: int(np.sum(m <= thr)) for l, m in zip(lays, mags)}


def uniform_counts(lays: list[Layer], sparsity: float) -> dict[str, int]:
  """p = ceil(s n) for every layer (at most n - 1)."""
  return {l.group: min(_ceil(sparsity * l.size), l.size - 1) for l in lays}


def _ceil(x: float) -> int:
  return int(math.ceil(round(x, 6)))


def macs_of_counts(graph: structure.ChannelGraph, lays: list[Layer],
                   pruned: dict[str, int]) -> int:
  """MACs of the network with `pruned[g]` channels of each group removed."""
  cm = {l.group: np.arange(l.size) >= min(pruned[l.group], l.size - 1)
        for l in lays}
  return graph.macs(cm)


def search(graph: structure.ChannelGraph, lays: list[Layer],
           counts_fn: Callable[[float], dict[str, int]], target_macs: float,
           iters: int = 40, tol: float = 0.005, refine: bool = True
           ) -> tuple[float, dict[str, int], int]:
  """Bisection on the global sparsity until the MACs reach `target_macs`.

  Args:
    graph: channel graph.
    lays: pruned layers.
    counts_fn: global sparsity -> channels to prune per layer (monotone).
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
  best = (1.0, counts_fn(1.0))
  for _ in range(iters):
    mid = (lo + hi) / 2
    counts = counts_fn(mid)
    if macs_of_counts(graph, lays, counts) <= target_macs:
      hi, best = mid, (mid, counts)
    else:
      lo = mid
  s, counts = best
  macs = macs_of_counts(graph, lays, counts)
  if refine and macs < (1 - tol) * target_macs:
    counts, macs = _refine(graph, lays, counts, target_macs)
  return s, counts, macs


def _refine(graph, lays, counts, target_macs):
  """Gives channels back, one per layer per pass, while MACs <= target.

  Ratio-based counts move in coarse steps on narrow layers (a 16-channel
  layer moves 6% at a time); this closes the gap below the target.
  """
  counts = dict(counts)
  macs = macs_of_counts(graph, lays, counts)
  changed = True
  while changed:
    changed = False
    for l in sorted(lays, key=lambda l: -l.size):
      if counts[l.group] <= 0:
        continue
      counts[l.group] -= 1
      trial = macs_of_counts(graph, lays, counts)
      if trial <= target_macs:
        macs, changed = trial, True
      else:
        counts[l.group] += 1
  return counts, macs


def l1_masks(params: Any, lays: list[Layer],
             pruned: dict[str, int]) -> dict[str, jax.Array]:
  """Keeps the n - p filters of largest L1 norm per layer."""
  out = {}
  for l in lays:
    w = jnp.asarray(structure.lookup(params, l.kernel))
    norms = jnp.sum(jnp.abs(w.reshape(-1, w.shape[-1])), axis=0)
    rank = jnp.argsort(jnp.argsort(-norms, stable=True), stable=True)
    out[l.group] = rank < l.size - min(pruned[l.group], l.size - 1)
  return out


@jax.jit
def _regrow_one(w, keep, extra, key):
  """Importance sampling of `extra` pruned filters (CHEX regrowth).

  Probabilities are a softmax over the norm of each pruned filter's
  residual after orthogonal projection onto the span of the kept filters;
  sampling without replacement by Gumbel top-k.
  """
  f = w.reshape(-1, w.shape[-1]).astype(jnp.float32)  # [D, n]
  k = f * keep[None, :]
  q = jnp.linalg.pinv(k)  # [n, D]; pruned columns of k are zero.
  resid = f - k @ (q @ f)
  norms = jnp.linalg.norm(resid, axis=0)
  score = norms + jax.random.gumbel(key, norms.shape)
  score = jnp.where(keep, -jnp.inf, score)
  rank = jnp.argsort(jnp.argsort(-score, stable=True), stable=True)
  return keep | (rank < extra)


def regrow(params: Any, lays: list[Layer], keep: dict[str, jax.Array],
           extra: dict[str, int], key: jax.Array) -> dict[str, jax.Array]:
  """Adds `extra[g]` sampled pruned channels to each layer's keep mask."""
  out = dict(keep)
  for i, l in enumerate(lays):
    if extra.get(l.group, 0) > 0:
      out[l.group] = _regrow_one(structure.lookup(params, l.kernel),
                                 keep[l.group], extra[l.group],
                                 jax.random.fold_in(key, i))
  return out


# ---------------------------------------------------------------------------
# The training schedule (methods.md 1.4).
# ---------------------------------------------------------------------------


def _tree_where(mask_tree, a, b):
  return jax.tree.map(lambda m, x, y: jnp.where(jnp.asarray(m), x, y),
                      mask_tree, a, b)


class Pruner:
  """REPrune while training from scratch, with CHEX regrowth.

  Soft masks live in a `jaxprune.optax.masked(mode='soft', reapply='step')`
  state, with the current channel masks and a stash of every weight's most
  recently used value as its aux. Events run at the start of an epoch:

  * epoch 0: L1-norm masks at sparsity s - delta0 (the initial mask; BN
    scales are all equal at initialisation, so the allocation is uniform);
  * every `every_epochs` epochs before `until_epoch`: Alg. 1 at s, then
    `(n - p(s - delta_t)) - (n - p(s))` channels regrown by importance
    sampling, delta_t = delta0 (1 + cos(pi t / T)) / 2;
  * at min(until_epoch, last epoch): Alg. 1 at s with no regrowth; the
    masks are then frozen. (A one-epoch run has only this event, at 0.)

  The BN-gamma allocation falls back to uniform while all |gamma| are equal
  (they rank nothing, e.g. at initialisation).

  With a MACs target, s is found by bisection at every event (`search`).

  Args:
    cfg: the `config.reprune` ConfigDict.
    graph: channel graph of the model (`jaxprune.structure.trace`).
    params: the 'params' collection (arrays or shape structs).
    num_epochs: training epochs.
    log: a printf-style logger for progress lines.
  """

  def __init__(self, cfg, graph: structure.ChannelGraph, params: Any,
               num_epochs: int, log: Callable[..., None] = print):
    if cfg.allocation not in ALLOCATIONS:
      raise JaxpruneError(f'reprune.allocation={cfg.allocation!r}; allowed: '
                          f'{", ".join(ALLOCATIONS)}.')
    if cfg.linkage not in cluster.METHODS:
      raise JaxpruneError(f'reprune.linkage={cfg.linkage!r}; allowed: '
                          f'{", ".join(cluster.METHODS)}.')
    if cfg.tie_break not in coverage.TIE_BREAKS:
      raise JaxpruneError(f'reprune.tie_break={cfg.tie_break!r}; allowed: '
                          f'{", ".join(coverage.TIE_BREAKS)}.')
    if not 0 <= cfg.sparsity < 1 or not 0 <= cfg.delta0 <= cfg.sparsity:
      raise JaxpruneError(
          f'reprune.sparsity={cfg.sparsity}, reprune.delta0={cfg.delta0}; '
          'allowed: 0 <= sparsity < 1 and 0 <= delta0 <= sparsity.')
    if cfg.every_epochs < 1:
      raise JaxpruneError(f'reprune.every_epochs={cfg.every_epochs}; '
                          'allowed: an int >= 1.')
    self.cfg, self.graph, self.log = cfg, graph, log
    self.lays = layers(graph, params, residual=cfg.residual,
                       input_layer=cfg.input_layer, exclude=cfg.exclude)
    if not self.lays:
      raise JaxpruneError(
          'REPrune found no channel group to prune (policy: residual='
          f'{cfg.residual}, input_layer={cfg.input_layer}, exclude='
          f'{cfg.exclude!r}); prunable groups: '
          f'{", ".join(g.name for g in graph.prunable) or "none"}.')
    if cfg.allocation == 'bn_gamma':
      missing = [l.group for l in self.lays if not l.gammas]
      if missing:
        raise JaxpruneError(
            f'Groups {missing} have no normalisation scale for the BN-gamma '
            "allocation; use reprune.allocation='uniform' or exclude them.")
    self.dense_macs = graph.macs(graph.full_masks())
    if cfg.target_macs and cfg.target_reduction:
      raise JaxpruneError('Set one of reprune.target_macs and '
                          'reprune.target_reduction, not both.')
    self.target = (float(cfg.target_macs) if cfg.target_macs else
                   self.dense_macs * (1 - cfg.target_reduction)
                   if cfg.target_reduction else None)
    floor = macs_of_counts(graph, self.lays,
                           {l.group: l.size - 1 for l in self.lays})
    if self.target is not None and not floor <= self.target < self.dense_macs:
      raise JaxpruneError(
          f'MACs target {self.target:,.0f} is out of reach; allowed: between '
          f'{floor:,} (one channel per pruned group) and {self.dense_macs:,} '
          '(dense).')
    self.until = max(int(cfg.until_epoch), 0)
    self.final_epoch = min(self.until, num_epochs - 1)
    self._apply = jax.jit(self._apply_masks)

  # -- optimizer ----------------------------------------------------------------
  def wrap(self, inner):
    """`inner` wrapped in soft masks with a weight stash (all kept at first)."""
    full = {l.group: jnp.ones((l.size,), bool) for l in self.lays}
    pm = self.graph.param_masks(full)['params']
    return optax_lib.masked(
        inner, masks=pm, mode='soft', reapply='step',
        aux=lambda p: {'stash': p, 'channels': full})

  def channel_masks(self, opt_state) -> dict[str, np.ndarray]:
    aux = optax_lib.find_state(opt_state).aux
    return {k: np.asarray(jax.device_get(v)) for k, v in
            aux['channels'].items()}

  def _apply_masks(self, params, opt_state, channels):
    """New masks: stash live weights, restore regrown ones, swap the state."""
    st = optax_lib.find_state(opt_state)
    old = st.masks
    stash = _tree_where(old, params, st.aux['stash'])
    new = self.graph.param_masks(channels)['params']
    regrown = jax.tree.map(lambda n, o: jnp.asarray(n) & ~jnp.asarray(o),
                           new, old)
    params = _tree_where(regrown, stash, params)
    opt_state = optax_lib.set_masks(opt_state, new,
                                    {'stash': stash, 'channels': channels})
    return params, opt_state

  # -- schedule -----------------------------------------------------------------
  def is_event(self, epoch: int) -> bool:
    return epoch == 0 or epoch == self.final_epoch or (
        epoch < self.final_epoch and epoch % self.cfg.every_epochs == 0)

  def delta(self, epoch: int) -> float:
    if epoch >= self.final_epoch or not self.until:
      return 0.0
    return self.cfg.delta0 * (1 + math.cos(math.pi * epoch / self.until)) / 2

  def _counts_fn(self, params, allocation):
    if allocation == 'bn_gamma':
      return lambda s: bn_gamma_counts(params, self.lays, s)
    return lambda s: uniform_counts(self.lays, s)

  def _tied(self, params) -> bool:
    mags = np.concatenate([np.asarray(gamma_magnitudes(params, l))
                           for l in self.lays])
    return bool(mags.max() == mags.min())

  def _sparsity(self, params, allocation):
    """(global sparsity, counts at it, counts function, allocation used)."""
    if allocation == 'bn_gamma' and self._tied(params):
      allocation = 'uniform'  # Tied |gamma| (all 1 at init) rank nothing.
    fn = self._counts_fn(params, allocation)
    if self.target is None:
      return self.cfg.sparsity, fn(self.cfg.sparsity), fn, allocation
    s, counts, macs = search(self.graph, self.lays, fn, self.target,
                             refine=False)
    if allocation != 'uniform' and abs(macs / self.target - 1) > 0.05:
      # Mostly tied |gamma| cannot reach the target.
      return self._sparsity(params, 'uniform')
    if macs < 0.995 * self.target:
      counts, macs = _refine(self.graph, self.lays, counts, self.target)
    return s, counts, fn, allocation

  def event(self, params, opt_state, epoch: int, key: jax.Array):
    """Recomputes the masks at the start of `epoch`.

    Returns:
      (params, opt_state, info): the updated weights and optimizer state,
      and a dict of host scalars for the log.
    """
    host = jax.device_get(params)
    old = self.channel_masks(opt_state)
    t0 = time.time()
    if epoch == 0 and self.final_epoch > 0:
      s, _, fn, alloc = self._sparsity(host, 'uniform')
      pruned = fn(max(s - self.cfg.delta0, 0.0))
      masks, rates = l1_masks(host, self.lays, pruned), {}
    else:
      s, pruned, fn, alloc = self._sparsity(host, self.cfg.allocation)
      masks, rates = select(host, self.lays, pruned, key,
                            method=self.cfg.linkage,
                            tie_break=self.cfg.tie_break)
      delta = self.delta(epoch)
      if delta > 0:
        wider = fn(max(s - delta, 0.0))
        extra = {g: max(pruned[g] - wider[g], 0) for g in pruned}
        masks = regrow(host, self.lays, masks, extra,
                       jax.random.fold_in(key, 1 << 20))
    masks = {g: np.asarray(m) for g, m in masks.items()}
    for l in self.lays:  # A layer that would lose everything is left alone.
      if pruned[l.group] >= l.size:
        masks[l.group] = old[l.group]
    params, opt_state = self._apply(params, opt_state, masks)
    macs = self.graph.macs(masks)
    initial = epoch == 0 and self.final_epoch > 0
    info = {'sparsity': float(s), 'delta': float(self.cfg.delta0) if initial
            else self.delta(epoch), 'macs': int(macs),
            'flops_reduction': 1 - macs / self.dense_macs,
            'changed': int(sum(np.sum(masks[g] != old[g]) for g in masks)),
            'seconds': time.time() - t0}
    if rates:
      info['coverage_rate'] = float(np.mean([float(r) for r in
                                             rates.values()]))
    self.log('REPrune event at epoch %d (%s allocation): s=%.4f, %s MACs '
             '(%.2f%% removed), %d channels changed, %.1fs.', epoch, alloc,
             s, f'{macs:,}', 100 * info['flops_reduction'], info['changed'],
             info['seconds'])
    return params, opt_state, info

  def coverage(self, params, opt_state, key=None) -> float:
    """Mean cluster coverage rate of the current masks (paper's Fig. 3)."""
    host = jax.device_get(params)
    _, rates = select(host, self.lays, None, key, method=self.cfg.linkage,
                      tie_break='lowest_index',
                      given=self.channel_masks(opt_state))
    return float(np.mean([float(r) for r in rates.values()]))

  def epoch_end(self, params, opt_state, epoch: int) -> dict[str, float]:
    """The coverage-rate log line after `epoch` (empty when not due)."""
    every = self.cfg.coverage_every_epochs
    if not every or (epoch + 1) % every:
      return {}
    return {'coverage_rate': self.coverage(params, opt_state)}
