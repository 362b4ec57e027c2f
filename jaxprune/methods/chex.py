"""CHEX: channel exploration by column subset selection, with regrowth.

Hou et al., "CHEX: CHannel EXploration for CNN Model Compression", CVPR
2022. The prune-and-regrow loop is REPrune's (`jaxprune.methods.explore`);
only the selection differs. At an event, a layer that keeps k = n - p of
its n filters keeps the k columns of its filter matrix F [D, n] with the
largest leverage scores in F's top-k right singular subspace
(`jaxprune.methods.criteria.leverage` with rank k): the deterministic
column subset selection that approximates F best in that subspace.

`--config.method=chex`; settings in `config.chex` (the loop's: sparsity or
a MACs target, allocation, delta0, every_epochs, until_epoch, policy).
"""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxprune import structure
from jaxprune.methods import base, criteria, explore


@jax.jit
def _css(w, keep):
  """Keep mask of the `keep` columns of top leverage in rank `keep`."""
  return criteria.top_k(criteria.leverage(w, rank=keep), keep)


def select(params, lays, pruned: dict[str, int]) -> dict[str, np.ndarray]:
  """Leverage-score column subset selection: keeps n - pruned[g] filters
  of every layer (at least one)."""
  out = {}
  for l in lays:
    keep = l.size - min(pruned[l.group], l.size - 1)
    w = jnp.asarray(structure.lookup(params, l.kernel), jnp.float32)
    out[l.group] = np.asarray(_css(w, jnp.int32(keep)))
  return out


@base.register
class CHEX(explore.ExploreLoop):
  """CHEX's loop: soft masks from scratch, leverage-score selection,
  importance-sampled regrowth (the shared `ExploreLoop`)."""

  name = 'chex'
  config_name = 'chex'

  @classmethod
  def defaults(cls) -> ml_collections.ConfigDict:
    # delta0 = 0.3: the initial channel ratio of CHEX's published command.
    return explore.loop_defaults(delta0=0.3)

  def choose(self, params, pruned, key):
    del key  # Deterministic.
    return select(params, self.lays, pruned), {}
