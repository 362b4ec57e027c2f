"""REPrune on SSD300's ResNet-50 backbone: 50% fewer backbone MACs
(seed 000, Table 4: mAP 25.5 against the baseline's 25.7).

Command:
  python -m jaxprune.main \
      --config=configs/detection/reprune_ssd300_resnet50_coco.py \
      --workdir=/ckpt/ssd300_r50_reprune --config.data_dir=/data/tfds \
      --config.init_from=/ckpt/resnet50_imagenet

The recipe of `ssd300_resnet50_coco.py`, with REPrune pruning the
backbone's block-internal channels while training (every epoch until
epoch 45, as the paper's T_prune/T of 180/250 scaled to 65 epochs) to
half the backbone's MACs. The extra layers and heads stay dense
(`reprune.exclude`) and the backbone's output width (its residual stream)
is not pruned, so the whole network's MACs target is the dense total less
half the backbone's: 20,150,906,112 - 13,517,961,984 / 2 =
13,391,925,120 MACs per image at 300x300 (`jaxprune.flops.count` of the
model and of `jaxprune.models.ssd.ResNetBackbone`; the mock-data test
recounts both). Not run here (no COCO and no GPU).
"""
from configs.detection import ssd300_resnet50_coco

DENSE_MACS = 20_150_906_112  # SSD300-R50 at 300x300, per image.
BACKBONE_MACS = 13_517_961_984  # Its ResNet-50 conv1..conv4_x.


def get_config():
  config = ssd300_resnet50_coco.get_config()
  config.method = 'reprune'  # Prune while training.
  config.reprune.target_macs = DENSE_MACS - BACKBONE_MACS / 2  # Half the backbone's MACs off.
  config.reprune.exclude = 'extra|loc|conf'  # Extra layers and heads stay dense.
  config.reprune.allocation = 'bn_gamma'  # Eqs. 8-9, bisection on s.
  config.reprune.every_epochs = 1  # Delta T.
  config.reprune.until_epoch = 45  # T_prune: 180/250 of 65 epochs.
  return config
