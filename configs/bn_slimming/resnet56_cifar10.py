"""network slimming (Liu et al., ICCV 2017) on ResNet-56 / CIFAR-10 at about 52.0% fewer MACs.

Command:
  python -m jaxprune.main --config=configs/bn_slimming/resnet56_cifar10.py \
      --workdir=/tmp/bn_slimming_resnet56_cifar10 --config.data_dir=<tfds dir>

Recipe: the seed's CIFAR ResNet-56 recipe (160 epochs, batch 256, SGD 0.9
/ lr 0.1, cosine, wd 5e-4), block-internal groups only; the MACs target is
reached by the shared bisection. Paper: no ResNet-56 row (Liu et al. report VGGNet, DenseNet-40 and
ResNet-164 on CIFAR). Not run here (no GPU;
about one GPU-hour, two for the one-shot methods' train + fine-tune).
"""
from configs import common
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  common.cifar_baseline(config, 'bn_slimming', 0.52)  # The row's MACs cut.
  config.bn_slimming.l1_strength = 1e-5  # lambda (the paper's ResNet value).
  return config
