"""What every run shares: devices and mesh, the task's data, the model.

One process per host; within it, `jax.jit` over a 1-D `('data',)` mesh of
all devices: parameters and optimizer state replicated (`P()`), batches
split along the batch axis (`P('data')`). No pmap. Multi-host runs start
`jax.distributed` first.
"""
import dataclasses
import json
import os
import tempfile
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxprune import checkpoint, models
from jaxprune import config as config_lib
from jaxprune.errors import JaxpruneError
from jaxprune.tasks import base as tasks_base


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


def build_model(config: ml_collections.ConfigDict, num_outputs: int):
  overrides = dict(config.model_overrides)
  if config.half_precision:
    overrides['dtype'] = jnp.bfloat16
  return models.create(config.model, num_outputs, **overrides)


def check_writable(workdir: str) -> None:
  """Raises, writing nothing, when `workdir` cannot be created or written."""
  path = os.path.abspath(workdir)
  if os.path.exists(path) and not os.path.isdir(path):
    raise JaxpruneError(f'--workdir={workdir} is a file; allowed: a '
                        'directory, or a path where one can be created.')
  probe = path
  while not os.path.exists(probe):
    probe = os.path.dirname(probe)
  if not os.path.isdir(probe):
    raise JaxpruneError(f'--workdir={workdir} cannot be created: {probe} is '
                        'a file.')
  if not os.access(probe, os.W_OK | os.X_OK):
    raise JaxpruneError(f'--workdir={workdir} cannot be written: {probe} is '
                        'read-only.')
  if jax.process_index() == 0:
    try:  # Permissions can hide a read-only file system: try a real write.
      with tempfile.TemporaryFile(dir=probe):
        pass
    except OSError as e:
      raise JaxpruneError(f'--workdir={workdir} cannot be written: {probe}: '
                          f'{e.strerror}.') from e


@dataclasses.dataclass
class Setup:
  """Devices, data, task, model and shardings of one run."""
  config: ml_collections.ConfigDict
  task: tasks_base.Task
  model: Any
  train_ds: Any
  val_ds: Any
  test_ds: Any
  steps_per_epoch: int
  mesh: Mesh
  replicated: NamedSharding
  batch_sharding: NamedSharding
  shape: tuple[int, ...]  # One model input, batch 1.
  meta: dict[str, Any]

  def shard(self, batch):
    """This process's part of a global batch -> a global sharded array."""
    return jax.tree.map(
        lambda a: jax.make_array_from_process_local_data(
            self.batch_sharding, a), batch)


def setup(config: ml_collections.ConfigDict, workdir: str,
          **meta: Any) -> Setup:
  """Validates the config, starts multi-host JAX and opens the data.

  Stops, before anything is written, when `workdir` holds checkpoints of a
  different run (model, dataset, overrides, method and the extra `meta`).
  """
  if not workdir:
    raise JaxpruneError('--workdir is required.')
  config_lib.validate(config)
  maybe_initialize_distributed(config)
  if jax.process_index():
    logging.set_verbosity(logging.WARNING)  # Progress from process 0 only.
  check_batch(config.batch_size)
  check_batch(config.eval_batch_size, 'eval_batch_size')
  task = tasks_base.get(config.task)(config)
  model = build_model(config, task.num_outputs())
  meta = {'model': config.model, 'dataset': config.dataset,
          'model_overrides': json.loads(json.dumps(
              config.model_overrides.to_dict(), default=str)), **meta,
          'config': json.loads(config.to_json_best_effort())}
  check_writable(workdir)
  checkpoint.check_workdir(workdir, meta, config_lib.NEUTRAL,
                           json.loads(config_lib.base().to_json_best_effort()))
  train_ds, val_ds, test_ds = task.splits()
  steps_per_epoch = len(train_ds) // config.batch_size
  if not steps_per_epoch:
    raise JaxpruneError(f'batch_size={config.batch_size} is larger than the '
                        f'{len(train_ds)} training examples.')
  mesh = make_mesh()
  logging.info('%d devices, %d processes; %d train / %s val / %d test examples;'
               ' %d steps per epoch.', jax.device_count(), jax.process_count(),
               len(train_ds), len(val_ds) if val_ds else 0, len(test_ds),
               steps_per_epoch)
  return Setup(config, task, model, train_ds, val_ds, test_ds,
               steps_per_epoch, mesh, NamedSharding(mesh, P()),
               NamedSharding(mesh, P('data')), task.input_shape(), meta)
