"""Training on the kept channels only (`config.shrink`).

Between two mask events the train step runs on the physically slimmed
network (`jaxprune.slim`'s re-specialised train-mode forward pass); the
full-width train state stays the run's record: events, the end-of-epoch
hooks, evaluation and checkpoints see it, and it is rebuilt after every
epoch by writing the trained slim values back in place (the expand that
`Shrinker.step` returns).
Around each epoch:

* `shrink`: the pruned weights are zeroed (as the masked step would, unless
  the phase runs a masked forward pass), then the parameters, batch
  statistics and every parameter-shaped optimizer-state leaf (momenta,
  Adam moments, the mask state's masks) are sliced to the kept channels.
  The mask state's aux (channel masks, the weight stash) stays out of the
  slim state: it is full width by nature.
* `expand`: kept entries come back from the slim state; pruned entries
  keep what they held when they were pruned (the full-width copy read for
  the slice is reused, so each epoch moves the state to the host and back
  twice).

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
decaying. Pruned channels that `shrink_round_to` carries as padding train
exactly as in the masked network.

Compiled steps are cached by program (`Shrinker.step`): maskings of the
same widths lower to the same program, unless the slim forward pass reads
kept indices of constants or random bits, so the lowered program's text
(not the widths alone, which could be wrong) keys the compiled step.
`config.shrink_round_to` rounds the trained widths up (`slim.round_masks`)
with pruned channels, which the step's masks keep at zero exactly as the
masked step does: maskings then share widths (and compiled steps) far more
often, and the kernels run at friendlier widths. Slicing and expanding run
on the host, in numpy, on this process's replicated copy: they compile
nothing, so a new masking costs one lowering and, for a new program, one
compile.
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
  """Kept indices of one variable, per axis (None: the axis keeps all).

  Slicing runs on the host in numpy, so a new masking compiles nothing
  here: only its train step is compiled (and cached by program).
  """

  def __init__(self, kept, sizes):
    self.kept, self.sizes = list(kept), tuple(sizes)

  def _axes(self, shape):
    """(axis, kept indices) of the axes of `shape` that this index cuts."""
    return [(a, k) for a, (k, n) in enumerate(zip(self.kept, self.sizes))
            if k is not None and a < len(shape) and shape[a] == n]

  def take(self, x):
    if isinstance(x, jax.ShapeDtypeStruct):
      shape = list(x.shape)
      for a, k in self._axes(x.shape):
        shape[a] = len(k)
      return jax.ShapeDtypeStruct(tuple(shape), x.dtype)
    for a, k in self._axes(np.shape(x)):
      x = np.take(x, k, axis=a)
    return x

  def put(self, full, x):
    if np.shape(full) == np.shape(x):
      return x
    idx = [np.arange(n) for n in np.shape(full)]
    for a, k in self._axes(np.shape(full)):
      idx[a] = k
    out = np.array(full, copy=True)
    out[np.ix_(*idx)] = x
    return out


def _map(fn, idx, *trees):
  return jax.tree.map(fn, idx, *trees, is_leaf=lambda x: isinstance(
      x, _Index))


def _is_masked(x) -> bool:
  return isinstance(x, optax_lib.MaskedState)


def _strip_aux(opt_state):
  return jax.tree.map(lambda s: s._replace(aux=None) if _is_masked(s) else s,
                      opt_state, is_leaf=_is_masked)


def _host(tree):
  """This process's copy of a replicated pytree, as numpy arrays."""
  return jax.device_get(jax.tree.map(
      lambda a: a.addressable_data(0) if isinstance(a, jax.Array) else a,
      tree))


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
    self._cache: dict[Any, Any] = {}  # (tx, masking) -> steps.
    self._compiled: dict[Any, Any] = {}  # (tx, program) -> compiled step.
    # (full state, its host copy, masked) between a slice and its expand.
    self._last = None
    self._batch = None

  # -- slicing ------------------------------------------------------------------
  def _index(self, channel_masks):
    masks = self.graph.check_masks(channel_masks)
    g = self.graph
    out = []
    for v in g.variable_vars:
      kept, sizes = [], []
      for a in range(len(jx.shape(v))):
        node = g.node(0, v, a)
        k = None if node is None else g.kept_indices(g.root(node), masks)
        size = None if node is None else g.size_of(node)
        full = k is None or len(k) == size
        kept.append(None if full else np.asarray(k, np.int64))
        sizes.append(None if full else size)
      out.append(_Index(kept, sizes))
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
        return _map(fn, idx['params'], sub, *others)
      return others[-1] if others else sub
    return jax.tree.map(one, *trees, is_leaf=self._params_like)

  def _cut(self, state, idx):
    """`state` (numpy or shape structs, aux stripped) at the kept channels."""
    take = lambda i, x: i.take(x)
    return state.replace(
        params=_map(take, idx['params'], state.params),
        batch_stats=_map(take, idx['batch_stats'], state.batch_stats),
        opt_state=self._map_opt(take, idx, state.opt_state))

  def _put(self, tree):
    """Host arrays back onto the devices, replicated."""
    rep = self.su.replicated
    if jax.process_count() == 1:
      return jax.device_put(tree, rep)
    return jax.tree.map(
        lambda a: jax.make_array_from_process_local_data(rep, np.asarray(a)),
        tree)

  def _full_host(self, state, masked):
    """The full-width state on the host, aux stripped, pruned weights
    zeroed under hard masks (as the masked step leaves them)."""
    if self._last is not None and self._last[0] is state and (
        self._last[2] == masked):
      return self._last[1]
    host = _host(state.replace(opt_state=_strip_aux(state.opt_state)))
    if masked:
      host = host.replace(params=_zeroed(host.params, host.opt_state, np))
    self._last = (state, host, masked)
    return host

  def _moves(self, idx, masked):
    """The (slice, expand) pair of one masking.

    Both run on the host (numpy gathers and scatters of this process's
    replicated copy), so a new width signature compiles nothing here; the
    full-width state read for the slice is reused by the expand.
    """
    def slice_fn(state):
      return self._put(self._cut(self._full_host(state, masked), idx))

    def expand_fn(full, slim):
      f, s = self._full_host(full, masked), _host(slim)
      self._last = None
      put = lambda i, a, b: i.put(a, b)
      out = self._put(s.replace(
          params=_map(put, idx['params'], f.params, s.params),
          batch_stats=_map(put, idx['batch_stats'], f.batch_stats,
                           s.batch_stats),
          opt_state=self._map_opt(put, idx, f.opt_state, s.opt_state)))
      # The aux (channel masks, the stash) never left the devices.
      return out.replace(opt_state=jax.tree.map(
          lambda a, b: b._replace(aux=a.aux) if _is_masked(a) else b,
          full.opt_state, out.opt_state, is_leaf=_is_masked))
    return slice_fn, expand_fn

  def step(self, tx, forward, channel_masks, state, rng):
    """The slice, expand and compiled slim step of one masking.

    Args:
      tx: the phase's optimizer.
      forward: the phase's masked forward pass (None: hard masks).
      channel_masks: {group: bool[size]}.
      state: the full-width train state (shapes and shardings only).
      rng: the step's key.

    Returns:
      (slice_fn, expand_fn, step_fn, info): info is None when this masking
      was seen before, else {'compile_seconds', 'lower_seconds',
      'cached'}; `cached` is True when another masking of the same widths
      lowered to the same program, whose compiled step is reused.
    """
    key = (id(tx), masks_key(channel_masks))
    if key in self._cache:
      return (*self._cache[key][1:], None)
    idx = self._index(channel_masks)
    slice_fn, expand_fn = self._moves(idx, forward is None)
    t0 = time.time()
    # Abstract variables: the slim function needs shapes only, and the
    # caller's state may already be donated to a step.
    _, slim_fn = slim_lib.slim(self.fn, self.variables, self.graph,
                               channel_masks, self.x, self.key)
    apply = lambda v, x, rng: slim_fn(v, x, jax.random.key_data(rng))
    jitted = steps.jit_train_step(self.su, tx, forward, apply)
    example = self._cut(jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype),
        state.replace(opt_state=_strip_aux(state.opt_state))), idx)
    example = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype,
                                       sharding=self.su.replicated), example)
    lowered = jitted.lower(example, self.batch(), rng)
    # Maskings of one width signature give the same program unless the
    # slim pass reads kept indices of constants or random bits: the
    # program's text, not the widths alone, keys the compiled step.
    program = (id(tx), hashlib.sha1(lowered.as_text().encode()).hexdigest())
    lower_seconds = time.time() - t0
    cached = program in self._compiled
    if not cached:
      self._compiled[program] = lowered.compile()
    info = {'lower_seconds': lower_seconds,
            'compile_seconds': time.time() - t0 - lower_seconds,
            'cached': cached}
    # tx is held so that its id stays taken.
    self._cache[key] = (tx, slice_fn, expand_fn, self._compiled[program])
    return slice_fn, expand_fn, self._compiled[program], info

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


def _zeroed(params, opt_state, xp=jnp):
  """Pruned weights set to 0, as the masked step leaves them (`xp`: jnp
  on devices, np on the host)."""
  try:
    masks = optax_lib.masks_of(opt_state)
  except ValueError:
    return params
  return jax.tree.map(
      lambda p, m: xp.where(xp.asarray(m), p, xp.zeros((), p.dtype)), params,
      masks)
