"""Sharded data-parallel training and evaluation of a zoo model.

One process per host; within it, `jax.jit` over a 1-D `('data',)` mesh of
all devices: parameters and optimizer state replicated (`P()`), batches
split along the batch axis (`P('data')`). BatchNorm statistics are computed
over the global batch. No pmap.
"""
import dataclasses
import functools
import json
import os
import time
from typing import Any

from absl import logging
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxprune import checkpoint, data, flops, methods, models, optim, slim
from jaxprune import structure, writers
from jaxprune import config as config_lib
from jaxprune.errors import JaxpruneError, check_choice


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  train_seconds: jax.Array  # Wall time spent training, summed over resumes.


def maybe_initialize_distributed(config: ml_collections.ConfigDict) -> None:
  """Starts jax.distributed when the config or the environment asks for it.

  SLURM, Open MPI and TPU pods are auto-detected by JAX. Elsewhere set
  JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID (see
  launch/local_multiprocess.sh).
  """
  env = os.environ
  multi = int(env.get('SLURM_NTASKS', env.get('OMPI_COMM_WORLD_SIZE',
                                              env.get('JAX_NUM_PROCESSES', 1))))
  if not (config.distributed or multi > 1):
    return
  if jax.distributed.is_initialized():
    return
  kwargs = {}
  if 'JAX_COORDINATOR_ADDRESS' in env:
    kwargs['coordinator_address'] = env['JAX_COORDINATOR_ADDRESS']
  if 'JAX_NUM_PROCESSES' in env:
    kwargs['num_processes'] = int(env['JAX_NUM_PROCESSES'])
  if 'JAX_PROCESS_ID' in env:
    kwargs['process_id'] = int(env['JAX_PROCESS_ID'])
  if env.get('JAX_PLATFORMS', '') == 'cpu':
    # CPU processes exchange collectives through gloo.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(**kwargs)


def make_mesh() -> Mesh:
  return Mesh(np.array(jax.devices()), ('data',))


def check_batch(batch_size: int, what: str = 'batch_size') -> None:
  n = jax.device_count()
  if batch_size <= 0 or batch_size % n:
    raise JaxpruneError(f'{what}={batch_size} is not divisible by the {n} '
                        f'devices; allowed: a positive multiple of {n}.')


def build_model(config: ml_collections.ConfigDict, num_classes: int):
  overrides = dict(config.model_overrides)
  if config.half_precision:
    overrides['dtype'] = jnp.bfloat16
  return models.create(config.model, num_classes, **overrides)


def cross_entropy(logits, labels, num_classes: int, smoothing: float):
  onehot = jax.nn.one_hot(labels, num_classes)
  if smoothing:
    onehot = optax.smooth_labels(onehot, smoothing)
  return optax.softmax_cross_entropy(logits, onehot).mean()


def train_step(state: TrainState, batch, rng, *, model, tx, spec, config,
               forward=None):
  """One SGD step; returns the new state and summed metrics.

  `forward(params, opt_state)`, when given, maps the trained weights to the
  ones the model runs on (e.g. W * M in 'masked_forward' mode), so their
  gradient is taken through it.
  """
  dtype = jnp.bfloat16 if config.half_precision else jnp.float32
  x = data.normalize(batch['image'], spec, dtype)
  rng = jax.random.fold_in(rng, state.step)

  def loss_fn(params):
    if forward is not None:
      params = forward(params, state.opt_state)
    logits, new_vars = model.apply(
        {'params': params, 'batch_stats': state.batch_stats}, x, train=True,
        mutable=['batch_stats'], rngs={'dropout': rng})
    loss = cross_entropy(logits, batch['label'], spec.num_classes,
                         config.label_smoothing)
    return loss, (logits, new_vars.get('batch_stats', {}))

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  correct = jnp.sum(jnp.argmax(logits, -1) == batch['label'])
  new = state.replace(step=state.step + 1, params=params,
                      batch_stats=batch_stats, opt_state=opt_state)
  return new, {'loss': loss, 'correct': correct}


