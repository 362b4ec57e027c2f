"""Seed 003: ViT-S/4 on CIFAR-10/100, Refill or RSST, 70% absolute, 16 states.

Command (ARG is a row below):
  python -m jaxprune.main --config=configs/states/vit_small_seed003.py:ARG \
      --workdir=/tmp/vit_small_ARG --config.data_dir=<tfds dir>
  python -m jaxprune.report --workdir=/tmp/vit_small_ARG

16 states x 60 epochs (SGD lr 0.01, momentum 0.9, wd 1e-4, 20-epoch warmup
then constant, batch 128, 45k/5k/10k); every state from 1 keeps 21 of 72
heads and 5,529 of 18,432 MLP neurons (global pools by weight L1):
6,396,643 effective params of 21,342,346. Every state rewinds to the
initial weights. RSST: the weights outside the next Refill structure get
lambda(t) w added to their gradients, lambda(t) = g (exp(t^n) - 1) /
(e - 1) over the state (g = 1.0, n = 4); the structure is applied hard at
evaluation. Unlike the public reference code (whose gate leaves lambda
near 1e-11, and which trains dense and discards the weights), the
regulariser here is on.

Init: the expected numbers below assume seed 003's start, timm's
ImageNet-1K `vit_small_patch16_224` weights copied where shapes match
(blocks, norms, cls token; the 4x4 patch embedding, position table and
head stay random), which every state rewinds to. Pass them with
`--config.init_from=<vit_small_patch16_224.safetensors>
--config.init_from_format=timm_vit`; without, the run starts from random
init and will not reach those numbers. LayerNorm eps is 1e-5 (PyTorch's).

Runtime: 160-227 GPU-minutes per state, about 50 hours per row on seed
003's GPU. Not run here (no GPU). Expected (seed 003, test accuracy at the
best validation epoch):

| ARG | state 0 | best (state) | other states |
|---|---|---|---|
| cifar10_refill (default) | 80.34% | 81.70% (4) | states 2-15: 80.70-81.70% |
| cifar10_rsst | 80.10% | 80.38% (13) | states 1-14: 79.74-80.38% |
| cifar100_refill | 53.59% | 54.89% (2) | about 52% after state 8 |
| cifar100_rsst | 53.74% | 54.52% (8) | states 1-12: 53.37-54.52% |
"""
from configs import common
from jaxprune import config as config_lib

ROWS = ('cifar10_refill', 'cifar10_rsst', 'cifar100_refill', 'cifar100_rsst')


def get_config(arg=None):
  arg = common.parse_arg(arg, ROWS, 'cifar10_refill',
                         'states/vit_small_seed003')
  dataset, method = arg.split('_')
  config = config_lib.base()
  common.seed003_recipe(config, dataset, method)  # ViT-S/4, 16 x 60 epochs.
  return config
