"""SFP: soft filter pruning (He et al., IJCAI 2018, arXiv:1808.06866).

After every epoch the filters of smallest L2 norm (`criteria.l2`) of
every pruned layer are zeroed, at one rate (`ranking='layer'`) or one
global ranking, or at the rate that meets a MACs target. Gradients are
not masked, so zeroed filters keep training and can come back at the
next epoch's re-mask. The zeros are removed (the network slimmed) at the
end. The loop is `jaxprune.methods.epochwise`.

`--config.method=sfp`.
"""
from jaxprune.methods import base, epochwise


@base.register
class SFP(epochwise.EpochMasks):
  """L2-norm soft filter pruning, re-masked every epoch."""

  name = 'sfp'
  config_name = 'sfp'
  criterion = 'l2'
  mode = 'soft'

  @classmethod
  def defaults(cls):
    return epochwise.epochwise_fields()
