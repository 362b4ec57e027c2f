"""Offline FPGM (He et al., CVPR 2019): ResNet-20 on digits, 70% fewer MACs.

Command:
  python -m jaxprune.main --config=configs/fpgm/default_offline.py \
      --workdir=/tmp/fpgm_offline

Runs the method as the offline comparison does (README "Baselines"):
train 15 epochs from scratch, re-masking the filters nearest the geometric median after every epoch (gradients masked in between), slim at the end; the slimmed network is evaluated and goes into results.json.
Runtime: about one to two minutes on 2 CPU cores. The measured top-1 is
in the README's comparison table (3 seeds).
"""
from configs import common
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  common.offline_baseline(config, 'fpgm')  # ResNet-20, digits, 70% fewer MACs.
  return config
