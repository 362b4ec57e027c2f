"""The prune-and-regrow loop of CHEX, shared by REPrune and CHEX.

Hou et al., "CHEX: CHannel EXploration for CNN Model Compression", CVPR
2022; Park et al., "REPrune", AAAI 2024 (which adopts the loop). Training
runs from scratch under soft masks. Events run at the start of an epoch:

* epoch 0: L1-norm masks at sparsity s - delta0 (the initial mask; BN
  scales are all equal at initialisation, so the allocation is uniform);
* every `every_epochs` epochs before `until_epoch`: the method's selection
  (`ExploreLoop.choose`: REPrune's Alg. 1, CHEX's leverage-score column
  subset selection) at s, then `(n - p(s - delta_t)) - (n - p(s))`
  channels regrown by importance sampling, delta_t = delta0 (1 +
  cos(pi t / T)) / 2;
* at min(until_epoch, last epoch): the selection at s with no regrowth;
  the masks are then frozen. (A one-epoch run has only this event, at 0.)

Regrowth scores the pruned filters on their most recently used weights
(the stash), as CHEX's code does: the live weights of a long-pruned filter
are zeros. Regrown channels get those weights back, and their BN running
statistics too (`event_stats`).

A unit prunes p = ceil(s n) channels and keeps n - p. The per-layer
sparsity comes from the BN-gamma global quantile (REPrune Eqs. 8-9), is
uniform, or is searched (bisection on the global sparsity) so that the
masked network's MACs hit a target (`jaxprune.methods.allocation`).
"""
import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxprune import structure
from jaxprune import optax as optax_lib
from jaxprune.errors import JaxpruneError, check_choice
from jaxprune.methods import allocation, base, criteria
from jaxprune.methods import units as units_lib
from jaxprune.methods.units import Unit


def layers(graph: structure.ChannelGraph, params: Any, residual: bool = False,
           input_layer: bool = False, exclude: str = '') -> list[Unit]:
  """The units the loop prunes (`jaxprune.methods.units`).

  A unit qualifies when it is prunable, has a `kernel` (a producer with the
  channels on its last axis, plain indexing; with several, the one with the
  most input channels is scored) and passes the policy:

  Args:
    graph: the model's channel graph (`jaxprune.structure.trace`).
    params: the 'params' collection (arrays or shape structs).
    residual: also prune groups coupled to a residual add (the papers prune
      only the others, so the residual stream keeps its width).
    input_layer: also prune groups produced directly from the model input
      (the stem), which the papers never prune.
    exclude: a regular expression; groups whose name it matches (re.search)
      are left alone.

  Returns:
    The qualifying units in graph order.
  """
  return units_lib.units(graph, params, kinds=None, residual=residual,
                         input_layer=input_layer, exclude=exclude,
                         kernel=True)


def l1_masks(params: Any, lays: list[Unit],
             pruned: dict[str, int]) -> dict[str, jax.Array]:
  """Keeps the n - p filters of largest L1 norm per layer."""
  return {l.group: criteria.top_k(criteria.filter_norm(params, l, 'l1'),
                                  l.size - min(pruned[l.group], l.size - 1))
          for l in lays}


def regrowth_scores(w, keep) -> jax.Array:
  """CHEX's regrowth score of every filter: the norm of its residual after
  orthogonal projection onto the span of the kept filters (0 for kept)."""
  f = w.reshape(-1, w.shape[-1]).astype(jnp.float32)  # [D, n]
  k = f * keep[None, :]
  q = jnp.linalg.pinv(k)  # [n, D]; pruned columns of k are zero.
  resid = f - k @ (q @ f)
  return jnp.linalg.norm(resid, axis=0)


@jax.jit
def _regrow_one(w, keep, extra, key):
  """Importance sampling of `extra` pruned filters (CHEX regrowth).

  Probabilities are a softmax over `regrowth_scores`; sampling without
  replacement by Gumbel top-k.
  """
  norms = regrowth_scores(w, keep)
  score = norms + jax.random.gumbel(key, norms.shape)
  score = jnp.where(keep, -jnp.inf, score)
  rank = jnp.argsort(jnp.argsort(-score, stable=True), stable=True)
  return keep | (rank < extra)


