"""RSST: the next Refill structure reached by regularisation.

Regularised sparse structure training (RSST; public code zjgxwl/RSST, a
fork of VITA-Group/Structure-LTH). `--config.method=rsst`.

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
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxprune.methods import base, refill, states

SCHEDULES = states.SCHEDULES


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
  return jax.tree.map(
      lambda g, w, m: g + lam_value * w * jnp.asarray(m, w.dtype), grads,
      params, outside)


class RampState(NamedTuple):
  count: jax.Array  # Updates taken in this state.


def transform(outside: Any, schedule: str = 'exp_custom_exponents',
              total: int = 1, granularity: float = 1.0, exponents: int = 4,
              period: int | None = None) -> optax.GradientTransformation:
  """The RSST regulariser as an optax transformation (chain it first).

  Adds lambda(t) * w to the gradient of every weight where `outside` is
  True, before the optimizer sees the gradient, like an L2 penalty.

  Args:
    outside: bool pytree broadcastable to the params: the weights the
      Refill structure drops.
    schedule, granularity, exponents: as in `lam`.
    total: updates in the ramp (the state's steps by default).
    period: if set, the ramp restarts every `period` updates (per-epoch
      ramps: pass the steps per epoch and total = period).

  Returns:
    An `optax.GradientTransformation`; `optax.chain(transform(...), sgd)`.
  """
  lam(schedule, 0, total, granularity, exponents)  # Validates the args.

  def init_fn(params):
    del params
    return RampState(jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError('rsst.transform needs params in update().')
    step = state.count if period is None else state.count % period
    value = lam(schedule, step, total, granularity, exponents)
    return regularise(updates, params, outside, value), RampState(
        state.count + 1)

  return optax.GradientTransformation(init_fn, update_fn)


@base.register
class RSST(refill.Refill):
  """RSST over the state loop: every weight trains; those outside the next
  Refill structure get lambda(t) w added to their gradient (`transform`,
  chained before the optimizer); the structure is applied hard at every
  evaluation, and the next structure is scored on the trained weights
  before that cut."""

  name = 'rsst'

  def __init__(self, config, ctx):
    super().__init__(config, ctx)
    self.mode = 'regularised'

  def phase(self, k, plan):
    if k == 0:
      return super().phase(k, plan)
    return base.Phase(start='rewind', plan=plan, wrap=self.wrap,
                      masked_eval=True, track_best=True)

  def no_shrink(self, k):
    del k
    return ('every weight trains in an RSST state (the regulariser only '
            'pushes those outside the structure toward 0)')

  def wrap(self, tx, masks):
    cfg, spe = self.cfg, self.ctx.steps_per_epoch
    per_epoch = cfg.ramp == 'epoch'
    outside = jax.tree.map(np.logical_not, masks)
    ramp = transform(
        outside, cfg.reg_schedule,
        total=spe * (1 if per_epoch else self.ctx.num_epochs),
        granularity=cfg.reg_granularity_prune, exponents=cfg.exponents,
        period=spe if per_epoch else None)
    return optax.chain(ramp, tx)
