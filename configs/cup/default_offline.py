"""Offline CUP (Duggal et al., 2019): ResNet-20 on digits, 70% fewer MACs.

Command:
  python -m jaxprune.main --config=configs/cup/default_offline.py \
      --workdir=/tmp/cup_offline

Runs the method as the offline comparison does (README "Baselines"):
train 10 epochs, cluster each layer's filters (incoming + outgoing weights, Ward) and cut at one global height, keep one filter per cluster, fine-tune 5; the slimmed network is evaluated and goes into results.json.
Runtime: about one to two minutes on 2 CPU cores. The measured top-1 is
in the README's comparison table (3 seeds).
"""
from configs import common
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  common.offline_baseline(config, 'cup')  # ResNet-20, digits, 70% fewer MACs.
  return config