def regrow(params: Any, lays: list[Unit], keep: dict[str, jax.Array],
           extra: dict[str, int], key: jax.Array) -> dict[str, jax.Array]:
  """Adds `extra[g]` sampled pruned channels to each layer's keep mask.

  `params` should hold the pruned filters' most recently used weights (the
  loop passes the stash-restored weights), not the zeros soft masks leave.
  """
  out = dict(keep)
  for i, l in enumerate(lays):
    if extra.get(l.group, 0) > 0:
      out[l.group] = _regrow_one(structure.lookup(params, l.kernel),
                                 keep[l.group], extra[l.group],
                                 jax.random.fold_in(key, i))
  return out


def _tree_where(mask_tree, a, b):
  return jax.tree.map(lambda m, x, y: jnp.where(jnp.asarray(m), x, y),
                      mask_tree, a, b)


def loop_defaults(delta0: float) -> ml_collections.ConfigDict:
  """The loop's config fields (a method adds its selection's own)."""
  r = ml_collections.ConfigDict()
  r.sparsity = 0.5  # Global channel sparsity s (ignored with a MACs target).
  r.allocation = 'bn_gamma'  # Per-layer sparsity: bn_gamma (Eqs. 8-9) | uniform.
  r.target_macs = 0.0  # MACs per example to reach by bisection on s; 0: off.
  r.target_reduction = 0.0  # Or: fraction of MACs to remove; 0: off.
  r.delta0 = delta0  # CHEX regrowth: initial extra density; 0 disables it.
  r.every_epochs = 2  # Delta T: epochs between mask events.
  r.until_epoch = 96  # T_prune: masks are frozen from this epoch on.
  r.residual = False  # Also prune groups coupled to a residual add.
  r.input_layer = False  # Also prune groups produced from the model input.
  r.exclude = ''  # Regex of group names never pruned.
  return r


