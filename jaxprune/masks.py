"""Channel masks and their application to variable pytrees.

A *channel mask* is a dict from group name to bool `[size]` (True = keep).
`ChannelGraph.param_masks` turns it into a pytree of broadcastable bool masks
shaped like the variables; `apply` multiplies them in. Both are jittable and
changing mask values never recompiles.
"""
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def apply(variables: Any, param_masks: Any) -> Any:
  """Zeroes masked entries: `variables * param_masks`, leaf by leaf.

  Args:
    variables: any pytree of arrays.
    param_masks: a pytree with the same structure whose leaves broadcast to
      the variables (as `ChannelGraph.param_masks` returns). A subtree may
      also be `None` (left unmasked).

  Returns:
    The masked pytree (same dtypes). Leaves of extended dtypes (PRNG keys,
    e.g. nnx RNG state) are returned as they are.
  """
  def one(v, m):
    if m is None or jax.dtypes.issubdtype(jnp.result_type(v),
                                          jax.dtypes.extended):
      return v
    return v * jnp.asarray(m).astype(v.dtype)

  return jax.tree.map(one, variables, param_masks,
                      is_leaf=lambda x: x is None)


def ones_like(graph, value: bool = True) -> dict[str, jax.Array]:
  """A mask that keeps (or prunes) every channel of every prunable group."""
  return graph.full_masks(value)


def random(graph, key: jax.Array, keep: float = 0.5,
           groups=None) -> dict[str, jax.Array]:
  """Random channel masks keeping about `keep` of each group (at least one).

  Args:
    graph: a ChannelGraph.
    key: PRNG key.
    keep: fraction of channels kept.
    groups: group names to mask (default: every prunable group).

  Returns:
    Channel masks.
  """
  names = [g.name for g in graph.prunable] if groups is None else list(groups)
  out = {}
  for k, name in zip(jax.random.split(key, max(len(names), 1)), names):
    size = graph.group(name).size
    r = jax.random.uniform(k, (size,))
    m = r < keep
    m = m.at[jnp.argmin(r)].set(True)  # Never empty a group.
    out[name] = m
  return out


def kept_counts(channel_masks: dict[str, Any]) -> dict[str, int]:
  """Number of kept channels per group (host ints)."""
  return {k: int(np.asarray(v).sum()) for k, v in channel_masks.items()}
