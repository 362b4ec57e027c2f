"""Training on the kept channels only (`config.shrink`).

Between two mask events the train step runs on the physically slimmed
network (`jaxprune.slim`'s re-specialised train-mode forward pass); the
full-width train state stays the run's record: events, the end-of-epoch
hooks, evaluation and checkpoints see it, and it is rebuilt after every
epoch by writing the trained slim values back in place (`Shrinker.expand`).
Around each epoch:

* `shrink`: the pruned weights are zeroed (as the masked step would, unless
  the phase runs a masked forward pass), then the parameters, batch
  statistics and every parameter-shaped optimizer-state leaf (momenta,
  Adam moments, the mask state's masks) are sliced to the kept channels.
  The mask state's aux (channel masks, the weight stash) stays out of the
  slim state: it is full width by nature.
* `expand`: kept entries come back from the slim state; pruned entries
  keep what they held when they were pruned.

How this differs from the masked full-width network (`shrink=False`):
the kept channels see the same forward pass and gradients (to float
rounding: convolutions of another width add in another order; and the
masked step runs the newly pruned channels once more, in the first step
after an event, before it zeroes them), but the pruned channels are
frozen. Their weights stay zero (a masked step keeps
them zero too), while their optimizer moments and running statistics are
those they had when pruned: a regrown channel gets its optimizer state
back from then, where the masked network would have kept updating its
moments from the gradients that reach pruned norm scales and biases. Under
a masked forward pass (Refill) the pruned weights are frozen instead of
decaying.

A slim train step is compiled once per distinct channel masking of a
phase and cached (`Shrinker.step`): the slim forward pass reads the kept
indices of constants and random bits, so the masks themselves, not only
the widths, key the cache.
"""
import hashlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune import optax as optax_lib
from jaxprune import slim as slim_lib
from jaxprune import structure
from jaxprune.engine import steps
from jaxprune.structure import jaxpr as jx


class _Index:
  """Kept indices of one variable, per axis (None: the axis keeps all)."""

  def __init__(self, kept):
    self.kept = kept

  def take(self, x):
    for a, k in enumerate(self.kept):
      if k is not None and a < np.ndim(x) and np.shape(x)[a] == k[1]:
        x = jnp.take(x, k[0], axis=a)
    return x

  def put(self, full, x):
    if np.shape(full) == np.shape(x):
      return x
    idx = tuple(k[0] if k is not None and np.shape(full)[a] == k[1] else
                np.arange(np.shape(full)[a])
                for a, k in enumerate(self.kept[:np.ndim(full)]))
    return full.at[np.ix_(*idx)].set(x)


def _is_masked(x) -> bool:
  return isinstance(x, optax_lib.MaskedState)


def _strip_aux(opt_state):
  return jax.tree.map(lambda s: s._replace(aux=None) if _is_masked(s) else s,
                      opt_state, is_leaf=_is_masked)


def masks_key(channel_masks: dict[str, Any]) -> str:
  """A digest of a channel masking (the compile cache's key)."""
  h = hashlib.sha1()
  for g in sorted(channel_masks):
    h.update(g.encode())
    h.update(np.packbits(np.asarray(channel_masks[g], bool)).tobytes())
  return h.hexdigest()


