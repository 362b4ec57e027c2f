"""IMP: iterative global unstructured magnitude pruning with rewinding.

Frankle and Carbin, "The Lottery Ticket Hypothesis" (arXiv:1803.03635),
with rewinding as in Frankle et al., "Linear Mode Connectivity and the
Lottery Ticket Hypothesis" (arXiv:1912.05671). `--config.method=imp`.

The prunable weights are the kernels that produce a channel group, except
those reading the model input or writing the model output
(`units.prunable_kernels`). At the end of each state the next masks keep
the largest |w| globally (`criteria.magnitude_masks`): `absolute` keeps
int(N (1 - rate)) of all N weights, `gradual` removes `rate` of those that
remain. Masks are hard by default: pruned weights stay exactly 0.
"""
from jaxprune.errors import JaxpruneError
from jaxprune.methods import base, criteria, states


@base.register
class IMP(states.StateLoop):
  """Unstructured IMP over the state loop (`jaxprune.methods.states`)."""

  name = 'imp'
  structured = False
  default_mode = 'hard'

  def __init__(self, config, ctx):
    super().__init__(config, ctx)
    if not self.paths:
      raise JaxpruneError('IMP found no prunable kernel in this model.')
    self.check_pools({'weights': self.num_weights})

  def next_plan(self, k, trained, prev):
    cfg, params = self.cfg, self.host(trained)
    if cfg.amount == 'gradual' and prev is not None and (
        prev.weights is not None):
      masks = criteria.magnitude_masks(params, self.paths, rate=cfg.rate,
                                       current=prev.weights)
    else:
      masks = criteria.magnitude_masks(
          params, self.paths, keep=self.count(self.num_weights, k))
    return base.Plan({}, masks)
