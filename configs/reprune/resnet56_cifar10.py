"""REPrune ResNet-56 on CIFAR-10, one config per seed-table row.

Command (ARG is a row below):
  python -m jaxprune.main --config=configs/reprune/resnet56_cifar10.py:ARG \
      --workdir=/tmp/reprune_resnet56_cifar10_ARG --config.data_dir=<tfds dir>

Recipe: 160 epochs, batch 256, SGD 0.9 / lr 0.1, cosine, wd 5e-4, REPrune
from scratch with T_prune 96, Delta T 2, BN-gamma allocation. Dense: 93.39%
top-1 in the paper, 125.49M MACs, 853,018 params. Runtime: not run here
(no GPU; about one GPU-hour).

| ARG | setting | paper |
|---|---|---|
| 0.55 (default) | s = 0.55 | 60.38% fewer MACs, 93.40% top-1 |
| 47 | s by bisection for 47.57% fewer MACs | 94.00% top-1 |
"""
from configs import common
from jaxprune import config as config_lib

ROWS = ('0.55', '47')


def get_config(arg=None):
  arg = common.parse_arg(arg, ROWS, '0.55', 'reprune/resnet56_cifar10')
  config = config_lib.base()
  common.cifar_resnet_recipe(config)  # 160 epochs, SGD 0.1, cosine.
  config.model = 'resnet56'  # Option-A shortcuts.
  common.reprune_schedule(config, until_epoch=96)  # T_prune 96, Delta T 2.
  if arg == '47':
    config.reprune.target_reduction = 0.4757  # The row's FLOPs cut.
  else:
    config.reprune.sparsity = 0.55  # The paper's s for this row.
  return config
