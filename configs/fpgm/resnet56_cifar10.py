"""FPGM (He et al., CVPR 2019) on ResNet-56 / CIFAR-10 at about 52.6% fewer MACs.

Command:
  python -m jaxprune.main --config=configs/fpgm/resnet56_cifar10.py \
      --workdir=/tmp/fpgm_resnet56_cifar10 --config.data_dir=<tfds dir>

Recipe: the seed's CIFAR ResNet-56 recipe (160 epochs, batch 256, SGD 0.9
/ lr 0.1, cosine, wd 5e-4), block-internal groups only; the MACs target is
reached by the shared bisection. Paper (He et al. 2019, Table 1): ResNet-56 at 52.6% fewer FLOPs, 93.26%
top-1 from scratch (dense 93.59%). Not run here (no GPU;
about one GPU-hour, two for the one-shot methods' train + fine-tune).
The paper's fine-tuned rows: add `--config.fpgm.finetune_epochs=N` (a
second phase under the final masks, hard, on a fresh schedule).
"""
from configs import common
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  common.cifar_baseline(config, 'fpgm', 0.526)  # The row's MACs cut.
  config.fpgm.every_epochs = 1  # Re-mask after every epoch.
  return config
