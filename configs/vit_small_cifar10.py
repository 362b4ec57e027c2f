"""Dense ViT-Small/4 on CIFAR-10: the seed-003 state-0 recipe.

Command:
  python -m jaxprune.main --config=configs/vit_small_cifar10.py \
      --workdir=/tmp/vit_small_cifar10 --config.data_dir=<tfds dir>

ViT-S (384 wide, 12 blocks, 6 heads, MLP 1536, patch 4, 65 tokens,
21,342,346 params), SGD lr 0.01, momentum 0.9, wd 1e-4, 20-epoch warmup then
constant, batch 128, crop + flip, 45k/5k/10k split. Seed 003 reports 80.34%
(state 0, 60 epochs, about 160 GPU-minutes). Not run here (no GPU).
"""
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  config.model = 'vit_small'  # Patch 4, image 32 by default.
  config.dataset = 'cifar10'  # Crop (pad 4) + flip.
  config.validation_size = 5000  # 45k train / 5k validation.
  config.batch_size = 128  # Seed 003.
  config.eval_batch_size = 512  # Global eval batch.
  config.num_epochs = 60  # One state of seed 003.
  config.optimizer = 'momentum'  # SGD with momentum.
  config.learning_rate = 0.01  # Seed 003.
  config.momentum = 0.9  # Seed 003.
  config.weight_decay = 1e-4  # Coupled, as PyTorch SGD.
  config.schedule = 'constant'  # Constant after warmup.
  config.warmup_epochs = 20.0  # Linear warmup.
  config.log_every_steps = 100  # Progress lines.
  return config
