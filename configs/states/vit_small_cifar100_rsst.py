"""Seed 003: ViT-S/4 on CIFAR-100, RSST, 70% absolute, 16 states.

Command:
  python -m jaxprune.main --config=configs/states/vit_small_cifar100_rsst.py \
      --workdir=/tmp/vit_small_cifar100_rsst --config.data_dir=<tfds dir>
  python -m jaxprune.report --workdir=/tmp/vit_small_cifar100_rsst

16 states x 60 epochs; every state from 1 keeps 21 of 72 heads and 5,529 of
18,432 MLP neurons (global pools by weight L1): 6,396,643 effective params
of 21,342,346. Every state rewinds to the initial weights.

RSST: the weights outside the next Refill structure get lambda(t) w added to
their gradients, lambda(t) = g (exp(t^n) - 1) / (e - 1) over the state (g =
1.0, n = 4); the structure is applied hard at evaluation. Unlike the public
reference code (whose gate leaves lambda near 1e-11, and which trains dense
and discards the weights), the regulariser here is on (methods.md 3.4).

Runtime: 200-227 GPU-minutes per state, about 50 hours in all on seed 003's
GPU. Not run here (no GPU).
Expected (seed 003, test accuracy at the best validation epoch): 53.74% at
state 0, best 54.52% (state 8), states 1-12 between 53.37% and 54.52%.
"""
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  config_lib.seed003_recipe(config, 'cifar100', 'rsst')  # methods.md 3.1, 3.5.
  return config
