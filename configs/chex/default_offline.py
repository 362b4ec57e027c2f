"""Offline CHEX (Hou et al., CVPR 2022): ResNet-20 on digits, 70% fewer MACs.

Command:
  python -m jaxprune.main --config=configs/chex/default_offline.py \
      --workdir=/tmp/chex_offline

Runs the method as the offline comparison does (README "Baselines"):
train 15 epochs from scratch with soft masks: leverage-score column subset selection and regrowth every epoch until epoch 10, then frozen masks; the slimmed network is evaluated and goes into results.json.
Runtime: about one to two minutes on 2 CPU cores. The measured top-1 is
in the README's comparison table (3 seeds).
"""
from configs import common
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  common.offline_baseline(config, 'chex')  # ResNet-20, digits, 70% fewer MACs.
  config.chex.every_epochs = 1  # Delta T.
  config.chex.until_epoch = 10  # T_prune.
  return config