class Shrinker:
  """Slices train states to kept channels and compiles their steps.

  Args:
    su: the run's `Setup`.
    abstract: the model's variables as shape structs.
  """

  def __init__(self, su, abstract):
    self.su = su
    self.apply = steps.train_apply(su.model)
    dtype = steps.compute_dtype(su.config)
    self.x = jax.ShapeDtypeStruct((su.config.batch_size, *su.shape[1:]),
                                  dtype)
    self.key = jax.ShapeDtypeStruct(
        jax.random.key_data(jax.random.key(0)).shape, jnp.uint32)
    self.fn = lambda v, x, key_data: self.apply(
        v, x, jax.random.wrap_key_data(key_data))
    self.variables = {'params': abstract['params'],
                      'batch_stats': abstract.get('batch_stats', {})}
    t0 = time.time()
    self.graph = structure.trace(self.fn, self.variables, self.x, self.key)
    self.trace_seconds = time.time() - t0
    self._params_def = jax.tree.structure(self.variables['params'])
    self._cache: dict[Any, Any] = {}
    self._batch = None

  # -- slicing ------------------------------------------------------------------
  def _index(self, channel_masks):
    masks = self.graph.check_masks(channel_masks)
    g = self.graph
    out = []
    for v in g.variable_vars:
      kept = []
      for a in range(len(jx.shape(v))):
        node = g.node(0, v, a)
        k = None if node is None else g.kept_indices(g.root(node), masks)
        size = None if node is None else g.size_of(node)
        kept.append(None if k is None or len(k) == size else
                    (jnp.asarray(k), size))
      out.append(_Index(kept))
    return jax.tree.unflatten(g.variables_treedef, out)

  def _params_like(self, x) -> bool:
    try:
      return (not isinstance(x, (jax.Array, np.ndarray)) and
              jax.tree.structure(x) == self._params_def)
    except Exception:  # pylint: disable=broad-except
      return False

  def _map_opt(self, fn, idx, *trees):
    """fn(index, leaf, ...) on every parameter-shaped subtree of trees[0]."""
    def one(sub, *others):
      if self._params_like(sub):
        return jax.tree.map(fn, idx['params'], sub, *others)
      return others[-1] if others else sub
    return jax.tree.map(one, *trees, is_leaf=self._params_like)

  def _slice(self, state, idx):
    take = lambda i, x: i.take(x)
    return state.replace(
        params=jax.tree.map(take, idx['params'], state.params),
        batch_stats=jax.tree.map(take, idx['batch_stats'],
                                 state.batch_stats),
        opt_state=self._map_opt(take, idx, _strip_aux(state.opt_state)))

  def _expand(self, full, slim, idx):
    put = lambda i, f, x: i.put(f, x)
    stripped = _strip_aux(full.opt_state)
    opt = self._map_opt(put, idx, stripped, slim.opt_state)
    opt = jax.tree.map(lambda f, s: s._replace(aux=f.aux) if _is_masked(f)
                       else s, full.opt_state, opt, is_leaf=_is_masked)
    return slim.replace(
        params=jax.tree.map(put, idx['params'], full.params, slim.params),
        batch_stats=jax.tree.map(put, idx['batch_stats'], full.batch_stats,
                                 slim.batch_stats),
        opt_state=opt)

  # -- the phase's steps ----------------------------------------------------------
  def step(self, tx, forward, channel_masks, state, rng):
    """(jitted slice, expand and compiled slim step of this masking,
    compile seconds; 0 when cached)."""
    key = (id(tx), masks_key(channel_masks))
    if key in self._cache:
      return (*self._cache[key][1:], 0.0)
    idx = self._index(channel_masks)
    masked = forward is None
    zero = jax.jit(lambda s: s.replace(params=_zeroed(s.params, s.opt_state))
                   if masked else s, out_shardings=self.su.replicated)
    slice_fn = jax.jit(lambda s: self._slice(zero(s), idx),
                       out_shardings=self.su.replicated)
    expand_fn = jax.jit(lambda f, s: self._expand(zero(f), s, idx),
                        out_shardings=self.su.replicated)
    slim_vars, slim_fn = slim_lib.slim(self.fn, self.variables_of(state),
                                       self.graph, channel_masks, self.x,
                                       self.key)
    del slim_vars
    apply = lambda v, x, rng: slim_fn(v, x, jax.random.key_data(rng))
    jitted = steps.jit_train_step(self.su, tx, forward, apply)
    t0 = time.time()
    example = jax.eval_shape(slice_fn, state)
    example = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype,
                                       sharding=self.su.replicated), example)
    compiled = jitted.lower(example, self.batch(), rng).compile()
    seconds = time.time() - t0
    self._cache[key] = (tx, slice_fn, expand_fn, compiled)  # tx: its id stays taken.
    return slice_fn, expand_fn, compiled, seconds

  def variables_of(self, state):
    return {'params': state.params, 'batch_stats': state.batch_stats}

  def batch(self):
    """Shape structs of one sharded training batch (read once)."""
    if self._batch is None:
      su = self.su
      b = su.shard(next(iter(su.task.train_batches(
          su.train_ds, su.config.batch_size, su.config.seed, 0))))
      self._batch = jax.tree.map(
          lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype,
                                         sharding=a.sharding), b)
    return self._batch


def _zeroed(params, opt_state):
  """Pruned weights set to 0, as the masked step leaves them."""
  try:
    masks = optax_lib.masks_of(opt_state)
  except ValueError:
    return params
  return jax.tree.map(lambda p, m: jnp.where(jnp.asarray(m), p, 0), params,
                      masks)
