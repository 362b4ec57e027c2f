"""Random channel pruning, one shot: train, prune at random, fine-tune.

A baseline (a network pruned at random and fine-tuned) and the example of
README "Adding a method": the whole method is this file. Two phases:

* phase 0 trains the dense network from the initial weights;
* phase 1 keeps, in every prunable head, neuron and channel group,
  `ceil((1 - sparsity) n)` units drawn at random, zeroes the others and
  fine-tunes the trained weights under hard masks.

`--config.method=random --config.random.sparsity=0.5`.
"""
import math

import jax
import ml_collections
import numpy as np

from jaxprune import optax as optax_lib
from jaxprune.errors import JaxpruneError
from jaxprune.methods import base, criteria, units


@base.register
class RandomChannels(base.Method):
  """Prunes a random `sparsity` of every group once, then fine-tunes."""

  name = 'random'
  config_name = 'random'

  @classmethod
  def defaults(cls) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.sparsity = 0.5  # Fraction of each group's units removed.
    c.finetune_epochs = 0  # Epochs of the fine-tuning phase; 0: num_epochs.
    c.seed = 0  # Seed of the random choice.
    return c

  def __init__(self, config, ctx):
    super().__init__(config, ctx)
    if not 0 <= self.cfg.sparsity < 1:
      raise JaxpruneError(f'random.sparsity={self.cfg.sparsity}; allowed: '
                          '0 <= sparsity < 1.')
    if self.cfg.finetune_epochs < 0:
      raise JaxpruneError(f'random.finetune_epochs={self.cfg.finetune_epochs}'
                          '; allowed: an int >= 0.')
    self.units = units.units(ctx.graph, ctx.params)
    if not self.units:
      raise JaxpruneError('random found no prunable head, neuron or channel '
                          'group in this model.')

  @property
  def num_phases(self) -> int:
    return 2

  def plan(self, k, trained, prev):
    if k == 0:
      return None
    key = jax.random.key(self.cfg.seed)
    channels = {}
    for i, u in enumerate(self.units):
      keep = max(1, math.ceil(round((1 - self.cfg.sparsity) * u.size, 6)))
      scores = jax.random.uniform(jax.random.fold_in(key, i), (u.size,))
      channels[u.group] = np.asarray(criteria.top_k(scores, keep))
    return base.Plan(channels)

  def phase(self, k, plan):
    if k == 0:
      return base.Phase(track_best=True)
    return base.Phase(
        start='trained', plan=plan, mask_start=True, masked_eval=True,
        wrap=lambda tx, masks: optax_lib.masked(tx, masks, mode='hard'),
        track_best=True, epochs=self.cfg.finetune_epochs or None)
