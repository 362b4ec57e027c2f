"""Small helpers over jaxpr objects: literals, shapes, callees."""
from jax.extend import core as jex_core

CALLS = ('jaxpr', 'call_jaxpr', 'fun_jaxpr')


def sub_jaxpr(eqn):
  """The callee of a call-like equation (jit, remat, custom_jvp/vjp...)."""
  for key in CALLS:
    j = eqn.params.get(key)
    if isinstance(j, jex_core.ClosedJaxpr):
      return j.jaxpr, list(j.consts)
    if isinstance(j, jex_core.Jaxpr):
      return j, []
  return None


def is_literal(v) -> bool:
  return isinstance(v, jex_core.Literal)


def shape(v) -> tuple[int, ...]:
  return tuple(getattr(v.aval, 'shape', ()))