class ExploreLoop(base.MasksInOptState, base.Method):
  """Soft masks while training from scratch, with CHEX regrowth.

  One phase. Soft masks live in a `jaxprune.optax.masked(mode='soft',
  reapply='step')` state; its aux holds the current channel masks, the
  masks before the last event, and a stash of every weight's (and running
  statistic's) most recently used value. Subclasses implement `choose`.
  """

  def __init__(self, config, ctx: base.Context):
    super().__init__(config, ctx)
    cfg, graph, name = self.cfg, ctx.graph, self.config_name
    check_choice(f'{name}.allocation', cfg.allocation,
                 allocation.ALLOCATIONS)
    if not 0 <= cfg.sparsity < 1 or not 0 <= cfg.delta0 <= cfg.sparsity:
      raise JaxpruneError(
          f'{name}.sparsity={cfg.sparsity}, {name}.delta0={cfg.delta0}; '
          'allowed: 0 <= sparsity < 1 and 0 <= delta0 <= sparsity.')
    if cfg.every_epochs < 1:
      raise JaxpruneError(f'{name}.every_epochs={cfg.every_epochs}; '
                          'allowed: an int >= 1.')
    if cfg.target_macs and cfg.target_reduction:
      raise JaxpruneError(
          f'{name}.target_macs={cfg.target_macs} and '
          f'{name}.target_reduction={cfg.target_reduction}; allowed: one '
          'of them (the other 0), not both.')
    self.log = ctx.log
    self.graph = graph
    self.lays = layers(graph, ctx.params, residual=cfg.residual,
                       input_layer=cfg.input_layer, exclude=cfg.exclude)
    if not self.lays:
      raise JaxpruneError(
          f'{self.name} found no channel group to prune (policy: residual='
          f'{cfg.residual}, input_layer={cfg.input_layer}, exclude='
          f'{cfg.exclude!r}); prunable groups: '
          f'{", ".join(g.name for g in graph.prunable) or "none"}.')
    if cfg.allocation == 'bn_gamma':
      missing = [l.group for l in self.lays if not l.gammas]
      if missing:
        raise JaxpruneError(
            f'Groups {missing} have no normalisation scale for the BN-gamma '
            f"allocation; use {name}.allocation='uniform' or exclude them.")
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
    self.stats = ctx.batch_stats or {}
    self._apply = jax.jit(self._apply_masks)
    self._restored = jax.jit(self._restore)
    self._stats = jax.jit(self._apply_stats)

  # -- what a method chooses ----------------------------------------------------
  def choose(self, params, pruned: dict[str, int], key
             ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keeps n - pruned[g] channels of every layer, from the live weights.

    Returns:
      (keep masks {group: bool [n]}, host scalars for the event's log).
    """
    raise NotImplementedError

  # -- the phase ----------------------------------------------------------------
  def phase(self, k, plan):
    return base.Phase(plan=plan, wrap=lambda tx, masks: self.wrap(tx),
                      events=self.is_event)

  def wrap(self, inner):
    """`inner` wrapped in soft masks with a weight stash (all kept at first)."""
    full = {l.group: jnp.ones((l.size,), bool) for l in self.lays}
    pm = self.graph.param_masks(full)['params']
    stats = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), self.stats)
    return optax_lib.masked(
        inner, masks=pm, mode='soft', reapply='step',
        aux=lambda p: {'stash': p, 'channels': full, 'before': full,
                       'stats': stats})

  def _restore(self, params, opt_state):
    """Live weights where kept, the stash (most recently used) elsewhere."""
    st = optax_lib.find_state(opt_state)
    return _tree_where(st.masks, params, st.aux['stash'])

  def _apply_masks(self, params, opt_state, channels):
    """New masks: stash live weights, restore regrown ones, swap the state."""
    st = optax_lib.find_state(opt_state)
    old = st.masks
    stash = _tree_where(old, params, st.aux['stash'])
    new = self.graph.param_masks(channels)['params']
    regrown = jax.tree.map(lambda n, o: jnp.asarray(n) & ~jnp.asarray(o),
                           new, old)
    params = _tree_where(regrown, stash, params)
    aux = dict(st.aux, stash=stash, channels=channels,
               before=st.aux['channels'])
    opt_state = optax_lib.set_masks(opt_state, new, aux)
    return params, opt_state

  def _apply_stats(self, batch_stats, opt_state):
    """Stashes the running statistics of channels kept until this event and
    gives regrown channels theirs back."""
    aux = optax_lib.find_state(opt_state).aux
    old = self.graph.param_masks(aux['before']).get('batch_stats', {})
    new = self.graph.param_masks(aux['channels']).get('batch_stats', {})
    stash = _tree_where(old, batch_stats, aux['stats'])
    regrown = jax.tree.map(lambda n, o: jnp.asarray(n) & ~jnp.asarray(o),
                           new, old)
    batch_stats = _tree_where(regrown, stash, batch_stats)
    return batch_stats, optax_lib.set_masks(opt_state, optax_lib.masks_of(
        opt_state), dict(aux, stats=stash))

  def event_stats(self, k, epoch, batch_stats, opt_state):
    if not jax.tree.leaves(self.stats):
      return batch_stats, opt_state
    return self._stats(batch_stats, opt_state)

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
      masks, rates = self.choose(host, pruned, key)
      delta = self.delta(epoch)
      if delta > 0:
        wider = fn(max(s - delta, 0.0))
        extra = {g: max(pruned[g] - wider[g], 0) for g in pruned}
        restored = jax.device_get(self._restored(params, opt_state))
        masks = regrow(restored, self.lays, masks, extra,
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
    info.update(rates)
    self.log('%s event at epoch %d (%s allocation): s=%.4f, %s MACs '
             '(%.2f%% removed), %d channels changed, %.1fs.',
             type(self).__name__, epoch, alloc, s, f'{macs:,}', 100 * info['flops_reduction'],
             info['changed'], info['seconds'])
    return params, opt_state, info
