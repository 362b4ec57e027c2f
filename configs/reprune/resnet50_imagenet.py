"""REPrune ResNet-50 on ImageNet, one config per seed-table row.

Command (ARG is a row below):
  python -m jaxprune.main --config=configs/reprune/resnet50_imagenet.py:ARG \
      --workdir=/tmp/reprune_resnet50_imagenet_ARG --config.data_dir=<tfds dir>

Recipe: NVIDIA DeepLearningExamples (250 epochs, batch 1024, SGD 0.875 /
1.024, cosine, label smoothing 0.1, bf16), REPrune
from scratch with T_prune 180, Delta T 2, BN-gamma allocation; the global
sparsity s is found by bisection so that the MACs hit the row's target.
Dense: 4.089G MACs, 25,557,032 params, 76.2% top-1 in the paper.
Runtime: not run here (no GPU); the paper reports about 40 GPU-hours on 8
A6000s (its Table 6).

| ARG | target | paper's top-1 |
|---|---|---|
| 2.3g (default) | 2.3G MACs | 77.2% |
| 1.8g | 1.8G MACs | 77.1% |
| 1.0g | 1.0G MACs | 75.7% |
| 56 | 56.09% fewer MACs | 77.04% |

Where CHEX's published command (the loop REPrune adopts) differs from the
NVIDIA recipe, this config follows CHEX: fan-in Kaiming init, mixup 0.2,
delta0 = 0.3 and no zero-init of each block's last BN
(`common.chex_command`).
"""
from configs import common
from jaxprune import config as config_lib

ROWS = ('2.3g', '1.8g', '1.0g', '56')


def get_config(arg=None):
  arg = common.parse_arg(arg, ROWS, '2.3g', 'reprune/resnet50_imagenet')
  config = config_lib.base()
  common.nvidia_imagenet_recipe(config)  # 250 epochs, batch 1024, bf16.
  config.model = 'resnet50'  # torchvision topology.
  common.reprune_schedule(config, until_epoch=180)  # T_prune 180, Delta T 2.
  common.chex_command(config)  # Fan-in init, mixup 0.2, delta0 0.3.
  if arg == '56':
    config.reprune.target_reduction = 0.5609  # The row's FLOPs cut.
  else:
    config.reprune.target_macs = float(arg[:-1]) * 1e9  # The row's MACs at 224.
  return config
