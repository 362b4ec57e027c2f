"""The config schema: every field an experiment config may set.

Experiment configs in `configs/` start from `base()` and override fields.
`validate` rejects any field the schema does not know, naming it and the
allowed ones, so a typo never silently falls back to a default.
"""
import ml_collections

from jaxprune.errors import JaxpruneError

# Sub-dicts whose keys are free-form (model attributes).
FREE_FORM = ('model_overrides',)


def base() -> ml_collections.ConfigDict:
  """Returns the full schema with defaults (a dense run, no pruning)."""
  c = ml_collections.ConfigDict()
  c.seed = 0  # Seed of init, data order, augmentation and dropout.
  c.model = 'resnet20'  # A name in jaxprune.models.NAMES.
  c.model_overrides = ml_collections.ConfigDict()  # Extra model attributes.
  c.dataset = 'digits'  # A name in jaxprune.data.NAMES.
  c.data_dir = ''  # TFDS data dir; '' means $TFDS_DATA_DIR or ~/tensorflow_datasets.
  c.validation_size = 0  # Last N train examples held out as validation.
  c.batch_size = 128  # Global batch, divisible by the device count.
  c.eval_batch_size = 256  # Global eval batch, divisible by the device count.
  c.num_epochs = 30  # Training epochs.
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
  c.half_precision = False  # bf16 compute, float32 params and loss.
  c.checkpoint_every_epochs = 1  # Save a checkpoint every N epochs.
  c.keep_checkpoints = 2  # Checkpoints kept on disk.
  c.eval_every_epochs = 1  # Evaluate every N epochs (and at the end).
  c.log_every_steps = 50  # Terminal/JSONL/TensorBoard logging interval.
  c.data_threads = 8  # grain reader threads per process.
  c.distributed = False  # Call jax.distributed.initialize() (multi-host).
  c.method = 'none'  # none (dense) | reprune | imp | refill | rsst.
  c.reprune = reprune()  # REPrune settings (used when method='reprune').
  c.states = states()  # State-loop settings (method imp, refill or rsst).
  return c


def reprune() -> ml_collections.ConfigDict:
  """REPrune settings (methods.md section 1)."""
  r = ml_collections.ConfigDict()
  r.sparsity = 0.5  # Global channel sparsity s (ignored with a MACs target).
  r.allocation = 'bn_gamma'  # Per-layer sparsity: bn_gamma (Eqs. 8-9) | uniform.
  r.target_macs = 0.0  # MACs per example to reach by bisection on s; 0: off.
  r.target_reduction = 0.0  # Or: fraction of MACs to remove; 0: off.
  r.linkage = 'ward'  # Clustering: ward | single | complete | average.
  r.tie_break = 'random'  # Greedy coverage ties: random | lowest_index.
  r.delta0 = 0.25  # CHEX regrowth: initial extra density; 0 disables it.
  r.every_epochs = 2  # Delta T: epochs between mask events.
  r.until_epoch = 96  # T_prune: masks are frozen from this epoch on.
  r.residual = False  # Also prune groups coupled to a residual add.
  r.input_layer = False  # Also prune groups produced from the model input.
  r.exclude = ''  # Regex of group names never pruned.
  r.coverage_every_epochs = 1  # Log the cluster coverage rate; 0: off.
  r.export = True  # Write the slimmed model to <workdir>/slim (jax.export).
  return r


def states() -> ml_collections.ConfigDict:
  """The IMP / Refill / RSST state loop (methods.md section 3)."""
  s = ml_collections.ConfigDict()
  s.num_states = 16  # States 0..S-1, num_epochs each; state 0 trains dense.
  s.rate = 0.7  # Fraction pruned (see amount).
  s.amount = 'absolute'  # absolute: keep int(N (1 - rate)) from state 1 on | gradual: remove rate of what remains, per state.
  s.rewind_epoch = 0  # Rewind to the weights after this many epochs of state 0; 0: the initial weights.
  s.mask_mode = 'auto'  # auto (imp: hard, refill: masked_forward) | hard | masked_forward.
  s.criterion = 'remain'  # CNN Refill ranking: remain | magnitude | l1 | l2 | saliency.
  s.fillback_rate = 0.0  # CNN Refill+: also keep this fraction of the channels beyond the budget.
  s.reg_schedule = 'exp_custom_exponents'  # RSST lambda: x | x^2 | x^3 | exp | exp_custom_exponents.
  s.reg_granularity_prune = 1.0  # RSST g.
  s.exponents = 4  # RSST n (exp_custom_exponents).
  s.ramp = 'state'  # RSST ramp spans the state | each epoch.
  s.input_layer = False  # Also prune units fed by the model input.
  s.export = True  # Write the last state's slimmed model to <workdir>/slim.
  return s


def seed003_training(c: ml_collections.ConfigDict, dataset: str) -> None:
  """Seed 003's ViT-S/4 training recipe (one state; methods.md 3.1, 3.5)."""
  c.model = 'vit_small'  # Patch 4, 384 wide, 12 blocks x 6 heads, MLP 1536.
  c.dataset = dataset  # Crop (pad 4) + flip.
  c.validation_size = 5000  # 45k train / 5k validation / 10k test.
  c.batch_size = 128  # Seed 003.
  c.eval_batch_size = 512  # Global eval batch.
  c.num_epochs = 60  # One state of seed 003.
  c.optimizer = 'momentum'  # SGD with momentum.
  c.learning_rate = 0.01  # Seed 003.
  c.momentum = 0.9  # Seed 003.
  c.weight_decay = 1e-4  # Coupled (PyTorch SGD): masked weights still decay.
  c.schedule = 'constant'  # Constant after warmup.
  c.warmup_epochs = 20.0  # Linear warmup (rebuilt every state).
  c.log_every_steps = 100  # Progress lines.


