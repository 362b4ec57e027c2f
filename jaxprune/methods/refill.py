"""Refill: structured masks from scores or IMP survivors (methods.md 3.3).

Transformers: heads and MLP neurons form two global pools; each keeps its
top `int(N (1 - rate))` units by the L1 norm of their producer weights
(trained and unmasked, so a dropped unit can come back). CNNs: each layer
keeps as many channels as its IMP survivors would fill (`budget =
survivors / weights_per_channel`), plus `fillback_rate` of the rest
(Refill+), ranked by a criterion: the survivor count (`remain`), the L1 of
the trained weights (`magnitude`), the L1/L2 norm of the channel's output
feature map on one batch (`l1`, `l2`: `activation_scores`), or the SNIP
saliency sum |w dL/dw| of its producer weights (`saliency`:
`saliency_scores`).
"""
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune import structure
from jaxprune.methods.units import Unit, magnitude_scores, producer_sum
from jaxprune.methods.units import unit_sums

CRITERIA = ('remain', 'magnitude', 'l1', 'l2', 'saliency')
# Criteria that need a batch (scores from `activation_scores` or
# `saliency_scores`).
BATCH_CRITERIA = ('l1', 'l2', 'saliency')


def keep_count(total: int, rate: float) -> int:
  """int(N (1 - rate)): the seed-003 count of kept units."""
  return int(total * (1 - rate))


def global_top(scores: dict[str, jax.Array], keep: int) -> dict[str, np.ndarray]:
  """Keeps the `keep` highest scores over all groups of one pool.

  Ties go to the earlier group, then the lower index (a stable order).

  Returns:
    group -> bool keep mask.
  """
  names = list(scores)
  flat = np.concatenate([np.asarray(scores[k], np.float64) for k in names])
  if not 0 <= keep <= flat.size:
    raise ValueError(f'keep={keep}; allowed: 0..{flat.size}.')
  order = np.argsort(-flat, kind='stable')
  chosen = np.zeros(flat.size, bool)
  chosen[order[:keep]] = True
  out, start = {}, 0
  for k in names:
    n = np.size(scores[k])
    out[k] = chosen[start:start + n]
    start += n
  return out


def refill_masks(params: Any, found: list[Unit], rate: float | None = None,
                 kinds: tuple[str, ...] = ('head', 'neuron'),
                 keep: Callable[[int], int] | None = None
                 ) -> dict[str, np.ndarray]:
  """Transformer Refill: one global pool per kind, top `int(N (1 - rate))`.

  Args:
    params: trained, unmasked weights (a dropped unit can come back).
    found: units from `units`.
    rate: fraction of each pool removed.
    kinds: the pools to prune.
    keep: instead of `rate`, a function from a pool's size N to the number
      of units it keeps (e.g. a gradual schedule).

  Returns:
    Channel masks for the groups of those kinds.
  """
  if keep is None:
    if rate is None:
      raise ValueError('Pass rate or keep.')
    keep = lambda n: keep_count(n, rate)
  out = {}
  for kind in kinds:
    pool = [u for u in found if u.kind == kind]
    if not pool:
      continue
    scores = {u.group: magnitude_scores(params, u) for u in pool}
    out.update(global_top(scores, keep(sum(u.size for u in pool))))
  return out


