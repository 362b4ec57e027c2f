"""CHEX (Hou et al., CVPR 2022) on ResNet-56 / CIFAR-10 at about 50.0% fewer MACs.

Command:
  python -m jaxprune.main --config=configs/chex/resnet56_cifar10.py \
      --workdir=/tmp/chex_resnet56_cifar10 --config.data_dir=<tfds dir>

Recipe: the seed's CIFAR ResNet-56 recipe (160 epochs, batch 256, SGD 0.9
/ lr 0.1, cosine, wd 5e-4), block-internal groups only; the MACs target is
reached by the shared bisection. Paper: no number is quoted here: the seed tables have no CHEX ResNet-56
row, and we have not checked one against the CHEX paper. Not run here (no GPU;
about one GPU-hour, two for the one-shot methods' train + fine-tune).
"""
from configs import common
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  common.cifar_baseline(config, 'chex', 0.5)  # The row's MACs cut.
  config.chex.until_epoch = 96  # T_prune, as REPrune's CIFAR recipe.
  config.chex.every_epochs = 2  # Delta T.
  return config