def seed003_recipe(c: ml_collections.ConfigDict, dataset: str,
                   method: str) -> None:
  """Seed 003: ViT-S/4, 16 states x 60 epochs, 70% absolute (methods.md 3)."""
  seed003_training(c, dataset)  # The state-0 recipe, for every state.
  c.method = method  # refill | rsst.
  c.states.num_states = 16  # States 0..15.
  c.states.rate = 0.7  # 70% of heads and of MLP neurons.
  c.states.amount = 'absolute'  # Every state from 1 keeps 30%.
  c.states.rewind_epoch = 0  # Rewind to the initial weights.
  c.states.reg_schedule = 'exp_custom_exponents'  # RSST default.
  c.states.reg_granularity_prune = 1.0  # g.
  c.states.exponents = 4  # n.


def resnet18_cifar_states_recipe(c: ml_collections.ConfigDict,
                                 method: str) -> None:
  """CIFAR ResNet-18 state loop, rate 0.2 gradual (methods.md 3.2-3.3)."""
  c.model = 'resnet18_cifar'  # 3x3/1 stem, no max-pool, 11,173,962 params.
  c.dataset = 'cifar10'  # Crop (pad 4) + flip.
  c.validation_size = 5000  # 45k train / 5k validation / 10k test.
  c.batch_size = 128  # Global batch.
  c.eval_batch_size = 512  # Global eval batch.
  c.num_epochs = 160  # Epochs per state.
  c.optimizer = 'momentum'  # SGD with momentum.
  c.learning_rate = 0.1  # Peak.
  c.momentum = 0.9  # SGD momentum.
  c.weight_decay = 5e-4  # Coupled L2.
  c.schedule = 'multistep'  # x0.1 at the milestones.
  c.lr_milestones = (80, 120)  # Epochs.
  c.lr_gamma = 0.1  # Multistep factor.
  c.log_every_steps = 100  # Progress lines.
  c.method = method  # imp | refill | rsst.
  c.states.num_states = 16  # States 0..15.
  c.states.rate = 0.2  # Of what remains, per state.
  c.states.amount = 'gradual'  # IMP's usual iterative schedule.
  c.states.rewind_epoch = 1  # Rewind to the weights after epoch 1.
  c.states.criterion = 'remain'  # CNN Refill ranking (Refill default).
  c.states.fillback_rate = 0.0  # 0: Refill; > 0: Refill+.


def validate(config: ml_collections.ConfigDict,
             schema: ml_collections.ConfigDict | None = None,
             prefix: str = '') -> None:
  """Raises JaxpruneError on a field that `base()` does not define."""
  schema = base() if schema is None else schema
  for key in config.keys():
    path = f'{prefix}{key}'
    if key not in schema:
      raise JaxpruneError(f'Unknown config field {path!r}; allowed: '
                          f'{", ".join(sorted(schema.keys()))}.')
    value = config[key]
    if isinstance(value, ml_collections.ConfigDict) and key not in FREE_FORM:
      validate(value, schema[key], f'{path}.')


def nvidia_imagenet_recipe(c: ml_collections.ConfigDict) -> None:
  """The NVIDIA DeepLearningExamples ResNet recipe used by CHEX and REPrune."""
  c.dataset = 'imagenet2012'  # 1.28M train / 50k validation.
  c.batch_size = 1024  # 8 GPUs x 128.
  c.eval_batch_size = 1024  # Global eval batch.
  c.num_epochs = 250  # REPrune/CHEX recipe (methods.md 1.4).
  c.optimizer = 'momentum'  # SGD with momentum.
  c.learning_rate = 1.024  # 0.256 per 256 images.
  c.momentum = 0.875  # NVIDIA recipe.
  c.weight_decay = 3.0517578125e-5  # 1/32768.
  c.weight_decay_norm_bias = False  # No decay on BN parameters and biases.
  c.schedule = 'cosine'  # Cosine after warmup.
  c.warmup_epochs = 8.0  # Linear warmup.
  c.label_smoothing = 0.1  # NVIDIA recipe.
  c.half_precision = True  # Mixed precision (bf16 compute).
  c.log_every_steps = 200  # Progress lines.
  c.data_threads = 32  # JPEG decoding is the host bottleneck.


def cifar_resnet_recipe(c: ml_collections.ConfigDict) -> None:
  """REPrune's CIFAR-10 ResNet-56 recipe (methods.md 1.4)."""
  c.dataset = 'cifar10'  # 50k train / 10k test.
  c.batch_size = 256  # Global batch.
  c.eval_batch_size = 512  # Global eval batch.
  c.num_epochs = 160  # Seed recipe.
  c.optimizer = 'momentum'  # SGD with momentum.
  c.learning_rate = 0.1  # Peak lr.
  c.momentum = 0.9  # SGD momentum.
  c.weight_decay = 5e-4  # Coupled L2.
  c.schedule = 'cosine'  # Cosine to 0.
  c.log_every_steps = 100  # Progress lines.


def reprune_schedule(c: ml_collections.ConfigDict, until_epoch: int,
                     every_epochs: int = 2) -> None:
  """REPrune from scratch with CHEX regrowth (methods.md 1.4)."""
  c.method = 'reprune'  # Prune while training from scratch.
  c.reprune.allocation = 'bn_gamma'  # Eqs. 8-9 (with bisection for targets).
  c.reprune.linkage = 'ward'  # The paper's clustering.
  c.reprune.tie_break = 'random'  # The paper's greedy tie-break.
  c.reprune.delta0 = 0.25  # CHEX: 0.2-0.3.
  c.reprune.every_epochs = every_epochs  # Delta T.
  c.reprune.until_epoch = until_epoch  # T_prune.
