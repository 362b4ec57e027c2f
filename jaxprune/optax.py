"""Masks in optimizer state: an optax wrapper for pruning during training.

`masked(inner, masks, mode=...)` wraps any `optax.GradientTransformation`.
Its state carries the parameter masks (broadcastable bool pytrees, as
`ChannelGraph.param_masks(...)['params']` returns), so they are checkpointed
and sharded with the rest of the optimizer state.

Modes:

* `'hard'`: masked gradients, masked optimizer moments (momentum, Adam's mu
  and nu are zeroed on pruned entries), and every update sets pruned entries
  to exactly 0, so they stay 0 under momentum, Nesterov, Adam and coupled or
  decoupled weight decay.
* `'soft'` (SFP): pruned weights are zeroed at mask events, but keep their
  gradients and optimizer moments and can regrow. With `reapply='step'` the
  weights are re-zeroed after every step (the CHEX/REPrune soft phase) while
  the moments still see the full gradient.
* `'masked_forward'` (Refill): the optimizer leaves the weights alone; the
  model is run on `forward_params(params, state)` = W * M, so gradients of
  pruned entries are zero and the underlying W still decays and can return.

Mask updates happen inside `jit`: pass `prune_fn(params, masks, aux, count)
-> (masks, aux)` and an event schedule (`every`, `start`, `until`), or set
masks from outside with `set_masks` (e.g. a jitted per-epoch pruner).
"""
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

MODES = ('hard', 'soft', 'masked_forward')
PruneFn = Callable[[Any, Any, Any, jax.Array], tuple[Any, Any]]


class MaskedState(NamedTuple):
  """State of `masked`: the inner state plus the masks."""
  inner: optax.OptState
  masks: Any  # Parameter-shaped, broadcastable bool masks.
  aux: Any  # The pruning function's own state (e.g. channel masks).
  count: jax.Array  # Optimizer steps taken.
  fresh: jax.Array  # Masks were set since the last step (zero pruned weights).


def _where(m, a, b):
  return jnp.where(jnp.asarray(m), a, b)


def _keys(tree) -> list[str]:
  return sorted(map(str, tree.keys())) if hasattr(tree, 'keys') else []


def _check_structure(masks: Any, params: Any) -> None:
  """Masks must have the params' tree structure; says what differs."""
  if jax.tree.structure(masks) == jax.tree.structure(params):
    return
  mk, pk = _keys(masks), _keys(params)
  if 'params' in mk and 'params' not in pk:
    raise ValueError(
        'jaxprune.optax.masked: the masks hold a whole variables tree '
        f'(collections {mk}) but the optimizer sees only the params; pass '
        "masks['params'] (e.g. graph.param_masks(cm)['params']).")
  raise ValueError(
      'jaxprune.optax.masked: the masks do not have the params\' tree '
      f'structure ({jax.tree.structure(masks).num_leaves} mask leaves with '
      f'top keys {mk[:6]}, {jax.tree.structure(params).num_leaves} params '
      f'with top keys {pk[:6]}); pass masks shaped like the params.')