def cnn_masks(params: Any, found: list[Unit], imp_masks: Any,
              criterion: str = 'remain', fillback_rate: float = 0.0,
              scores: dict[str, Any] | None = None
              ) -> dict[str, np.ndarray]:
  """CNN Refill: per-layer channel budgets from the IMP survivors.

  Args:
    params: trained weights.
    found: 'channel' units (`jaxprune.methods.units.units`).
    imp_masks: bool pytree like `params`: the IMP (unstructured) masks.
    criterion: 'remain' (survivors per channel, the default), 'magnitude'
      (L1 of the trained weights), or 'l1', 'l2', 'saliency' (from
      `scores`).
    fillback_rate: Refill+: also keep this fraction of the channels beyond
      the budget.
    scores: group -> float [size]: the channel scores of the batch
      criteria (`activation_scores`, `saliency_scores`).

  Returns:
    Channel masks: the top `int(budget + (C - budget) * fillback_rate)`
    channels of each unit (at least one).
  """
  if criterion not in CRITERIA:
    raise ValueError(f'criterion={criterion!r}; allowed: '
                     f'{", ".join(CRITERIA)}.')
  if criterion in BATCH_CRITERIA and scores is None:
    raise ValueError(f'criterion={criterion!r} needs scores (from '
                     'activation_scores or saliency_scores).')
  if not 0 <= fillback_rate <= 1:
    raise ValueError(f'fillback_rate={fillback_rate}; allowed: 0..1.')
  out = {}
  for u in found:
    if u.kind != 'channel':
      continue
    path, axis = u.producers[0]
    m = np.moveaxis(np.asarray(structure.lookup(imp_masks, path), bool),
                    axis, 0)
    m = m.reshape(u.size, -1)
    survivors = m.sum(1)
    budget = survivors.sum() / m.shape[1]
    keep = int(budget + (u.size - budget) * fillback_rate)
    keep = min(max(keep, 1), u.size)
    if criterion == 'remain':
      score = survivors.astype(np.float64)
    elif criterion == 'magnitude':
      score = np.asarray(magnitude_scores(params, u), np.float64)
    else:
      score = np.asarray(scores[u.group], np.float64)
    order = np.argsort(-score, kind='stable')
    mask = np.zeros(u.size, bool)
    mask[order[:keep]] = True
    out[u.group] = mask
  return out


def _unit_sum(found: list[Unit], per_producer) -> dict[str, jax.Array]:
  """group -> `units.producer_sum(unit, per_producer)`."""
  return {u.group: producer_sum(u, per_producer) for u in found}


def activation_scores(apply_fn: Callable[..., Any], variables: Any, x,
                      found: list[Unit], norm: str = 'l1'
                      ) -> dict[str, jax.Array]:
  """L1 or L2 norm of each unit's output feature map on the batch `x`.

  The model runs in eval mode with Flax's `capture_intermediates`; a unit's
  outputs are those of the modules owning its producer kernels (their
  trailing output axes mirror the kernel's, so kernel axis a is output axis
  `out.ndim - (kernel.ndim - a)`). Jittable.

  Args:
    apply_fn: a Flax linen `apply` (`model.apply`).
    variables: the model variables (trained, unmasked weights).
    x: a batch of normalised inputs.
    found: the units to score.
    norm: 'l1' (sum |y|) or 'l2' (sqrt of sum y^2), over everything but the
      unit axis.

  Returns:
    group -> float32 [size].
  """
  if norm not in ('l1', 'l2'):
    raise ValueError(f"norm={norm!r}; allowed: 'l1', 'l2'.")
  _, state = apply_fn(variables, x, train=False, capture_intermediates=True,
                      mutable=['intermediates'])
  inter = state['intermediates']

  def per(path, axis, index):
    node = inter
    for k in path[:-1]:
      if k not in node:
        raise ValueError(f'No captured output for module {path[:-1]}; '
                         'l1/l2 scores need a Flax linen module per kernel.')
      node = node[k]
    y = node['__call__'][0].astype(jnp.float32)
    ndim = len(np.shape(structure.lookup(variables['params'], path)))
    a = y.ndim - (ndim - axis)
    if norm == 'l1':
      return unit_sums(jnp.abs(y), a, index)
    return jnp.sqrt(unit_sums(y * y, a, index))

  return _unit_sum(found, per)


def saliency_scores(loss_fn: Callable[[Any], jax.Array], params: Any,
                    found: list[Unit]) -> dict[str, jax.Array]:
  """SNIP saliency: sum of |w * dL/dw| over each unit's producer weights.

  Args:
    loss_fn: params -> scalar loss on one batch.
    params: the trained, unmasked weights.
    found: the units to score.

  Returns:
    group -> float32 [size]. Jittable.
  """
  grads = jax.grad(loss_fn)(params)

  def per(path, axis, index):
    return unit_sums(jnp.abs(
        jnp.asarray(structure.lookup(params, path), jnp.float32) *
        jnp.asarray(structure.lookup(grads, path), jnp.float32)), axis, index)

  return _unit_sum(found, per)
