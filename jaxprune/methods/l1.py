"""L1-norm filter pruning, one shot on a trained network, then fine-tuning.

Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017
(arXiv:1608.08710). A filter's score is sum |W| over its kernel
(`jaxprune.methods.criteria.l1`); each pruned layer keeps its n - ceil(s n)
highest (`ranking='layer'`, the paper's per-layer ratios), or one ranking
over all pruned layers decides (`ranking='global'`). The sparsity s is
`l1.sparsity`, or found so that the MACs reach `l1.target_macs` /
`l1.target_reduction` (`jaxprune.methods.budget`). Phase 0 trains (or,
with `l1.pretrain_epochs=0`, takes the `init_from` weights as trained),
phase 1 fine-tunes under hard masks; the network is slimmed at the end.

`--config.method=l1`.
"""
import ml_collections

from jaxprune.methods import base, oneshot


@base.register
class L1(oneshot.OneShot):
  """Prunes the filters of smallest L1 norm once, then fine-tunes."""

  name = 'l1'
  config_name = 'l1'

  @classmethod
  def defaults(cls) -> ml_collections.ConfigDict:
    return oneshot.oneshot_fields(ml_collections.ConfigDict())

  def masks(self, trained):
    return self.budget.masks(self.budget.kernel_scores(trained['params'],
                                                       'l1'))
