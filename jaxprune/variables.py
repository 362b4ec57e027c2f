"""What counts as a parameter, for linen variables and nnx states alike.

Linen keeps trainable parameters in the 'params' collection (batch
statistics, caches and the like in others); nnx marks them by variable type
(`nnx.Param`; `nnx.BatchStat` and RNG state are not parameters). A plain
pytree with neither counts every leaf.
"""
import math
from typing import Any

import jax


def _nnx_variable_types():
  try:
    from flax import nnx  # pylint: disable=g-import-not-at-top
  except ImportError:  # pragma: no cover - flax always ships nnx here.
    return None, None
  return nnx.Variable, nnx.Param


def trainable(variables: Any) -> list[bool]:
  """One flag per leaf of `jax.tree.leaves(variables)`: is it a parameter?"""
  var_t, param_t = _nnx_variable_types()
  items = jax.tree_util.tree_flatten_with_path(
      variables, is_leaf=lambda x: var_t is not None and isinstance(x, var_t))[0]
  if var_t is not None and any(isinstance(x, var_t) for _, x in items):
    return [isinstance(x, param_t) for _, x in items
            for _ in range(len(jax.tree.leaves(x)))]
  if not (hasattr(variables, 'keys') and 'params' in variables.keys()):
    return [True] * len(jax.tree.leaves(variables))
  return [key_name(path[0]) == 'params' for path, _ in
          jax.tree_util.tree_flatten_with_path(variables)[0]]


def key_name(k) -> str:
  """The name of one pytree path entry (dict key, attribute or index)."""
  for attr in ('key', 'name', 'idx'):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def count(variables: Any) -> int:
  """Scalars in the trainable parameters of `variables`."""
  return int(sum(math.prod(x.shape) for x, t in zip(
      jax.tree.leaves(variables), trainable(variables)) if t))
