"""Offline REPrune demo: ResNet-20 on scikit-learn's digits, ~57% MACs off.

Command:
  python -m jaxprune.main --config=configs/reprune/default_offline.py \
      --workdir=/tmp/reprune_offline

Trains from scratch with soft masks: an L1 mask at epoch 0, Alg. 1 (Ward
clustering, layer cut height, greedy coverage) with CHEX regrowth every
epoch until epoch 10, then frozen masks; the network is slimmed and the
slimmed network evaluated. The dense run is configs/default.py.

Measured on 2 CPU cores (the command above): 62 s wall; the slimmed
network has 1,078,912 MACs (57.13% fewer than 2,516,608) and 163,280
params (39.40% fewer than 269,434), and 98.61% top-1 on the 360 test
images (dense: 98.89%).
"""
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  config.model = 'resnet20'  # CIFAR ResNet-20: 16/32/64 widths.
  config.dataset = 'digits'  # Offline: 1,437 train / 360 test images.
  config.batch_size = 64  # Global batch.
  config.eval_batch_size = 120  # Divisible by 8 fake or real devices.
  config.num_epochs = 15  # As the dense configs/default.py.
  config.learning_rate = 0.05  # Peak of the cosine schedule.
  config.warmup_epochs = 1.0  # One epoch of linear warmup.
  config.weight_decay = 5e-4  # Coupled L2, as PyTorch SGD.
  config.log_every_steps = 22  # Once per epoch.
  config.method = 'reprune'  # Prune while training.
  config.reprune.target_reduction = 0.57  # Remove 57% of the MACs.
  config.reprune.allocation = 'bn_gamma'  # Eqs. 8-9, bisection on s.
  config.reprune.delta0 = 0.25  # CHEX regrowth.
  config.reprune.every_epochs = 1  # Delta T.
  config.reprune.until_epoch = 10  # T_prune.
  return config
