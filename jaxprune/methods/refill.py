"""Refill: structured masks from scores or IMP survivors.

Chen et al., "Coarsening the Granularity: Towards Structurally Sparse
Lottery Tickets" (ICML 2022, arXiv:2202.04736). `--config.method=refill`.

Transformers: heads and MLP neurons form two global pools; each keeps its
top `int(N (1 - rate))` units (or the gradual count) by the L1 norm of
their producer weights (trained and unmasked, so a dropped unit can come
back). CNNs: each layer keeps as many channels as its IMP survivors would
fill (`budget = survivors / weights_per_channel`), plus `fillback_rate` of
the rest (Refill+), ranked by a criterion: the survivor count (`remain`),
the L1 of the trained weights (`magnitude`), the L1/L2 norm of the
channel's output feature map on one batch (`l1`, `l2`), or the SNIP
saliency sum |w dL/dw| of its producer weights (`saliency`). By default
the model trains on W * M (masked forward).
"""
from typing import Any, Callable

import jax
import numpy as np

from jaxprune import structure
from jaxprune.errors import JaxpruneError
from jaxprune.methods import base, criteria, states
from jaxprune.methods.units import Unit

CRITERIA = states.CRITERIA
# Criteria that need a batch (`criteria.activation`, `criteria.saliency`).
BATCH_CRITERIA = ('l1', 'l2', 'saliency')


def refill_masks(params: Any, found: list[Unit], rate: float | None = None,
                 kinds: tuple[str, ...] = ('head', 'kv_group', 'neuron'),
                 keep: Callable[[int], int] | None = None
                 ) -> dict[str, np.ndarray]:
  """Transformer Refill: one global pool per kind, top `int(N (1 - rate))`.

  Args:
    params: trained, unmasked weights (a dropped unit can come back).
    found: units (`jaxprune.methods.units`).
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
    keep = lambda n: base.kept(n, rate, 1, 'absolute')
  out = {}
  for kind in kinds:
    pool = [u for u in found if u.kind == kind]
    if not pool:
      continue
    scores = {u.group: criteria.magnitude(params, u) for u in pool}
    out.update(criteria.global_top(scores, keep(sum(u.size for u in pool))))
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
      score = np.asarray(criteria.magnitude(params, u), np.float64)
    else:
      score = np.asarray(scores[u.group], np.float64)
    order = np.argsort(-score, kind='stable')
    mask = np.zeros(u.size, bool)
    mask[order[:keep]] = True
    out[u.group] = mask
  return out


@base.register
class Refill(states.StateLoop):
  """Refill over the state loop (`jaxprune.methods.states`)."""

  name = 'refill'

  def __init__(self, config, ctx):
    super().__init__(config, ctx)
    if not self.units:
      raise JaxpruneError(
          f'{self.name} found no prunable unit (attention head, MLP neuron '
          'or block-internal channel) in this model; prunable groups: '
          f'{", ".join(g.name for g in ctx.graph.prunable) or "none"}.')
    self.check_pools({f'{kind}s': sum(u.size for u in self.units
                                      if u.kind == kind)
                      for kind in ('head', 'kv_group', 'neuron')})
    self.cnn = [u for u in self.units if u.kind == 'channel']
    if self.cnn and not self.paths:
      raise JaxpruneError('CNN Refill needs IMP survivors, but no kernel is '
                          'prunable.')

  def next_plan(self, k, trained, prev):
    cfg, params = self.cfg, self.host(trained)
    count = lambda n: self.count(n, k)
    channels = refill_masks(params, self.units, keep=count)
    if self.cnn:
      survivors = criteria.magnitude_masks(params, self.paths,
                                           keep=count(self.num_weights))
      scores = (self.batch_scores(cfg.criterion, trained)
                if cfg.criterion in BATCH_CRITERIA else None)
      channels.update(cnn_masks(params, self.cnn, survivors, cfg.criterion,
                                cfg.fillback_rate, scores))
    return base.Plan(channels)

  def batch_scores(self, criterion: str, trained) -> dict[str, np.ndarray]:
    """CNN Refill's batch criteria on the first training batch."""
    ctx, found = self.ctx, self.cnn
    x, batch = ctx.sample()
    stats = trained.get('batch_stats', {})

    @jax.jit
    def scores(params, x, batch):
      v = {'params': params, 'batch_stats': stats}
      if criterion in ('l1', 'l2'):
        return criteria.activation(ctx.apply_fn, v, x, found, criterion)
      return criteria.saliency(
          lambda p: ctx.loss({'params': p, 'batch_stats': stats}, x, batch),
          params, found)

    return jax.device_get(scores(trained['params'], x, batch))
