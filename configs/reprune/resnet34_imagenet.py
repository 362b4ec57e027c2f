"""REPrune ResNet-34 on ImageNet, one config per seed-table row.

Command (ARG is a row below):
  python -m jaxprune.main --config=configs/reprune/resnet34_imagenet.py:ARG \
      --workdir=/tmp/reprune_resnet34_imagenet_ARG --config.data_dir=<tfds dir>

Recipe: NVIDIA DeepLearningExamples (250 epochs, batch 1024, SGD 0.875 /
1.024, cosine, label smoothing 0.1, bf16), REPrune from scratch with
T_prune 180, Delta T 2, BN-gamma allocation, s by bisection for the row's
MACs. Dense: 3.66G MACs, 21,797,672 params, 73.3% top-1 in the paper.
Runtime: not run here (no GPU); about 40 GPU-hours on 8 A6000s (Table 6).

| ARG | target | paper's top-1 |
|---|---|---|
| 2.7g (default) | 2.7G MACs | 74.3% |
| 2.0g | 2.0G MACs | 73.9% |

Where CHEX's published command (the loop REPrune adopts) differs from the
NVIDIA recipe, this config follows CHEX: fan-in Kaiming init, mixup 0.2,
delta0 = 0.3 and no zero-init of each block's last BN
(`common.chex_command`).
"""
from configs import common
from jaxprune import config as config_lib

ROWS = ('2.7g', '2.0g')


def get_config(arg=None):
  arg = common.parse_arg(arg, ROWS, '2.7g', 'reprune/resnet34_imagenet')
  config = config_lib.base()
  common.nvidia_imagenet_recipe(config)  # 250 epochs, batch 1024, bf16.
  config.model = 'resnet34'  # torchvision topology.
  common.reprune_schedule(config, until_epoch=180)  # T_prune 180, Delta T 2.
  common.chex_command(config)  # Fan-in init, mixup 0.2, delta0 0.3.
  config.reprune.target_macs = float(arg[:-1]) * 1e9  # The row's MACs at 224.
  return config
