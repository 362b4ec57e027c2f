"""ResNet-18 (CIFAR stem) on CIFAR-10: Refill from IMP survivors.

Command:
  python -m jaxprune.main --config=configs/states/resnet18_cifar10_refill.py \
      --workdir=/tmp/resnet18_cifar10_refill --config.data_dir=<tfds dir>
  python -m jaxprune.report --workdir=/tmp/resnet18_cifar10_refill

The CNN state loop of methods.md 3.2-3.3: 16 states x 160 epochs, each state
removing 20% of what remains (gradual: state 15 keeps 0.8^15 = 3.5%),
rewinding to the weights after epoch 1 of state 0; SGD lr 0.1, momentum 0.9,
wd 5e-4, multistep at epochs 80 and 120, batch 128. The residual stream
keeps its width; the block-internal channels are pruned.

Runtime: 16 x 160 epochs of ResNet-18 on CIFAR-10; not run here (no GPU).
Expected: about 95% top-1 at state 0 (the usual dense CIFAR ResNet-18); no
seed table gives per-state numbers for it.
"""
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  config_lib.resnet18_cifar_states_recipe(config, 'refill')  # methods.md 3.
  return config
