"""Offline network slimming (Liu et al., ICCV 2017): ResNet-20 on digits, 70% fewer MACs.

Command:
  python -m jaxprune.main --config=configs/bn_slimming/default_offline.py \
      --workdir=/tmp/bn_slimming_offline

Runs the method as the offline comparison does (README "Baselines"):
train 10 epochs with an L1 term on BN gamma, prune below one global |gamma| threshold, fine-tune 5; the slimmed network is evaluated and goes into results.json.
Runtime: about one to two minutes on 2 CPU cores. The measured top-1 is
in the README's comparison table (3 seeds).
"""
from configs import common
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  common.offline_baseline(config, 'bn_slimming')  # ResNet-20, digits, 70% fewer MACs.
  config.bn_slimming.l1_strength = 1e-4  # lambda (the paper's CIFAR value for VGG).
  return config
