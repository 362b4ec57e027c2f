"""Seed 003: ViT-S/4 on CIFAR-100, Refill, 70% absolute, 16 states.

Command:
  python -m jaxprune.main --config=configs/states/vit_small_cifar100_refill.py \
      --workdir=/tmp/vit_small_cifar100_refill --config.data_dir=<tfds dir>
  python -m jaxprune.report --workdir=/tmp/vit_small_cifar100_refill

16 states x 60 epochs; every state from 1 keeps 21 of 72 heads and 5,529 of
18,432 MLP neurons (global pools by weight L1): 6,396,643 effective params
of 21,342,346. Every state rewinds to the initial weights.

Runtime: 200-227 GPU-minutes per state, about 50 hours in all on seed 003's
GPU. Not run here (no GPU).
Expected (seed 003, test accuracy at the best validation epoch): 53.59% at
state 0, best 54.89% (state 2), falling to about 52% after state 8.
"""
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  config_lib.seed003_recipe(config, 'cifar100', 'refill')  # methods.md 3.1, 3.5.
  return config
