"""Multiply-accumulate and parameter counts from the traced jaxpr.

`count` traces `apply_fn` with `jax.make_jaxpr` (nothing is compiled or run)
and adds up the MACs of every `conv_general_dilated` and `dot_general`,
recursing into sub-jaxprs. The convention is the one torchvision, thop and
the pruning papers' tables use: one multiply-accumulate counts once; elementwise ops,
normalisation, pooling and softmax count zero.
"""
import dataclasses
import math
from typing import Any, Callable

import jax
from jax.extend import core as jex_core

from jaxprune import variables as variables_lib


@dataclasses.dataclass(frozen=True)
class Counts:
  """MACs of one call of the function, and parameter count.

  Attributes:
    macs: multiply-accumulates for the arguments given (for per-example
      MACs, pass a batch of one).
    params: trainable scalars: linen's `params` collection or nnx `Param`
      variables (not batch statistics or RNG state); every leaf of a plain
      pytree that has neither.
  """
  macs: int
  params: int


def conv_macs(eqn) -> int:
  """MACs of a conv: output elements x kernel window x input channels/group."""
  rhs = eqn.invars[1].aval.shape
  out = eqn.outvars[0].aval.shape
  dn = eqn.params['dimension_numbers']
  window = math.prod(rhs[d] for d in dn.rhs_spec[2:])
  # rhs's input-feature dim already holds C_in / feature_group_count.
  return math.prod(out) * window * rhs[dn.rhs_spec[1]]


def dot_macs(eqn) -> int:
  """MACs of a dot_general: output elements x contracted size."""
  (lhs_contract, _), _ = eqn.params['dimension_numbers']
  lhs = eqn.invars[0].aval.shape
  return math.prod(eqn.outvars[0].aval.shape) * math.prod(
      lhs[d] for d in lhs_contract)


def sub_jaxprs(eqn):
  """Yields (jaxpr, multiplicity) for every sub-jaxpr of an equation."""
  times = eqn.params.get('length', 1) if eqn.primitive.name == 'scan' else 1
  for value in eqn.params.values():
    items = value if isinstance(value, (tuple, list)) else (value,)
    for item in items:
      if isinstance(item, jex_core.ClosedJaxpr):
        yield item.jaxpr, times
      elif isinstance(item, jex_core.Jaxpr):
        yield item, times


def jaxpr_macs(jaxpr) -> int:
  """MACs of a jaxpr. `cond` counts its most expensive branch."""
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == 'conv_general_dilated':
      total += conv_macs(eqn)
    elif name == 'dot_general':
      total += dot_macs(eqn)
    elif name == 'cond':
      total += max(jaxpr_macs(b.jaxpr) for b in eqn.params['branches'])
    else:
      # custom_vjp keeps its forward as `call_jaxpr` and the backward as
      # thunks/callables, so only the forward is counted.
      total += sum(jaxpr_macs(sub) * times for sub, times in sub_jaxprs(eqn))
  return total


def count(apply_fn: Callable[..., Any], variables: Any, *args: Any,
          **kwargs: Any) -> Counts:
  """Counts the MACs of `apply_fn(variables, *args, **kwargs)` and params.

  Args:
    apply_fn: e.g. `model.apply`.
    variables: the variables pytree (arrays or `jax.ShapeDtypeStruct`s).
    *args: positional inputs (arrays or `jax.ShapeDtypeStruct`s).
    **kwargs: keyword arguments, e.g. `train=False`; they are static.

  Returns:
    `Counts(macs, params)`.
  """
  closed = jax.make_jaxpr(lambda v, *a: apply_fn(v, *a, **kwargs))(
      variables, *args)
  return Counts(macs=jaxpr_macs(closed.jaxpr),
                params=variables_lib.count(variables))