def masked(inner: optax.GradientTransformation, masks: Any, mode: str = 'hard',
           prune_fn: PruneFn | None = None, every: int | None = None,
           start: int = 0, until: int | None = None, aux: Any = None,
           reapply: str = 'event') -> optax.GradientTransformation:
  """Wraps `inner` so that it respects (and can update) pruning masks.

  Args:
    inner: the optimizer, e.g. `optax.sgd(0.1, momentum=0.9)`.
    masks: bool masks broadcastable to the params (a pytree with the params'
      structure), or a function `params -> masks`.
    mode: 'hard', 'soft' or 'masked_forward' (module docstring).
    prune_fn: optional `(params, masks, aux, count) -> (masks, aux)`, called
      inside the jitted update at mask events.
    every: steps between mask events (with `prune_fn`).
    start: first event step.
    until: no events from this step on (masks frozen).
    aux: initial auxiliary state for `prune_fn` (a pytree, or a function
      `params -> aux`, e.g. to keep a copy of the weights).
    reapply: 'event' (zero pruned weights at mask events) or 'step' (after
      every step); used by 'soft' mode.

  Returns:
    An `optax.GradientTransformation` with `MaskedState`.
  """
  if mode not in MODES:
    raise ValueError(f'mode={mode!r}; allowed: {", ".join(MODES)}.')
  if reapply not in ('event', 'step'):
    raise ValueError(f"reapply={reapply!r}; allowed: 'event', 'step'.")
  if prune_fn is not None and (not isinstance(every, int) or every < 1):
    raise ValueError(f'every={every!r}; with prune_fn it must be an int >= 1.')

  def init_fn(params):
    m = masks(params) if callable(masks) else masks
    _check_structure(m, params)
    m = jax.tree.map(lambda x: jnp.asarray(x, bool), m)
    a = aux(params) if callable(aux) else aux
    return MaskedState(inner.init(params), m, a, jnp.zeros([], jnp.int32),
                       jnp.ones([], bool))

  def is_event(count):
    if prune_fn is None:
      return jnp.zeros([], bool)
    ok = (count >= start) & ((count - start) % every == 0)
    if until is not None:
      ok &= count < until
    return ok

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError('jaxprune.optax.masked needs params in update().')
    count = state.count
    event = is_event(count)
    if prune_fn is not None:
      new_masks, new_aux = jax.lax.cond(
          event, lambda: prune_fn(params, state.masks, state.aux, count),
          lambda: (state.masks, state.aux))
      new_masks = jax.tree.map(lambda x: jnp.asarray(x, bool), new_masks)
    else:
      new_masks, new_aux = state.masks, state.aux
    zero_now = event | state.fresh
    if mode == 'hard':
      grads = jax.tree.map(lambda g, m: _where(m, g, 0), updates, new_masks)
      u, inner_state = inner.update(grads, state.inner, params)
      inner_state = optax.tree_utils.tree_map_params(
          inner, lambda s, m: _where(m, s, 0), inner_state, new_masks,
          transform_non_params=lambda s: s)
      # p + (-p) == 0 exactly: pruned entries land on 0 and stay there.
      u = jax.tree.map(lambda u, p, m: _where(m, u, -p), u, params, new_masks)
    elif mode == 'soft':
      u, inner_state = inner.update(updates, state.inner, params)
      zero = zero_now | jnp.asarray(reapply == 'step')
      u = jax.tree.map(lambda u, p, m: _where(jnp.asarray(m) | ~zero, u, -p),
                       u, params, new_masks)
    else:
      u, inner_state = inner.update(updates, state.inner, params)
    return u, MaskedState(inner_state, new_masks, new_aux, count + 1,
                          jnp.zeros([], bool))

  return optax.GradientTransformation(init_fn, update_fn)


def _is_state(x) -> bool:
  return isinstance(x, MaskedState)


def find_state(opt_state: Any) -> MaskedState:
  """The (first) `MaskedState` inside an optimizer state, e.g. a chain's."""
  for leaf in jax.tree.leaves(opt_state, is_leaf=_is_state):
    if _is_state(leaf):
      return leaf
  raise ValueError('No jaxprune.optax.masked state in this optimizer state.')


def masks_of(opt_state: Any) -> Any:
  """The current parameter masks."""
  return find_state(opt_state).masks


def set_masks(opt_state: Any, masks: Any, aux: Any = None,
              zero: bool = True) -> Any:
  """Returns `opt_state` with new masks (and aux); jittable.

  The next update applies them: 'hard' and 'soft' zero the newly pruned
  weights at that step. With `zero=False` (the caller has zeroed them
  already) 'soft' mode lets that step's update through, so soft-pruned
  weights train from the first step on.
  """
  def swap(x):
    if _is_state(x):
      return x._replace(masks=jax.tree.map(lambda m: jnp.asarray(m, bool),
                                           masks),
                        aux=x.aux if aux is None else aux,
                        fresh=jnp.asarray(zero, bool))
    return x
  return jax.tree.map(swap, opt_state, is_leaf=_is_state)


def forward_params(params: Any, opt_state: Any) -> Any:
  """W * M: the parameters to run the model on in 'masked_forward' mode."""
  return jax.tree.map(lambda p, m: p * jnp.asarray(m, p.dtype), params,
                      masks_of(opt_state))


def l1_penalty(strength: float, mask: Any) -> optax.GradientTransformation:
  """Adds the subgradient of `strength * sum |p|` on the masked entries.

  Network slimming's sparsity term on BN scales (Liu et al., ICCV 2017,
  Eq. 1: the gradient gains lambda * sign(gamma)), written as a
  transformation to chain before the optimizer:
  `optax.chain(l1_penalty(1e-4, gamma_mask), optax.sgd(...))`.

  Args:
    strength: lambda >= 0.
    mask: a bool pytree like the params (broadcastable leaves), or a
      function `params -> mask`: where the penalty applies.

  Returns:
    A stateless `optax.GradientTransformation`.
  """
  if strength < 0:
    raise ValueError(f'strength={strength}; allowed: >= 0.')

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError('jaxprune.optax.l1_penalty needs params in update().')
    m = mask(params) if callable(mask) else mask
    _check_structure(m, params)
    updates = jax.tree.map(
        lambda g, p, k: g + jnp.where(jnp.asarray(k), strength * jnp.sign(p),
                                      0).astype(g.dtype), updates, params, m)
    return updates, state

  return optax.GradientTransformation(init_fn, update_fn)
