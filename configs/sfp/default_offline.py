"""Offline SFP (He et al., IJCAI 2018): ResNet-20 on digits, 70% fewer MACs.

Command:
  python -m jaxprune.main --config=configs/sfp/default_offline.py \
      --workdir=/tmp/sfp_offline

Runs the method as the offline comparison does (README "Baselines"):
train 15 epochs from scratch, zeroing the smallest-L2 filters after every epoch (they may regrow), slim at the end; the slimmed network is evaluated and goes into results.json.
Runtime: about one to two minutes on 2 CPU cores. The measured top-1 is
in the README's comparison table (3 seeds).
"""
from configs import common
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  common.offline_baseline(config, 'sfp')  # ResNet-20, digits, 70% fewer MACs.
  return config
