"""Prune once, then fine-tune: the base of the one-shot baselines.

Two phases:

* phase 0 trains the dense network (`pretrain_epochs`; 0 prunes the
  initial weights as they are, e.g. pretrained ones from
  `config.init_from`), optionally under a regulariser (`pretrain_wrap`,
  BN-slimming's L1 on gamma);
* phase 1 computes channel masks from the trained weights once (`masks`,
  the subclass's criterion under the shared `jaxprune.methods.budget`),
  zeroes the pruned channels and fine-tunes under hard masks
  (`finetune_epochs`); the network is slimmed at the end.

Subclasses (`l1`, `cup`, `bn_slimming`) set `name`, `config_name`, their
`defaults()` (which call `oneshot_fields`) and implement `masks`.
"""
from typing import Any

import ml_collections
import numpy as np

from jaxprune import optax as optax_lib
from jaxprune.errors import JaxpruneError
from jaxprune.methods import base, budget


def oneshot_fields(c: ml_collections.ConfigDict, **kw
                   ) -> ml_collections.ConfigDict:
  """The budget fields plus the two phases' lengths."""
  budget.fields(c, **kw)
  c.pretrain_epochs = -1  # Epochs of dense training; -1: num_epochs; 0: prune the initial (init_from) weights.
  c.finetune_epochs = -1  # Epochs of fine-tuning after pruning; -1: num_epochs.
  return c


class OneShot(base.Method):
  """Trains (or loads), prunes once by a criterion, fine-tunes."""

  needs_kernel: bool = True  # Units must have a `kernel` (filter criteria).

  def __init__(self, config, ctx):
    super().__init__(config, ctx)
    for f in ('pretrain_epochs', 'finetune_epochs'):
      v = self.cfg[f]
      if not isinstance(v, int) or v < -1:
        raise JaxpruneError(f'{self.config_name}.{f}={v!r}; allowed: an int '
                            '>= 0, or -1 for num_epochs.')
    self.budget = budget.Budget(ctx.graph, ctx.params, self.cfg,
                                self.config_name, kernel=self.needs_kernel)
    self.units = self.budget.units

  @property
  def num_phases(self) -> int:
    return 2

  def masks(self, trained: dict[str, Any]) -> dict[str, np.ndarray]:
    """Channel keep masks from phase 0's variables {'params', ...}."""
    raise NotImplementedError

  def pretrain_wrap(self, tx):
    """The optimizer of phase 0 (a regulariser may be chained in)."""
    return tx

  def plan(self, k, trained, prev):
    if k == 0:
      return None
    return base.Plan(self.masks(trained))

  @staticmethod
  def _epochs(v: int) -> int | None:
    return None if v < 0 else v

  def phase(self, k, plan):
    if k == 0:
      return base.Phase(track_best=True,
                        wrap=lambda tx, masks: self.pretrain_wrap(tx),
                        epochs=self._epochs(self.cfg.pretrain_epochs))
    return base.Phase(
        start='trained', plan=plan, mask_start=True, masked_eval=True,
        wrap=lambda tx, masks: optax_lib.masked(tx, masks, mode='hard'),
        track_best=True, epochs=self._epochs(self.cfg.finetune_epochs))
