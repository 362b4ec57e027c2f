"""Seed 003: ViT-S/4 on CIFAR-10, Refill, 70% absolute, 16 states.

Command:
  python -m jaxprune.main --config=configs/states/vit_small_cifar10_refill.py \
      --workdir=/tmp/vit_small_cifar10_refill --config.data_dir=<tfds dir>
  python -m jaxprune.report --workdir=/tmp/vit_small_cifar10_refill

16 states x 60 epochs; every state from 1 keeps 21 of 72 heads and 5,529 of
18,432 MLP neurons (global pools by weight L1): 6,396,643 effective params
of 21,342,346. Every state rewinds to the initial weights.

Runtime: 160-200 GPU-minutes per state, about 50 hours in all on seed 003's
GPU. Not run here (no GPU).
Expected (seed 003, test accuracy at the best validation epoch): 80.34% at
state 0, best 81.70% (state 4), states 2-15 between 80.70% and 81.70%.
"""
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  config_lib.seed003_recipe(config, 'cifar10', 'refill')  # methods.md 3.1, 3.5.
  return config
