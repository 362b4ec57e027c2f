"""The train state, the jitted train and eval steps, and one epoch.

Everything task-specific (inputs, loss, metrics) comes from the run's
`jaxprune.tasks` task; everything method-specific arrives as an optax
transformation (`tx`) and an optional `forward(params, opt_state)` map.
"""
import functools
import time
from typing import Any, Callable

from absl import logging
import flax
import jax
import jax.numpy as jnp
import optax

from jaxprune import structure
from jaxprune.engine.setup import Setup, check_batch
from jaxprune.errors import Diverged, Interrupted


_NEVER = 2 ** 31 - 1  # No non-finite loss in the window.
# Set by `jaxprune.engine.loop`'s SIGINT/SIGTERM handler: the signal number.
STOP = {'signal': None}


def _combine(a, b):
  """Sums window metrics; the first non-finite step is a minimum."""
  out = jax.tree.map(jnp.add, a, b)
  out['first_nonfinite'] = jnp.minimum(a['first_nonfinite'],
                                       b['first_nonfinite'])
  return out


@flax.struct.dataclass
class TrainState:
  """A phase's train state, checkpointed whole."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  train_seconds: jax.Array  # Wall time spent training, summed over resumes.
  # [best validation metric, test metric and its second value at it, its
  # epoch (1-based; 0: none yet)]; used by phases that track the best epoch.
  best: jax.Array


def compute_dtype(config):
  return jnp.bfloat16 if config.half_precision else jnp.float32


def train_apply(model):
  """`(variables, x, rng) -> (outputs, {'batch_stats': ...})` in train mode."""
  return lambda v, x, rng: model.apply(
      v, x, train=True, mutable=['batch_stats'], rngs={'dropout': rng})


def train_step(state: TrainState, batch, rng, *, model, tx, task, config,
               forward=None, apply=None):
  """One optimizer step; returns the new state and summed metrics.

  `forward(params, opt_state)`, when given, maps the trained weights to the
  ones the model runs on (e.g. W * M in 'masked_forward' mode), so their
  gradient is taken through it. `apply` replaces `train_apply(model)`
  (e.g. the slimmed network's train-mode forward pass).
  """
  apply = train_apply(model) if apply is None else apply
  x = task.inputs(batch, compute_dtype(config))
  rng = jax.random.fold_in(rng, state.step)
  x, batch = task.mix(x, batch, jax.random.fold_in(rng, 1))

  def loss_fn(params):
    if forward is not None:
      params = forward(params, state.opt_state)
    outputs, new_vars = apply(
        {'params': params, 'batch_stats': state.batch_stats}, x, rng)
    loss = task.loss(outputs, batch, train=True)
    return loss, (outputs, new_vars.get('batch_stats', {}))

  (loss, (outputs, batch_stats)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  # Divergence is checked where the metrics are read (no per-step sync):
  # a count of non-finite losses and the first step that had one.
  bad = ~jnp.isfinite(loss)
  metrics = {'loss': loss, **task.train_metrics(outputs, batch),
             'nonfinite': bad.astype(jnp.int32),
             'first_nonfinite': jnp.where(bad, state.step + 1, _NEVER)}
  new = state.replace(step=state.step + 1, params=params,
                      batch_stats=batch_stats, opt_state=opt_state)
  return new, metrics


def evaluate(su: Setup, apply_fn, variables, ds) -> dict[str, float]:
  """The task's metrics of `apply_fn(variables)` over the source `ds`."""
  config, task = su.config, su.task
  check_batch(config.eval_batch_size, 'eval_batch_size')
  dtype = compute_dtype(config)

  @jax.jit
  def step(variables, batch):
    outputs = apply_fn(variables, task.inputs(batch, dtype), train=False)
    return task.eval_metrics(outputs, batch)

  totals = None
  for batch in task.eval_batches(ds, config.eval_batch_size):
    out = step(variables, su.shard(batch))
    totals = out if totals is None else task.combine(totals, out)
  return task.finalize(jax.device_get(totals))


def trace_model(model, shape):
  """(abstract variables, channel graph) of `model` on inputs of `shape`."""
  abstract = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros(shape, jnp.float32), train=False))
  graph = structure.trace(model.apply, abstract,
                          jax.ShapeDtypeStruct(shape, jnp.float32),
                          train=False)
  return abstract, graph