def eval_step(variables, batch, *, apply_fn, spec, dtype):
  """Masked top-1/top-5 correct counts of one padded batch."""
  logits = apply_fn(variables, data.normalize(batch['image'], spec, dtype),
                    train=False)
  k = min(5, logits.shape[-1])
  topk = jax.lax.top_k(logits, k)[1]
  hit = topk == batch['label'][:, None]
  m = batch['mask']
  return {'top1': jnp.sum(hit[:, 0] & m), 'top5': jnp.sum(hit.any(-1) & m),
          'count': jnp.sum(m)}


def evaluate(apply_fn, variables, ds, spec, config, mesh) -> dict[str, float]:
  """Top-1/top-5 accuracy (%) of `apply_fn(variables)` over `ds`."""
  check_batch(config.eval_batch_size, 'eval_batch_size')
  sharding = NamedSharding(mesh, P('data'))
  dtype = jnp.bfloat16 if config.half_precision else jnp.float32
  step = jax.jit(functools.partial(eval_step, apply_fn=apply_fn, spec=spec,
                                   dtype=dtype))
  totals = None
  for batch in data.eval_batches(ds, spec, config.eval_batch_size,
                                 config.data_threads):
    batch = jax.tree.map(
        lambda a: jax.make_array_from_process_local_data(sharding, a), batch)
    out = step(variables, batch)
    totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
  totals = jax.device_get(totals)
  n = max(int(totals['count']), 1)
  return {'top1': 100.0 * int(totals['top1']) / n,
          'top5': 100.0 * int(totals['top5']) / n}


def trace_model(model, shape):
  """(abstract variables, channel graph) of `model` on inputs of `shape`."""
  abstract = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros(shape, jnp.float32), train=False))
  graph = structure.trace(model.apply, abstract,
                          jax.ShapeDtypeStruct(shape, jnp.float32),
                          train=False)
  return abstract, graph


def make_pruner(config, model, shape):
  """(pruner, channel graph) of `config.method`; (None, None) when dense."""
  check_choice('method', config.method, methods.METHODS)
  if config.method == 'none':
    return None, None
  abstract, graph = trace_model(model, shape)
  pruner = methods.create(config, graph, abstract['params'],
                          config.num_epochs, logging.info)
  return pruner, graph


def slim_and_evaluate(model, graph, channel_masks, variables, dense_counts,
                      shape, test_ds, spec, config, mesh, workdir,
                      export: bool = True):
  """Slims the pruned network, evaluates it and returns the results fields.

  Returns:
    dense_macs, pruned_macs, flops_reduction, dense_params, pruned_params,
    params_reduction, widths (kept/total per pruned group) and the slimmed
    network's slim_top1/slim_top5.
  """
  variables = jax.device_get(variables)
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  slim_vars, slim_apply = slim.slim(model.apply, variables, graph,
                                    channel_masks, x, train=False)
  counts = flops.count(slim_apply, slim_vars, x)
  ev = evaluate(lambda v, x, train=False: slim_apply(v, x), slim_vars,
                test_ds, spec, config, mesh)
  logging.info('slimmed network: %s MACs (%.2f%% removed), %s params '
               '(%.2f%% removed); test top1 %.2f%% top5 %.2f%%',
               f'{counts.macs:,}', 100 * (1 - counts.macs / dense_counts.macs),
               f'{counts.params:,}',
               100 * (1 - counts.params / dense_counts.params), ev['top1'],
               ev['top5'])
  if export and jax.process_index() == 0:
    path = slim.export(slim_apply, slim_vars, jnp.zeros(shape, jnp.float32),
                       path=os.path.join(workdir, 'slim'))
    logging.info('slimmed network exported to %s', path)
  return {
      'dense_macs': dense_counts.macs, 'pruned_macs': counts.macs,
      'flops_reduction': 1 - counts.macs / dense_counts.macs,
      'dense_params': dense_counts.params, 'pruned_params': counts.params,
      'params_reduction': 1 - counts.params / dense_counts.params,
      'widths': {g: [int(np.sum(m)), int(np.size(m))]
                 for g, m in channel_masks.items()},
      'slim_top1': ev['top1'], 'slim_top5': ev['top5'],
  }


