"""The config schema: every field an experiment config may set.

Experiment configs in `configs/` start from `base()` and override fields.
`base()` holds the generic fields and, for every registered method that
has settings, its sub-dict (`Method.config_name`, `Method.defaults()`),
and likewise every task's (`Task.config_name`, e.g. `detection`), so a
new method or task file brings its own fields. `validate` rejects any field
the schema does not know, naming it and the allowed ones, so a typo never
silently falls back to a default.
"""
import ml_collections

from jaxprune.errors import JaxpruneError
from jaxprune.methods import base as methods_base
from jaxprune.tasks import base as tasks_base

# Sub-dicts whose keys are free-form (model attributes).
FREE_FORM = ('model_overrides',)


def base() -> ml_collections.ConfigDict:
  """Returns the full schema with defaults (a dense run, no pruning)."""
  c = ml_collections.ConfigDict()
  c.seed = 0  # Seed of init, data order, augmentation and dropout.
  c.task = 'classification'  # A task in jaxprune.tasks (loss, metrics, data).
  c.model = 'resnet20'  # A name in jaxprune.models.NAMES.
  c.model_overrides = ml_collections.ConfigDict()  # Extra model attributes.
  c.dataset = 'digits'  # A name in jaxprune.data.NAMES.
  c.data_dir = ''  # TFDS data dir; '' means $TFDS_DATA_DIR or ~/tensorflow_datasets.
  c.validation_size = 0  # Last N train examples held out as validation.
  c.batch_size = 128  # Global batch, divisible by the device count.
  c.eval_batch_size = 256  # Global eval batch, divisible by the device count.
  c.num_epochs = 30  # Training epochs (per phase of a multi-phase method).
  c.optimizer = 'momentum'  # sgd | momentum | nesterov | adamw.
  c.learning_rate = 0.1  # Peak learning rate.
  c.momentum = 0.9  # Momentum of momentum/nesterov.
  c.adam_b1 = 0.9  # Adam beta1.
  c.adam_b2 = 0.999  # Adam beta2.
  c.weight_decay = 5e-4  # Weight-decay factor.
  c.weight_decay_mode = 'coupled'  # coupled (into the gradient) | decoupled.
  c.weight_decay_norm_bias = True  # Also decay 1-D params (norms, biases).
  c.schedule = 'cosine'  # cosine | multistep | constant, after warmup.
  c.warmup_epochs = 0.0  # Linear warmup from 0, in epochs.
  c.lr_milestones = ()  # Epochs at which multistep multiplies by lr_gamma.
  c.lr_gamma = 0.1  # Multistep factor.
  c.label_smoothing = 0.0  # Cross-entropy label smoothing.
  c.mixup = 0.0  # Mixup alpha (a lambda ~ Beta(alpha, alpha) per batch); 0: off.
  c.half_precision = False  # bf16 compute, float32 params and loss.
  c.checkpoint_every_epochs = 1  # Save a checkpoint every N epochs.
  c.keep_checkpoints = 2  # Checkpoints kept on disk.
  c.eval_every_epochs = 1  # Evaluate every N epochs (and at the end).
  c.log_every_steps = 50  # Terminal/JSONL/TensorBoard logging interval.
  c.data_threads = 8  # grain reader threads per process.
  c.distributed = False  # Call jax.distributed.initialize() (multi-host).
  c.init_from = ''  # Start from local weights: a jaxprune workdir, .npz or .safetensors; '': random init.
  c.init_from_map = ()  # 'regex=>replacement' rules from the file's names to ours (params/<module>/.../<leaf>).
  c.init_from_format = ''  # '': names as ours (after init_from_map) | timm_vit: a timm ViT, converted.
  c.method = 'none'  # A registered method: none (dense) | see jaxprune.methods.
  c.shrink = False  # Train only the kept channels (the slimmed network) between mask events; False: the masked full-width network.
  c.shrink_round_to = 1  # With shrink: train widths rounded up to a multiple of this (the extra channels stay pruned, zero); 1: exactly the kept channels.
  c.export = True  # Write a pruned run's slimmed model to <workdir>/slim (jax.export).
  for name, sub in methods_base.config_dicts().items():
    c[name] = sub  # The method's own settings (see its module).
  for name, sub in tasks_base.config_dicts().items():
    if name in c:
      raise ValueError(f'Task sub-dict {name!r} is taken by a method or a '
                       'generic field.')
    c[name] = sub  # The task's own settings (see its module).
  return c


# Fields that cannot change a run's results: a rerun on a workdir may
# change them (`jaxprune.checkpoint.check_workdir`); every other field must
# match the run the workdir holds.
NEUTRAL = ('log_every_steps', 'eval_batch_size', 'data_threads', 'data_dir',
           'checkpoint_every_epochs', 'keep_checkpoints', 'distributed',
           'export')

# (field, test, what is allowed) of the generic numeric fields.
_RANGES = (
    ('num_epochs', lambda v: isinstance(v, int) and v >= 1, 'an int >= 1'),
    ('learning_rate', lambda v: v > 0, 'a number > 0'),
    ('log_every_steps', lambda v: isinstance(v, int) and v >= 1,
     'an int >= 1'),
    ('checkpoint_every_epochs', lambda v: isinstance(v, int) and v >= 1,
     'an int >= 1'),
    ('eval_every_epochs', lambda v: isinstance(v, int) and v >= 1,
     'an int >= 1'),
    ('keep_checkpoints', lambda v: isinstance(v, int) and v >= 1,
     'an int >= 1 (a run needs its newest checkpoint to resume)'),
    ('validation_size', lambda v: isinstance(v, int) and v >= 0,
     'an int >= 0'),
    ('warmup_epochs', lambda v: v >= 0, 'a number >= 0'),
    ('weight_decay', lambda v: v >= 0, 'a number >= 0'),
    ('label_smoothing', lambda v: 0 <= v < 1, '0 <= value < 1'),
    ('mixup', lambda v: v >= 0, 'a number >= 0 (0: off)'),
    ('momentum', lambda v: 0 <= v < 1, '0 <= value < 1'),
    ('data_threads', lambda v: isinstance(v, int) and v >= 1, 'an int >= 1'),
    ('shrink_round_to', lambda v: isinstance(v, int) and v >= 1,
     'an int >= 1'),
)


def validate(config: ml_collections.ConfigDict,
             schema: ml_collections.ConfigDict | None = None,
             prefix: str = '') -> None:
  """Raises JaxpruneError on a field that `base()` does not define, or a
  generic field out of its range."""
  top = schema is None
  schema = base() if schema is None else schema
  if top:
    for field, ok, allowed in _RANGES:
      value = config.get(field, schema[field])
      if isinstance(value, bool) or not isinstance(value, (int, float)) or (
          not ok(value)):
        raise JaxpruneError(f'{field}={value!r}; allowed: {allowed}.')
    if config.get('shrink_round_to', 1) > 1 and not config.get('shrink',
                                                               False):
      raise JaxpruneError(
          f'shrink_round_to={config.shrink_round_to} does nothing without '
          'shrink=True; allowed: shrink=True, or shrink_round_to=1.')
  for key in config.keys():
    path = f'{prefix}{key}'
    if key not in schema:
      raise JaxpruneError(f'Unknown config field {path!r}; allowed: '
                          f'{", ".join(sorted(schema.keys()))}.')
    value = config[key]
    if isinstance(value, ml_collections.ConfigDict) and key not in FREE_FORM:
      validate(value, schema[key], f'{path}.')
