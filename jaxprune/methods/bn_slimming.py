"""Network slimming: L1 on BN scales while training, one global threshold,
prune once, fine-tune.

Liu et al., "Learning Efficient Convolutional Networks through Network
Slimming", ICCV 2017 (arXiv:1708.06519). Phase 0 trains with the sparsity
term lambda sum |gamma| on the normalisation scales of every pruned group
(`jaxprune.optax.l1_penalty`, chained before the optimizer, so momentum
and weight decay see it as the paper's subgradient). Phase 1 keeps the
channels whose |gamma| is above one global threshold (the s quantile over
all pruned groups, `ranking='global'`; s from `sparsity` or a MACs target),
zeroes the rest and fine-tunes under hard masks; every group keeps at least
one channel. The network is slimmed at the end.

`--config.method=bn_slimming`.
"""
import jax
import ml_collections
import numpy as np
import optax

from jaxprune import optax as optax_lib
from jaxprune.errors import JaxpruneError
from jaxprune.methods import base, criteria, oneshot


@base.register
class BNSlimming(oneshot.OneShot):
  """L1-regularised gamma, then one global |gamma| threshold."""

  name = 'bn_slimming'
  config_name = 'bn_slimming'
  needs_kernel = False

  @classmethod
  def defaults(cls) -> ml_collections.ConfigDict:
    c = oneshot.oneshot_fields(ml_collections.ConfigDict(), ranking='global')
    c.l1_strength = 1e-4  # lambda of the L1 term on gamma (1e-4 VGG, 1e-5 ResNet in the paper).
    return c

  def __init__(self, config, ctx):
    super().__init__(config, ctx)
    if self.cfg.l1_strength < 0:
      raise JaxpruneError(f'bn_slimming.l1_strength={self.cfg.l1_strength}; '
                          'allowed: >= 0.')
    missing = [u.group for u in self.units if not u.gammas]
    if missing:
      raise JaxpruneError(
          f'bn_slimming: groups {missing} have no normalisation scale; '
          'exclude them (bn_slimming.exclude) or use another method.')
    self.gamma_paths = {p for u in self.units for p in u.gammas}

  def gamma_mask(self, params):
    """True on the penalised scales (whole leaves), False elsewhere."""
    return jax.tree_util.tree_map_with_path(
        lambda path, x: np.full((1,) * np.ndim(x), tuple(
            k.key for k in path) in self.gamma_paths), params)

  def pretrain_wrap(self, tx):
    return optax.chain(optax_lib.l1_penalty(self.cfg.l1_strength,
                                            self.gamma_mask), tx)

  def masks(self, trained):
    scores = {u.group: np.asarray(criteria.bn_gamma(trained['params'], u))
              for u in self.units}
    return self.budget.masks(scores)
