"""Optimizers and learning-rate schedules built from a config.

Weight decay is either *coupled* (added to the gradient before momentum or
Adam, as PyTorch's `SGD(weight_decay=...)` and `Adam(weight_decay=...)`) or
*decoupled* (added to the update after momentum/Adam and scaled by the
learning rate, as `AdamW`).
"""
from typing import Any

import jax
import ml_collections
import optax

from jaxprune.errors import check_choice

OPTIMIZERS = ('sgd', 'momentum', 'nesterov', 'adamw')
SCHEDULES = ('cosine', 'multistep', 'constant')
DECAY_MODES = ('coupled', 'decoupled')


def learning_rate_schedule(config: ml_collections.ConfigDict,
                           steps_per_epoch: int,
                           num_epochs: int | None = None) -> optax.Schedule:
  """Linear warmup from 0 over `warmup_epochs`, then the main schedule over
  `num_epochs` (default `config.num_epochs`)."""
  check_choice('schedule', config.schedule, SCHEDULES)
  base = config.learning_rate
  total = (num_epochs or config.num_epochs) * steps_per_epoch
  warmup = int(config.warmup_epochs * steps_per_epoch)
  if config.schedule == 'cosine':
    main = optax.cosine_decay_schedule(base, max(1, total - warmup))
  elif config.schedule == 'multistep':
    main = optax.piecewise_constant_schedule(base, {
        int(m * steps_per_epoch) - warmup: config.lr_gamma
        for m in config.lr_milestones})
  else:
    main = optax.constant_schedule(base)
  if not warmup:
    return main
  return optax.join_schedules(
      [optax.linear_schedule(0.0, base, warmup), main], [warmup])


def decay_mask(params: Any, include_norm_bias: bool) -> Any:
  """True on leaves that get weight decay (all, or only kernels with ndim > 1)."""
  return jax.tree.map(lambda p: include_norm_bias or p.ndim > 1, params)


def create(config: ml_collections.ConfigDict, steps_per_epoch: int,
           num_epochs: int | None = None
           ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Builds the optimizer named by `config.optimizer`.

  Args:
    config: the experiment config (fields optimizer, learning_rate, momentum,
      adam_b1, adam_b2, weight_decay, weight_decay_mode,
      weight_decay_norm_bias, schedule, warmup_epochs, lr_milestones,
      lr_gamma, num_epochs).
    steps_per_epoch: optimizer steps in one epoch.
    num_epochs: epochs the schedule spans (default `config.num_epochs`).

  Returns:
    (transformation, learning-rate schedule).
  """
  check_choice('optimizer', config.optimizer, OPTIMIZERS)
  check_choice('weight_decay_mode', config.weight_decay_mode, DECAY_MODES)
  schedule = learning_rate_schedule(config, steps_per_epoch, num_epochs)
  if config.optimizer == 'adamw':
    core = optax.scale_by_adam(config.adam_b1, config.adam_b2)
  elif config.optimizer == 'sgd':
    core = optax.identity()
  else:
    core = optax.trace(decay=config.momentum,
                       nesterov=config.optimizer == 'nesterov')
  parts = [core]
  if config.weight_decay:
    decay = optax.add_decayed_weights(
        config.weight_decay,
        mask=lambda p: decay_mask(p, config.weight_decay_norm_bias))
    parts.insert(0 if config.weight_decay_mode == 'coupled' else 1, decay)
  parts.append(optax.scale_by_learning_rate(schedule))
  return optax.chain(*parts), schedule
