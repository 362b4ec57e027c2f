"""L1-norm filter pruning (Li et al., ICLR 2017) on ResNet-56 / CIFAR-10 at about 52.0% fewer MACs.

Command:
  python -m jaxprune.main --config=configs/l1/resnet56_cifar10.py \
      --workdir=/tmp/l1_resnet56_cifar10 --config.data_dir=<tfds dir>

Recipe: the seed's CIFAR ResNet-56 recipe (160 epochs, batch 256, SGD 0.9
/ lr 0.1, cosine, wd 5e-4), block-internal groups only; the MACs target is
reached by the shared bisection. Paper (Li et al. 2017, Table 1): ResNet-56-pruned-B at 27.6% fewer FLOPs,
93.06% top-1 (dense 93.04%); this config cuts 52%, for the seed-table
comparison. Not run here (no GPU;
about one GPU-hour, two for the one-shot methods' train + fine-tune).
"""
from configs import common
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  common.cifar_baseline(config, 'l1', 0.52)  # The row's MACs cut.
  return config
