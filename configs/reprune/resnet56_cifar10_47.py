"""REPrune ResNet-56 on CIFAR-10 at 47.57% FLOPs off (seed row: 94.00%).

Command:
  python -m jaxprune.main --config=configs/reprune/resnet56_cifar10_47.py \
      --workdir=/tmp/reprune_resnet56_cifar10_47 --config.data_dir=<tfds dir>

Recipe: 160 epochs, batch 256, SGD 0.9 / lr 0.1, cosine, wd 5e-4, T_prune 96,
Delta T 2, from scratch; s found by bisection for 47.57% fewer MACs.
Paper: 94.00% top-1 (dense 93.39%). Not run here (no GPU; about one
GPU-hour).
"""
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  config_lib.cifar_resnet_recipe(config)  # 160 epochs, SGD 0.1, cosine.
  config.model = 'resnet56'  # Option-A shortcuts.
  config_lib.reprune_schedule(config, until_epoch=96)  # Methods.md 1.4.
  config.reprune.target_reduction = 0.4757  # The seed row's FLOPs cut.
  return config
