"""Filters re-masked after every epoch from the current weights: the loop
of SFP and FPGM.

He et al., "Soft Filter Pruning for Accelerating Deep Convolutional Neural
Networks", IJCAI 2018; He et al., "Filter Pruning via Geometric Median for
Deep Convolutional Neural Networks Acceleration", CVPR 2019. One phase.
After every `every_epochs` epochs (an event at the start of the next one)
every pruned layer scores its filters on the current weights (the
method's kernel criterion: SFP's L2 norm, FPGM's summed distance), keeps
the best under the shared budget (`jaxprune.methods.budget`) and zeroes
the others' producing kernels (and biases); consumers and norms keep
their weights, so a zeroed filter still has a gradient:

* `soft` masks (SFP): gradients are not masked, so zeroed filters train
  again and can win their place back at the next event;
* `hard` masks (FPGM's code masks gradients every step): zeroed filters
  stay exactly zero until the next event re-scores them.

After the last epoch a final event prunes once more and zeroes every
member of the pruned channels (norms, consumers too), so the network
evaluated is exactly the one slimmed. Masks live in the optimizer state,
with the channel masks as its aux, so a resumed run continues alike.

`finetune_epochs` > 0 adds a second phase: the final masks, hard, and
that many epochs of fine-tuning on a fresh schedule (the "Fine-tune?"
rows of both papers' tables). Without it the final cut removes channels
that were training until the last epoch (with BN, a regrown filter is
rescaled to full strength however small its weights), which can cost
much accuracy at high rates.
"""
import time
from typing import ClassVar

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxprune import masks as masks_lib
from jaxprune import optax as optax_lib
from jaxprune.errors import JaxpruneError
from jaxprune.methods import base, budget


def epochwise_fields() -> ml_collections.ConfigDict:
  """The budget fields plus the re-masking schedule."""
  c = budget.fields(ml_collections.ConfigDict())
  c.every_epochs = 1  # Re-mask after every this many epochs.
  c.prune_at_start = False  # Also mask at epoch 0 (e.g. pretrained init_from weights).
  c.finetune_epochs = 0  # Hard-masked fine-tuning epochs after the last cut; 0: none (the papers' default).
  return c


_apply = jax.jit(masks_lib.apply)


class EpochMasks(base.MasksInOptState, base.Method):
  """Re-masks every `every_epochs` epochs by `criterion`; `mode` says
  whether pruned filters get gradients ('soft') or not ('hard')."""

  criterion: ClassVar[str] = 'l2'
  mode: ClassVar[str] = 'soft'

  def __init__(self, config, ctx):
    super().__init__(config, ctx)
    if not isinstance(self.cfg.every_epochs, int) or self.cfg.every_epochs < 1:
      raise JaxpruneError(f'{self.config_name}.every_epochs='
                          f'{self.cfg.every_epochs!r}; allowed: an int >= 1.')
    ft = self.cfg.finetune_epochs
    if not isinstance(ft, int) or isinstance(ft, bool) or ft < 0:
      raise JaxpruneError(f'{self.config_name}.finetune_epochs={ft!r}; '
                          'allowed: an int >= 0.')
    self.budget = budget.Budget(ctx.graph, ctx.params, self.cfg,
                                self.config_name, kernel=True)
    self.units = self.budget.units
    self.graph = ctx.graph
    self.num_epochs = ctx.num_epochs
    self._set = jax.jit(self._set_masks)

  @property
  def num_phases(self) -> int:
    return 2 if self.cfg.finetune_epochs else 1

  def plan(self, k, trained, prev):
    del prev
    if k == 0:
      return None
    # The final event zeroed every member of the pruned channels: the
    # kept channels are those whose producing filters are not all zero
    # (read from the weights, so a run resumed here gets the same plan).
    scores = self.budget.kernel_scores(jax.device_get(trained['params']), 'l1')
    return base.Plan({g: np.asarray(s) > 0 for g, s in scores.items()})

  def phase(self, k, plan):
    if k == 0:
      return base.Phase(plan=plan, wrap=lambda tx, masks: self.wrap(tx),
                        events=self.is_event)
    return base.Phase(
        start='trained', plan=plan, mask_start=True, masked_eval=True,
        wrap=lambda tx, masks: optax_lib.masked(tx, masks, mode='hard'),
        track_best=True, epochs=self.cfg.finetune_epochs)

  def channel_masks(self, k, plan, opt_state):
    if k == 0:
      return super().channel_masks(k, plan, opt_state)
    return base.Method.channel_masks(self, k, plan, opt_state)

  def describe(self, plan):
    if plan is None:
      return super().describe(plan)
    return base.Method.describe(self, plan)

  def no_shrink(self, k):
    if k == 0 and self.mode == 'soft':
      return (f"{self.name}'s zeroed filters keep training between events "
              '(soft masks)')
    return None

  def is_event(self, epoch: int) -> bool:
    if epoch == self.num_epochs:
      return True
    if epoch == 0:
      return bool(self.cfg.prune_at_start)
    return epoch % self.cfg.every_epochs == 0

  def wrap(self, inner):
    full = {u.group: jnp.ones((u.size,), bool) for u in self.units}
    # The masks keep one shape for the whole run (a checkpoint restores
    # into it): the graph's, which has every pruned axis.
    return optax_lib.masked(
        inner, masks=self.graph.param_masks(full)['params'], mode=self.mode,
        reapply='event', aux={'channels': full})

  def _set_masks(self, params, opt_state, pm, channels):
    params = _apply(params, pm)  # Zeroed now: the next step may regrow.
    return params, optax_lib.set_masks(opt_state, pm, {'channels': channels},
                                       zero=False)

  def event(self, k, epoch, params, opt_state, key):
    del k, key
    t0 = time.time()
    host = jax.device_get(params)
    old = self.current_masks(opt_state)
    channels = self.budget.masks(self.budget.kernel_scores(host,
                                                           self.criterion))
    final = epoch == self.num_epochs
    if final:  # Every member: the network equals the slimmed one.
      pm = self.graph.param_masks(channels)['params']
    else:
      shapes = self.graph.param_masks(channels)['params']
      pm = jax.tree.map(lambda m, t: np.broadcast_to(m, np.shape(t)),
                        budget.producer_masks(self.units, channels, host),
                        shapes)
    pm = jax.tree.map(jnp.asarray, pm)
    params, opt_state = self._set(params, opt_state, pm, channels)
    macs = self.graph.macs(channels)
    info = {'macs': int(macs),
            'flops_reduction': 1 - macs / self.budget.dense_macs,
            'changed': int(sum(np.sum(channels[g] != old[g])
                               for g in channels)),
            'seconds': time.time() - t0}
    self.ctx.log('%s event at epoch %d: %s MACs (%.2f%% removed), %d '
                 'channels changed, %.1fs.', self.name, epoch, f'{macs:,}',
                 100 * info['flops_reduction'], info['changed'],
                 info['seconds'])
    return params, opt_state, info
