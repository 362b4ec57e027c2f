"""Offline L1-norm filter pruning (Li et al., ICLR 2017): ResNet-20 on digits, 70% fewer MACs.

Command:
  python -m jaxprune.main --config=configs/l1/default_offline.py \
      --workdir=/tmp/l1_offline

Runs the method as the offline comparison does (README "Baselines"):
train 10 epochs, prune the smallest-L1 filters per layer, fine-tune 5; the slimmed network is evaluated and goes into results.json.
Runtime: about one to two minutes on 2 CPU cores. The measured top-1 is
in the README's comparison table (3 seeds).
"""
from configs import common
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  common.offline_baseline(config, 'l1')  # ResNet-20, digits, 70% fewer MACs.
  return config