def fmt_time(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


def train_epoch(su: Setup, state, step_fn: Callable, epoch: int, *, rng,
                writer, schedule, num_epochs: int, seed: int,
                step_base: int = 0, total_steps: int | None = None,
                prefix: str = '', first: bool = False,
                last_loss: list | None = None):
  """Trains one epoch, logging every `log_every_steps` and at its end.

  Args:
    su: the run's `Setup`.
    state: the train state (`step` counts this phase's steps).
    step_fn: jitted `(state, batch, rng) -> (state, metrics)`.
    epoch: 0-based epoch of this phase.
    rng: dropout key.
    writer: the metrics writer.
    schedule: the learning-rate schedule (for the log).
    num_epochs: epochs of this phase (for the log).
    seed: data-order seed.
    step_base: added to logged steps (the run's earlier phases).
    total_steps: logged step of the run's end (for the ETA).
    prefix: printed before each progress line.
    first: the epoch's first step compiles (kept out of rate and ETA).
    last_loss: a one-element list holding the last logged finite loss
      (updated; for the divergence message).

  Returns:
    The new state.

  Raises:
    Diverged: a step had a non-finite loss (checked when metrics are read,
      at every log line and at the end of the epoch, so before any
      checkpoint of a diverged state).
    Interrupted: SIGINT or SIGTERM arrived (`STOP`).
  """
  last_loss = [None] if last_loss is None else last_loss
  config, spe = su.config, su.steps_per_epoch
  total = total_steps or step_base + num_epochs * spe
  window, acc_metrics, seen = time.time(), None, 0
  compiling, skip = first, 0
  for i, batch in enumerate(su.task.train_batches(
      su.train_ds, config.batch_size, seed, epoch)):
    state, m = step_fn(state, su.shard(batch), rng)
    local = epoch * spe + i + 1
    if compiling:
      # The first step compiles: keep it out of the rate and the ETA.
      jax.block_until_ready(m)
      window, compiling, skip = time.time(), False, 1
    acc_metrics = m if acc_metrics is None else _combine(acc_metrics, m)
    seen += 1
    if STOP['signal'] is not None:
      raise Interrupted(step_base + local, STOP['signal'])
    if local % config.log_every_steps == 0 or i + 1 == spe:
      got = jax.device_get(acc_metrics)
      acc_metrics = None
      bad, first_bad = int(got.pop('nonfinite')), int(
          got.pop('first_nonfinite'))
      if bad:
        last = (f'last finite loss {last_loss[0]:.4f}' if last_loss[0]
                is not None else 'no finite loss logged before')
        raise Diverged(
            f'training diverged: non-finite loss at step '
            f'{step_base + first_bad} (epoch {epoch + 1}); {last}. Nothing '
            'was written after the last checkpoint; lower the learning '
            'rate or check the data.')
      timed = seen - skip
      elapsed = time.time() - window
      rate = timed / max(elapsed, 1e-9) if timed else None
      loss = float(got.pop('loss')) / seen
      last_loss[0] = loss
      extra = su.task.train_log(got, seen * config.batch_size)
      lr = float(schedule(local))
      eta = ('compiling...' if rate is None else
             fmt_time((total - step_base - local) / max(rate, 1e-9)))
      logging.info('%sepoch %d/%d step %d/%d loss %.4f%s %s steps/s lr '
                   '%.4g ETA %s', prefix, epoch + 1, num_epochs,
                   step_base + local, total, loss,
                   ''.join(f' {k} {v:.2f}' for k, v in extra.items()),
                   '-' if rate is None else f'{rate:.2f}', lr, eta)
      writer.write(step_base + local, 'train', epoch=epoch + 1, loss=loss,
                   **extra, steps_per_second=rate or 0.0, learning_rate=lr)
      window, seen, skip = time.time(), 0, 0
  return state


def jit_train_step(su: Setup, tx, forward=None, apply=None):
  """The jitted, donating train step of a phase."""
  return jax.jit(
      functools.partial(train_step, model=su.model, tx=tx, task=su.task,
                        config=su.config, forward=forward, apply=apply),
      donate_argnums=0, out_shardings=(su.replicated, su.replicated))
