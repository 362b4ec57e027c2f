"""REPrune ResNet-56 on CIFAR-10 at s = 0.55 (seed row: 60.38% FLOPs off, 93.40%).

Command:
  python -m jaxprune.main --config=configs/reprune/resnet56_cifar10.py \
      --workdir=/tmp/reprune_resnet56_cifar10 --config.data_dir=<tfds dir>

Recipe: 160 epochs, batch 256, SGD 0.9 / lr 0.1, cosine, wd 5e-4, T_prune 96,
Delta T 2, from scratch; BN-gamma allocation at s = 0.55 (methods.md 1.3).
Paper: 60.38% FLOPs reduction, 93.40% top-1 (dense 93.39%, 125.5M MACs).
Not run here (no GPU; about one GPU-hour).
"""
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  config_lib.cifar_resnet_recipe(config)  # 160 epochs, SGD 0.1, cosine.
  config.model = 'resnet56'  # Option-A shortcuts.
  config_lib.reprune_schedule(config, until_epoch=96)  # Methods.md 1.4.
  config.reprune.sparsity = 0.55  # The paper's s for this row.
  return config
