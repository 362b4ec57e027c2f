"""Refill: structured masks from scores or IMP survivors (methods.md 3.3).

Transformers: heads and MLP neurons form two global pools; each keeps its
top `int(N (1 - rate))` units by the L1 norm of their producer weights
(trained and unmasked, so a dropped unit can come back). CNNs: each layer
keeps as many channels as its IMP survivors would fill (`budget =
survivors / weights_per_channel`), plus `fillback_rate` of the rest
(Refill+), ranked by a criterion.
"""
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune import structure
from jaxprune.methods.units import Unit, magnitude_scores

CRITERIA = ('remain', 'magnitude')


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


def refill_masks(params: Any, found: list[Unit], rate: float,
                 kinds: tuple[str, ...] = ('head', 'neuron')
                 ) -> dict[str, np.ndarray]:
  """Transformer Refill: one global pool per kind, top `int(N (1 - rate))`.

  Args:
    params: trained, unmasked weights (a dropped unit can come back).
    found: units from `units`.
    rate: fraction of each pool removed.
    kinds: the pools to prune.

  Returns:
    Channel masks for the groups of those kinds.
  """
  out = {}
  for kind in kinds:
    pool = [u for u in found if u.kind == kind]
    if not pool:
      continue
    scores = {u.group: magnitude_scores(params, u) for u in pool}
    out.update(global_top(scores, keep_count(sum(u.size for u in pool),
                                             rate)))
  return out


def cnn_masks(params: Any, found: list[Unit], imp_masks: Any,
              criterion: str = 'remain',
              fillback_rate: float = 0.0) -> dict[str, np.ndarray]:
  """CNN Refill: per-layer channel budgets from the IMP survivors.

  Args:
    params: trained weights.
    found: 'channel' units (`jaxprune.methods.units.units`).
    imp_masks: bool pytree like `params`: the IMP (unstructured) masks.
    criterion: 'remain' (survivors per channel, the default) or 'magnitude'
      (L1 of the trained weights).
    fillback_rate: Refill+: also keep this fraction of the channels beyond
      the budget.

  Returns:
    Channel masks: the top `int(budget + (C - budget) * fillback_rate)`
    channels of each unit (at least one).
  """
  if criterion not in CRITERIA:
    raise ValueError(f'criterion={criterion!r}; allowed: '
                     f'{", ".join(CRITERIA)}.')
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
    score = (survivors.astype(np.float64) if criterion == 'remain' else
             np.asarray(magnitude_scores(params, u), np.float64))
    order = np.argsort(-score, kind='stable')
    mask = np.zeros(u.size, bool)
    mask[order[:keep]] = True
    out[u.group] = mask
  return out
