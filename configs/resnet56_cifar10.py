"""Dense ResNet-56 on CIFAR-10 (the REPrune CIFAR recipe).

Command:
  python -m jaxprune.main --config=configs/resnet56_cifar10.py \
      --workdir=/tmp/resnet56_cifar10 --config.data_dir=<tfds dir>

Needs cifar10 prepared as ArrayRecord (the error message says how).
Expected: the seed table's dense baseline is 93.39% top-1; 125.49M MACs,
853,018 params. Not run here (no GPU; about one GPU-hour).
"""
from configs import common
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  common.cifar_resnet_recipe(config)  # 160 epochs, SGD 0.1, cosine.
  config.model = 'resnet56'  # Option-A shortcuts.
  return config
