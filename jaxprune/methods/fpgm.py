"""FPGM: filter pruning via the geometric median (He et al., CVPR 2019,
arXiv:1811.00250).

A filter's score is its summed distance to the layer's other filters
(`criteria.fpgm`); the smallest, nearest the geometric median, are the
most replaceable and are pruned. Masks are recomputed after every epoch
from the current weights (the soft schedule SFP introduced); between
re-masks gradients of pruned filters are masked, so their zeros stay
zero. Slimmed at the end. The loop is `jaxprune.methods.epochwise`.

`--config.method=fpgm`.
"""
from jaxprune.methods import base, epochwise


@base.register
class FPGM(epochwise.EpochMasks):
  """Geometric-median filter pruning, re-masked every epoch."""

  name = 'fpgm'
  config_name = 'fpgm'
  criterion = 'fpgm'
  mode = 'hard'

  @classmethod
  def defaults(cls):
    return epochwise.epochwise_fields()
