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
4. keep ceil((1 - s) n) filters chosen by greedy maximum cluster coverage
   (`jaxprune.coverage.greedy_batch`).

The per-layer sparsity s comes from the BN-gamma global quantile (Eqs. 8-9),
is uniform, or is searched (bisection on the global sparsity) so that the
masked network's MACs hit a target (`jaxprune.methods.allocation`). The
method `REPrune` (`--config.method=reprune`) runs the paper's schedule:
soft masks while training from scratch, a mask event every few epochs with
CHEX regrowth (Chen et al., "CHEX: CHannel EXploration for CNN Model
Compression", CVPR 2022), frozen masks afterwards.

Everything here sees channel groups of a `ChannelGraph`, never model names.
"""
import functools
import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxprune import cluster, coverage, structure
from jaxprune import optax as optax_lib
from jaxprune.errors import JaxpruneError, check_choice
from jaxprune.methods import allocation, base, criteria
from jaxprune.methods import units as units_lib
from jaxprune.methods.units import Unit



def layers(graph: structure.ChannelGraph, params: Any, residual: bool = False,
           input_layer: bool = False, exclude: str = '') -> list[Unit]:
  """The units that REPrune prunes (`jaxprune.methods.units`).

  A unit qualifies when it is prunable, has a `kernel` (a producer with the
  channels on its last axis, plain indexing; with several, the one with the
  most input channels is clustered) and passes the policy:

  Args:
    graph: the model's channel graph (`jaxprune.structure.trace`).
    params: the 'params' collection (arrays or shape structs).
    residual: also prune groups coupled to a residual add (the paper prunes
      only the others, so the residual stream keeps its width).
    input_layer: also prune groups produced directly from the model input
      (the stem), which the paper never prunes.
    exclude: a regular expression; groups whose name it matches (re.search)
      are left alone.

  Returns:
    The qualifying units in graph order.
  """
  return units_lib.units(graph, params, kinds=None, residual=residual,
                         input_layer=input_layer, exclude=exclude,
                         kernel=True)


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
# The initial mask and CHEX regrowth.
# ---------------------------------------------------------------------------


def l1_masks(params: Any, lays: list[Unit],
             pruned: dict[str, int]) -> dict[str, jax.Array]:
  """Keeps the n - p filters of largest L1 norm per layer."""
  return {l.group: criteria.top_k(criteria.filter_norm(params, l, 'l1'),
                                  l.size - min(pruned[l.group], l.size - 1))
          for l in lays}


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


def regrow(params: Any, lays: list[Unit], keep: dict[str, jax.Array],
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
# The training schedule (paper section 4 and CHEX's soft phase).
# ---------------------------------------------------------------------------


def _tree_where(mask_tree, a, b):
  return jax.tree.map(lambda m, x, y: jnp.where(jnp.asarray(m), x, y),
                      mask_tree, a, b)


@base.register
class REPrune(base.Method):
  """REPrune while training from scratch, with CHEX regrowth.

  One phase. Soft masks live in a `jaxprune.optax.masked(mode='soft',
  reapply='step')` state, with the current channel masks and a stash of
  every weight's most recently used value as its aux. Events run at the
  start of an epoch:

  * epoch 0: L1-norm masks at sparsity s - delta0 (the initial mask; BN
    scales are all equal at initialisation, so the allocation is uniform);
  * every `every_epochs` epochs before `until_epoch`: Alg. 1 at s, then
    `(n - p(s - delta_t)) - (n - p(s))` channels regrown by importance
    sampling, delta_t = delta0 (1 + cos(pi t / T)) / 2;
  * at min(until_epoch, last epoch): Alg. 1 at s with no regrowth; the
    masks are then frozen. (A one-epoch run has only this event, at 0.)

  The BN-gamma allocation falls back to uniform while all |gamma| are equal
  (they rank nothing, e.g. at initialisation). With a MACs target, s is
  found by bisection at every event (`allocation.search`).
  """

  name = 'reprune'
  config_name = 'reprune'

  @classmethod
  def defaults(cls) -> ml_collections.ConfigDict:
    r = ml_collections.ConfigDict()
    r.sparsity = 0.5  # Global channel sparsity s (ignored with a MACs target).
    r.allocation = 'bn_gamma'  # Per-layer sparsity: bn_gamma (Eqs. 8-9) | uniform.
    r.target_macs = 0.0  # MACs per example to reach by bisection on s; 0: off.
    r.target_reduction = 0.0  # Or: fraction of MACs to remove; 0: off.
    r.linkage = 'ward'  # Clustering: ward | single | complete | average.
    r.tie_break = 'random'  # Greedy coverage ties: random | lowest_index.
    r.delta0 = 0.25  # CHEX regrowth: initial extra density; 0 disables it.
    r.every_epochs = 2  # Delta T: epochs between mask events.
    r.until_epoch = 96  # T_prune: masks are frozen from this epoch on.
    r.residual = False  # Also prune groups coupled to a residual add.
    r.input_layer = False  # Also prune groups produced from the model input.
    r.exclude = ''  # Regex of group names never pruned.
    r.coverage_every_epochs = 1  # Log the cluster coverage rate; 0: off.
    return r

  def __init__(self, config, ctx: base.Context):
    super().__init__(config, ctx)
    cfg, graph = self.cfg, ctx.graph
    check_choice('reprune.allocation', cfg.allocation,
                 allocation.ALLOCATIONS)
    check_choice('reprune.linkage', cfg.linkage, cluster.METHODS)
    check_choice('reprune.tie_break', cfg.tie_break, coverage.TIE_BREAKS)
    if not 0 <= cfg.sparsity < 1 or not 0 <= cfg.delta0 <= cfg.sparsity:
      raise JaxpruneError(
          f'reprune.sparsity={cfg.sparsity}, reprune.delta0={cfg.delta0}; '
          'allowed: 0 <= sparsity < 1 and 0 <= delta0 <= sparsity.')
    if cfg.every_epochs < 1:
      raise JaxpruneError(f'reprune.every_epochs={cfg.every_epochs}; '
                          'allowed: an int >= 1.')
    if cfg.target_macs and cfg.target_reduction:
      raise JaxpruneError(
          f'reprune.target_macs={cfg.target_macs} and '
          f'reprune.target_reduction={cfg.target_reduction}; allowed: one '
          'of them (the other 0), not both.')
    self.log = ctx.log
    self.graph = graph
    self.lays = layers(graph, ctx.params, residual=cfg.residual,
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
    self.target = (float(cfg.target_macs) if cfg.target_macs else
                   self.dense_macs * (1 - cfg.target_reduction)
                   if cfg.target_reduction else None)
    floor = allocation.macs_of_counts(
        graph, self.lays, {l.group: l.size - 1 for l in self.lays})
    if self.target is not None and not floor <= self.target < self.dense_macs:
      raise JaxpruneError(
          f'MACs target {self.target:,.0f} is out of reach; allowed: between '
          f'{floor:,} (one channel per pruned group) and {self.dense_macs:,} '
          '(dense).')
    self.until = max(int(cfg.until_epoch), 0)
    self.final_epoch = min(self.until, ctx.num_epochs - 1)
    self._apply = jax.jit(self._apply_masks)

  # -- the phase ----------------------------------------------------------------
  def phase(self, k, plan):
    return base.Phase(plan=plan, wrap=lambda tx, masks: self.wrap(tx),
                      events=self.is_event)

  def wrap(self, inner):
    """`inner` wrapped in soft masks with a weight stash (all kept at first)."""
    full = {l.group: jnp.ones((l.size,), bool) for l in self.lays}
    pm = self.graph.param_masks(full)['params']
    return optax_lib.masked(
        inner, masks=pm, mode='soft', reapply='step',
        aux=lambda p: {'stash': p, 'channels': full})

  def current_masks(self, opt_state) -> dict[str, np.ndarray]:
    """The channel masks in the optimizer state."""
    aux = optax_lib.find_state(opt_state).aux
    return {k: np.asarray(jax.device_get(v)) for k, v in
            aux['channels'].items()}

  def channel_masks(self, k, plan, opt_state):
    return self.current_masks(opt_state)

  def describe(self, plan):
    return {}

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

  def _sparsity(self, params, alloc):
    """(global sparsity, counts at it, counts function, allocation used)."""
    if alloc == 'bn_gamma' and allocation.gammas_tied(params, self.lays):
      alloc = 'uniform'  # Tied |gamma| (all 1 at init) rank nothing.
    fn = allocation.counts_fn(params, self.lays, alloc)
    if self.target is None:
      return self.cfg.sparsity, fn(self.cfg.sparsity), fn, alloc
    s, counts, macs = allocation.search(self.graph, self.lays, fn,
                                        self.target, refine=False)
    if alloc != 'uniform' and abs(macs / self.target - 1) > 0.05:
      # Mostly tied |gamma| cannot reach the target.
      return self._sparsity(params, 'uniform')
    if macs < 0.995 * self.target:
      counts, macs = allocation.give_back(self.graph, self.lays, counts,
                                          self.target)
    return s, counts, fn, alloc

  def event(self, k, epoch, params, opt_state, key):
    """Recomputes the masks at the start of `epoch`.

    Returns:
      (params, opt_state, info): the updated weights and optimizer state,
      and a dict of host scalars for the log.
    """
    host = jax.device_get(params)
    old = self.current_masks(opt_state)
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
                      given=self.current_masks(opt_state))
    return float(np.mean([float(r) for r in rates.values()]))

  def epoch_end(self, k, epoch, params, opt_state) -> dict[str, float]:
    """The coverage-rate log line after `epoch` (empty when not due)."""
    every = self.cfg.coverage_every_epochs
    if not every or (epoch + 1) % every:
      return {}
    return {'coverage_rate': self.coverage(params, opt_state)}