def _fmt_time(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


@dataclasses.dataclass
class Setup:
  """What every training loop shares: devices, data, model and shardings."""
  config: ml_collections.ConfigDict
  spec: Any
  model: Any
  train_ds: Any
  val_ds: Any
  test_ds: Any
  steps_per_epoch: int
  mesh: Mesh
  replicated: NamedSharding
  batch_sharding: NamedSharding
  shape: tuple[int, ...]  # One input example, batch 1.
  meta: dict[str, Any]


def setup(config: ml_collections.ConfigDict, workdir: str,
          **meta: Any) -> Setup:
  """Validates the config, starts multi-host JAX and opens the data.

  Stops, before anything is written, when `workdir` holds checkpoints of a
  different run (model, dataset, overrides and the extra `meta`).
  """
  if not workdir:
    raise JaxpruneError('--workdir is required.')
  config_lib.validate(config)
  maybe_initialize_distributed(config)
  if jax.process_index():
    logging.set_verbosity(logging.WARNING)  # Progress from process 0 only.
  check_batch(config.batch_size)
  check_batch(config.eval_batch_size, 'eval_batch_size')
  spec = data.get_spec(config.dataset)
  model = build_model(config, spec.num_classes)
  meta = {'model': config.model, 'dataset': config.dataset,
          'model_overrides': json.loads(json.dumps(
              config.model_overrides.to_dict(), default=str)), **meta}
  checkpoint.check_workdir(workdir, meta)
  train_ds, val_ds, test_ds = data.split_source(
      config.dataset, config.data_dir, config.validation_size)
  steps_per_epoch = data.steps_per_epoch(train_ds, config.batch_size)
  if not steps_per_epoch:
    raise JaxpruneError(f'batch_size={config.batch_size} is larger than the '
                        f'{len(train_ds)} training examples.')
  mesh = make_mesh()
  logging.info('%d devices, %d processes; %d train / %s val / %d test examples;'
               ' %d steps per epoch.', jax.device_count(), jax.process_count(),
               len(train_ds), len(val_ds) if val_ds else 0, len(test_ds),
               steps_per_epoch)
  return Setup(config, spec, model, train_ds, val_ds, test_ds,
               steps_per_epoch, mesh, NamedSharding(mesh, P()),
               NamedSharding(mesh, P('data')),
               (1, spec.image_size, spec.image_size, spec.channels), meta)


def shard_batch(su: Setup, batch):
  return jax.tree.map(
      lambda a: jax.make_array_from_process_local_data(su.batch_sharding, a),
      batch)


def train_epoch(su: Setup, state, step_fn, epoch: int, *, rng, writer,
                schedule, num_epochs: int, step_base: int = 0,
                total_steps: int | None = None, prefix: str = '',
                seed: int | None = None):
  """Trains one epoch, logging every `log_every_steps` and at its end.

  Args:
    su: the run's `Setup`.
    state: the train state (`step` counts this loop's steps).
    step_fn: jitted `(state, batch, rng) -> (state, metrics)`.
    epoch: 0-based epoch of this loop.
    rng: dropout key.
    writer: the metrics writer.
    schedule: the learning-rate schedule (for the log).
    num_epochs: epochs of this loop (for the log).
    step_base: added to logged steps (a state loop's earlier states).
    total_steps: logged step of the run's end (for the ETA).
    prefix: printed before each progress line.
    seed: data-order seed (default `config.seed`).

  Returns:
    The new state.
  """
  config, spe = su.config, su.steps_per_epoch
  total = total_steps or step_base + num_epochs * spe
  window, acc_metrics, seen = time.time(), None, 0
  for i, batch in enumerate(data.train_batches(
      su.train_ds, su.spec, config.batch_size,
      config.seed if seed is None else seed, epoch, config.data_threads)):
    state, m = step_fn(state, shard_batch(su, batch), rng)
    acc_metrics = m if acc_metrics is None else jax.tree.map(
        jnp.add, acc_metrics, m)
    seen += 1
    local = epoch * spe + i + 1
    if local % config.log_every_steps == 0 or i + 1 == spe:
      got = jax.device_get(acc_metrics)
      acc_metrics = None
      rate = seen / max(time.time() - window, 1e-9)
      loss = float(got['loss']) / seen
      acc = 100.0 * int(got['correct']) / (seen * config.batch_size)
      lr = float(schedule(local))
      eta = (total - step_base - local) / max(rate, 1e-9)
      logging.info('%sepoch %d/%d step %d/%d loss %.4f acc %.2f%% '
                   '%.2f steps/s lr %.4g ETA %s', prefix, epoch + 1,
                   num_epochs, step_base + local, total, loss, acc, rate, lr,
                   _fmt_time(eta))
      writer.write(step_base + local, 'train', epoch=epoch + 1, loss=loss,
                   accuracy=acc, steps_per_second=rate, learning_rate=lr)
      window, seen = time.time(), 0
  return state


def save_state(su: Setup, mgr, state, seconds: float):
  """Saves `state` with `train_seconds` = seconds; returns the saved state."""
  # A globally replicated scalar, so that multi-host saves accept it.
  state = state.replace(train_seconds=jax.make_array_from_process_local_data(
      su.replicated, np.float32(seconds)))
  checkpoint.save(mgr, int(state.step), state)
  return state


def write_json(workdir: str, name: str, obj: Any) -> None:
  """Writes `<workdir>/<name>` from process 0, atomically (no torn file)."""
  if jax.process_index():
    return
  path = os.path.join(workdir, name)
  with open(path + '.tmp', 'w') as f:
    json.dump(obj, f, indent=1)
  os.replace(path + '.tmp', path)


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> dict[str, Any]:
  """Trains `config.model` on `config.dataset`; writes results.json.

  Rerunning with the same workdir resumes from the newest checkpoint; the
  final parameters equal those of an uninterrupted run. The state-loop
  methods (imp, refill, rsst) run `jaxprune.methods.states.run`.

  Returns:
    The results dict that is also written to `<workdir>/results.json`.
  """
  from jaxprune.methods import states  # pylint: disable=g-import-not-at-top
  if config.method in states.METHODS:
    return states.run(config, workdir)
  su = setup(config, workdir)
  model, shape, replicated = su.model, su.shape, su.replicated

  # ---- Model, optimizer and state ------------------------------------------
  tx, schedule = optim.create(config, su.steps_per_epoch)
  pruner, graph = make_pruner(config, model, shape)
  if pruner is not None:
    tx = pruner.wrap(tx)

  def init(rng):
    variables = model.init(rng, jnp.zeros(shape, jnp.float32), train=False)
    params = variables['params']
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get('batch_stats', {}),
                      opt_state=tx.init(params),
                      train_seconds=jnp.zeros((), jnp.float32))

  state = jax.jit(init, out_shardings=replicated)(jax.random.key(config.seed))
  counts = flops.count(model.apply, {'params': state.params,
                                     'batch_stats': state.batch_stats},
                       jax.ShapeDtypeStruct(shape, jnp.float32), train=False)
  logging.info('%s: %s params, %s MACs per example.', config.model,
               f'{counts.params:,}', f'{counts.macs:,}')

  os.makedirs(workdir, exist_ok=True)
  mgr = checkpoint.manager(workdir, config.keep_checkpoints)
  restored = checkpoint.restore_latest(mgr, state)
  if restored is not None:
    state = restored
    logging.info('Resumed from step %d in %s.', int(state.step), workdir)
  checkpoint.write_meta(workdir, su.meta)
  writer = writers.MetricWriter(workdir)

  step_fn = jax.jit(
      functools.partial(train_step, model=model, tx=tx, spec=su.spec,
                        config=config),
      donate_argnums=0, out_shardings=(replicated, replicated))
  dropout_rng = jax.random.key(config.seed + 1)

  # ---- Training loop --------------------------------------------------------
  first_epoch = first_epoch_of(state, su.steps_per_epoch)
  carried_seconds = float(state.train_seconds)
  t0 = time.time()
  prune_key = jax.random.key(config.seed + 2)
  for epoch in range(first_epoch, config.num_epochs):
    if pruner is not None and pruner.is_event(epoch):
      params, opt_state, info = pruner.event(
          state.params, state.opt_state, epoch,
          jax.random.fold_in(prune_key, epoch))
      state = state.replace(params=params, opt_state=opt_state)
      writer.write(int(state.step), 'prune', epoch=epoch, **info)
    state = train_epoch(su, state, step_fn, epoch, rng=dropout_rng,
                        writer=writer, schedule=schedule,
                        num_epochs=config.num_epochs)
    last = epoch + 1 == config.num_epochs
    if pruner is not None:
      info = pruner.epoch_end(state.params, state.opt_state, epoch)
      if info:
        logging.info('epoch %d %s', epoch + 1, ' '.join(
            f'{k} {v:.4f}' for k, v in info.items()))
        writer.write(int(state.step), 'coverage', epoch=epoch + 1, **info)
    if su.val_ds is not None and ((epoch + 1) % config.eval_every_epochs == 0
                                  or last):
      ev = evaluate(model.apply, {'params': state.params,
                                  'batch_stats': state.batch_stats},
                    su.val_ds, su.spec, config, su.mesh)
      logging.info('epoch %d validation top1 %.2f%% top5 %.2f%%', epoch + 1,
                   ev['top1'], ev['top5'])
      writer.write(int(state.step), 'validation', epoch=epoch + 1, **ev)
    if (epoch + 1) % config.checkpoint_every_epochs == 0 or last:
      state = save_state(su, mgr, state, carried_seconds + time.time() - t0)
  mgr.wait_until_finished()
  train_seconds = carried_seconds + (time.time() - t0 if first_epoch <
                                     config.num_epochs else 0.0)

  # ---- Final evaluation and results -----------------------------------------
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  ev = evaluate(model.apply, variables, su.test_ds, su.spec, config, su.mesh)
  logging.info('test top1 %.2f%% top5 %.2f%%', ev['top1'], ev['top5'])
  writer.write(int(state.step), 'test', **ev)
  pruned = {}
  if pruner is not None:
    pruned = slim_and_evaluate(model, graph, pruner.channel_masks(
        state.opt_state), variables, counts, shape, su.test_ds, su.spec,
                               config, su.mesh, workdir,
                               export=config.reprune.export)
    writer.write(int(state.step), 'slim_test', top1=pruned['slim_top1'],
                 top5=pruned['slim_top5'])
  writer.close()
  results = {
      'dataset': config.dataset, 'model': config.model,
      'top1': ev['top1'], 'top5': ev['top5'],
      'macs': counts.macs, 'params': counts.params,
      'train_seconds': round(float(train_seconds), 3),
      'steps': int(state.step), 'epochs': config.num_epochs,
      'devices': jax.device_count(),
      'config': json.loads(config.to_json_best_effort()),
      **pruned,
  }
  write_json(workdir, 'results.json', results)
  mgr.close()
  return results


def first_epoch_of(state, steps_per_epoch: int) -> int:
  """The epoch a restored state resumes at; raises off an epoch boundary."""
  step = int(state.step)
  if step % steps_per_epoch:
    raise JaxpruneError(f'Checkpoint step {step} is not at an epoch '
                        f'boundary of {steps_per_epoch} steps; the batch size '
                        'or dataset changed. Use another --workdir.')
  return step // steps_per_epoch
