"""ResNet-18 (CIFAR stem) on CIFAR-10: the CNN state loop, IMP / Refill / RSST.

Command (ARG is imp, refill or rsst):
  python -m jaxprune.main --config=configs/states/resnet18_cifar10.py:ARG \
      --workdir=/tmp/resnet18_cifar10_ARG --config.data_dir=<tfds dir>
  python -m jaxprune.report --workdir=/tmp/resnet18_cifar10_ARG

16 states x 160 epochs, each state removing 20% of what remains (gradual:
state 15 keeps 0.8^15 = 3.5%), rewinding to the weights after epoch 1 of
state 0; SGD lr 0.1, momentum 0.9, wd 5e-4, multistep at epochs 80 and 120,
batch 128, 45k/5k/10k. The residual stream keeps its width; the
block-internal channels are pruned.

| ARG | masks |
|---|---|
| imp (default) | global weight magnitude, unstructured, hard |
| refill | channels from the IMP survivors (criterion remain), masked forward |
| rsst | the Refill structure reached by the lambda(t) w regulariser |

Runtime: 16 x 160 epochs of ResNet-18 on CIFAR-10; not run here (no GPU).
Expected: about 95% top-1 at state 0 (the usual dense CIFAR ResNet-18); no
seed table gives per-state numbers for it.
"""
from configs import common
from jaxprune import config as config_lib

ROWS = ('imp', 'refill', 'rsst')


def get_config(arg=None):
  arg = common.parse_arg(arg, ROWS, 'imp', 'states/resnet18_cifar10')
  config = config_lib.base()
  common.resnet18_cifar_states_recipe(config, arg)  # Rate 0.2, gradual.
  return config
