"""RSST's regularisation ramp (methods.md 3.4).

During state k >= 1 the weights that the Refill structure would drop get an
extra gradient lambda(t) * w, added after backprop and before the optimizer
(like an L2 penalty); at the end of the state the structure is applied hard.
`lam` gives lambda after `step` regulariser updates of a ramp of `total`
updates (the ramp spans a state, or one epoch).

The public reference code (zjgxwl/RSST) differs: a gate
`g * batch_index < 1` leaves lambda near 1e-11, so its regulariser is in
effect off, and its RSST trains dense and discards the trained weights.
jaxprune implements the method as designed.
"""
import math

import jax.numpy as jnp

SCHEDULES = ('x', 'x^2', 'x^3', 'exp', 'exp_custom_exponents')


def lam(schedule: str, step, total: int, granularity: float = 1.0,
        exponents: int = 4):
  """lambda after `step` updates (0 <= step <= total); jittable in `step`.

  Args:
    schedule: 'x' (lambda += g per update), 'x^2' / 'x^3' (r += g,
      lambda = r^2 / r^3), 'exp' (r += g, lambda = e^r) or
      'exp_custom_exponents' (lambda = g (exp(t^n) - 1) / (e - 1), t =
      step / total).
    step: updates taken in the ramp.
    total: updates in the whole ramp.
    granularity: g (`reg_granularity_prune`).
    exponents: n (`exponents`).

  Returns:
    lambda (float32).
  """
  if schedule not in SCHEDULES:
    raise ValueError(f'schedule={schedule!r}; allowed: '
                     f'{", ".join(SCHEDULES)}.')
  if total < 1:
    raise ValueError(f'total={total}; allowed: an int >= 1.')
  k = jnp.asarray(step, jnp.float32)
  r = granularity * k
  if schedule == 'x':
    return r
  if schedule == 'x^2':
    return r ** 2
  if schedule == 'x^3':
    return r ** 3
  if schedule == 'exp':
    return jnp.exp(r)
  t = jnp.clip(k / total, 0.0, 1.0)
  return granularity * jnp.expm1(t ** exponents) / (math.e - 1)


def regularise(grads, params, outside, lam_value):
  """grads + lambda * w on the weights outside the structure (bool masks)."""
  import jax  # pylint: disable=g-import-not-at-top
  return jax.tree.map(
      lambda g, w, m: g + lam_value * w * jnp.asarray(m, w.dtype), grads,
      params, outside)
