"""Experiment recipes shared by the configs (not library code).

Configs import this module as `from configs import common` (`jaxprune.main`
puts the directory above `configs/` on the path). `parse_arg` reads a
config argument, as in `--config=configs/reprune/resnet50_imagenet.py:2.3g`.
"""
import ml_collections


def parse_arg(arg: str | None, allowed, default: str, what: str) -> str:
  """The config argument `arg` (default when empty), checked against the
  allowed ones; raises ValueError naming them."""
  arg = default if not arg else arg
  if arg not in allowed:
    raise ValueError(f'{what}: config argument {arg!r}; allowed: '
                     f'{", ".join(allowed)}.')
  return arg


def nvidia_imagenet_recipe(c: ml_collections.ConfigDict) -> None:
  """The NVIDIA DeepLearningExamples ResNet recipe used by CHEX and REPrune."""
  c.dataset = 'imagenet2012'  # 1.28M train / 50k validation.
  c.batch_size = 1024  # 8 GPUs x 128.
  c.eval_batch_size = 1024  # Global eval batch.
  c.num_epochs = 250  # REPrune/CHEX recipe (the REPrune paper, section 4).
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


def chex_command(c: ml_collections.ConfigDict, method: str = 'reprune'
                 ) -> None:
  """Where CHEX's published ImageNet command differs from the NVIDIA recipe
  (the command REPrune's seed rows follow): fan-in Kaiming init, mixup 0.2,
  an initial channel ratio delta0 = 0.3 and no zero-init of each block's
  last BN."""
  c.model_overrides.conv_init = 'fan_in'  # CHEX's command (NVIDIA: fan-out).
  c.model_overrides.zero_init_residual = False  # CHEX's command ships none.
  c.mixup = 0.2  # CHEX's command.
  c[method].delta0 = 0.3  # CHEX's initial channel ratio.


def cifar_resnet_recipe(c: ml_collections.ConfigDict) -> None:
  """REPrune's CIFAR-10 ResNet-56 recipe (the REPrune paper, section 4)."""
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
  """REPrune from scratch with CHEX regrowth (the REPrune paper, section 4)."""
  c.method = 'reprune'  # Prune while training from scratch.
  c.reprune.allocation = 'bn_gamma'  # Eqs. 8-9 (with bisection for targets).
  c.reprune.linkage = 'ward'  # The paper's clustering.
  c.reprune.tie_break = 'random'  # The paper's greedy tie-break.
  c.reprune.delta0 = 0.25  # CHEX: 0.2-0.3.
  c.reprune.every_epochs = every_epochs  # Delta T.
  c.reprune.until_epoch = until_epoch  # T_prune.


def seed003_training(c: ml_collections.ConfigDict, dataset: str) -> None:
  """Seed 003's ViT-S/4 training recipe (one state)."""
  c.model = 'vit_small'  # Patch 4, 384 wide, 12 blocks x 6 heads, MLP 1536.
  c.model_overrides.layer_norm_eps = 1e-5  # PyTorch/timm LayerNorm, as seed 003.
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
  """Seed 003: ViT-S/4, 16 states x 60 epochs, 70% absolute."""
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
  """CIFAR ResNet-18 state loop, rate 0.2 gradual."""
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


def offline_baseline(c: ml_collections.ConfigDict, method: str,
                     target_reduction: float = 0.7) -> None:
  """The offline comparison setting: ResNet-20 on digits, 15 epochs in all,
  the method at `target_reduction` fewer MACs (block-internal groups)."""
  c.model = 'resnet20'  # CIFAR ResNet-20: 16/32/64 widths.
  c.dataset = 'digits'  # Offline: 1,437 train / 360 test images.
  c.batch_size = 64  # Global batch.
  c.eval_batch_size = 120  # Divisible by 8 fake or real devices.
  c.num_epochs = 15  # As configs/default.py (one-shot: 10 + 5, below).
  c.learning_rate = 0.05  # Peak of the cosine schedule.
  c.warmup_epochs = 1.0  # One epoch of linear warmup.
  c.weight_decay = 5e-4  # Coupled L2, as PyTorch SGD.
  c.log_every_steps = 22  # Once per epoch.
  c.method = method  # The baseline.
  c[method].target_reduction = target_reduction  # Same MACs for every method.
  if 'pretrain_epochs' in c[method]:
    c[method].pretrain_epochs = 10  # Dense training before pruning.
    c[method].finetune_epochs = 5  # Fine-tuning after.


def cifar_baseline(c: ml_collections.ConfigDict, method: str,
                   target_reduction: float) -> None:
  """ResNet-56 on CIFAR-10 with the seed recipe; one-shot methods train
  160 epochs, prune, and fine-tune 160 more (trained from scratch)."""
  cifar_resnet_recipe(c)  # 160 epochs, SGD 0.1, cosine.
  c.model = 'resnet56'  # Option-A shortcuts.
  c.method = method  # The baseline.
  c[method].target_reduction = target_reduction  # The row's FLOPs cut.
