"""Dense ViT-Small/4 on CIFAR-10: the seed-003 state-0 recipe.

Command:
  python -m jaxprune.main --config=configs/vit_small_cifar10.py \
      --workdir=/tmp/vit_small_cifar10 --config.data_dir=<tfds dir>

ViT-S (384 wide, 12 blocks, 6 heads, MLP 1536, patch 4, 65 tokens,
21,342,346 params), SGD lr 0.01, momentum 0.9, wd 1e-4, 20-epoch warmup then
constant, batch 128, crop + flip, 45k/5k/10k split. Seed 003 reports 80.34%
(state 0, 60 epochs, about 160 GPU-minutes). Not run here (no GPU).
"""
from configs import common
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  common.seed003_training(config, 'cifar10')  # Seed 003.
  return config
