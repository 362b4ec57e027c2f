"""Offline detection demo with REPrune on the small SSD's backbone: half
of the backbone's MACs off while training from scratch.

Command:
  python -m jaxprune.main --config=configs/detection/reprune_offline.py \
      --workdir=/tmp/det_offline_reprune

`default_offline.py`'s recipe, with REPrune (Ward clustering, cut height,
greedy coverage, CHEX regrowth) on the backbone's block-internal
channels every epoch until epoch 21 (T_prune/T = 180/250 of the paper,
scaled to 30 epochs), then frozen masks, slimming and evaluation of the
slimmed detector. The extra layers and heads stay dense, so the whole
network's MACs target is the dense total less half the backbone's:
14,295,296 - 8,110,080 / 2 = 10,240,256 per 64x64 image
(`jaxprune.flops.count` of the model and of its `ResNetBackbone`; the
test recounts both).

Measured on 2 CPU cores (the command above): 5 min 20 s wall; the slimmed
detector has 10,216,576 MACs (28.53% fewer; its backbone 4,031,360, 0.58%
under the target) and 298,131 params, and mAP 32.02 (masked and slimmed
alike; dense: 41.01).
"""
from configs.detection import default_offline

DENSE_MACS = 14_295_296  # The small SSD at 64x64, per image.
BACKBONE_MACS = 8_110_080  # Its backbone (stem and three stages).


def get_config():
  config = default_offline.get_config()
  config.method = 'reprune'  # Prune while training.
  config.reprune.target_macs = DENSE_MACS - BACKBONE_MACS // 2  # Half the backbone's MACs off.
  config.reprune.exclude = 'extra|loc|conf'  # Extra layers and heads stay dense.
  config.reprune.allocation = 'bn_gamma'  # Eqs. 8-9, bisection on s.
  config.reprune.delta0 = 0.25  # CHEX regrowth.
  config.reprune.every_epochs = 1  # Delta T.
  config.reprune.until_epoch = 21  # T_prune: 180/250 of 30 epochs.
  return config
