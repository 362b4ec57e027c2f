"""CUP (Duggal et al., 2019) on ResNet-56 / CIFAR-10 at about 52.8% fewer MACs.

Command:
  python -m jaxprune.main --config=configs/cup/resnet56_cifar10.py \
      --workdir=/tmp/cup_resnet56_cifar10 --config.data_dir=<tfds dir>

Recipe: the seed's CIFAR ResNet-56 recipe (160 epochs, batch 256, SGD 0.9
/ lr 0.1, cosine, wd 5e-4), block-internal groups only; the MACs target is
reached by the shared bisection. Paper (seed table 000, Table 2): 52.83% fewer FLOPs, 93.36% top-1
(dense 93.67%). Not run here (no GPU;
about one GPU-hour, two for the one-shot methods' train + fine-tune).
"""
from configs import common
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  common.cifar_baseline(config, 'cup', 0.528)  # The row's MACs cut.
  return config
