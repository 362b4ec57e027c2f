"""Offline detection demo: a small SSD on `digits_detection` (64x64
canvases with up to 4 pasted scikit-learn digits, 10 classes).

Command:
  python -m jaxprune.main --config=configs/detection/default_offline.py \
      --workdir=/tmp/det_offline

The same task, loss, NMS and pycocotools evaluation as
`ssd300_resnet50_coco.py`, on a smaller network and input: the SSD's
torchvision-style ResNet backbone (stem 16, three bottleneck stages of
one block, strides 1, 2, 1: an 8x8 map at 64x64) and three extra blocks
(4x4, 2x2, 1x1), with 380 default boxes.

Measured on 2 CPU cores (the command above): 4 min 29 s wall; mAP 41.01,
AP50 56.19, AP75 50.63 on the 300 test canvases; 14,295,296 MACs and
350,716 params. The REPrune variant is `reprune_offline.py`.
"""
from jaxprune import config as config_lib

# The small SSD (attributes of `jaxprune.models.ssd.SSD`).
SMALL_SSD = dict(
    stage_sizes=(1, 1, 1),  # One bottleneck per stage.
    stem_width=16,  # Stem conv width.
    stage_widths=(32, 64, 128),  # Block output widths per stage.
    block_widths=((16, 16), (32, 32), (64, 64)),  # Per block: its two inner widths.
    extra_widths=((32, 64), (32, 64), (32, 64)),  # (1x1, output) per extra block.
    extra_strides=(2, 2, 2),  # 8 -> 4 -> 2 -> 1.
    per_location=(4, 6, 6, 4),  # Default boxes per location of each map.
)


def get_config():
  config = config_lib.base()
  config.task = 'detection'  # MultiBox loss, NMS, COCO mAP.
  config.model = 'ssd300_resnet50'  # The SSD class, made small below.
  config.model_overrides.update(SMALL_SSD)  # See SMALL_SSD.
  config.dataset = 'digits_detection'  # Offline: 1,500 train / 300 test canvases.
  config.batch_size = 32  # Global batch.
  config.eval_batch_size = 96  # Divisible by 8 fake or real devices.
  config.num_epochs = 30  # About 1,400 steps.
  config.optimizer = 'momentum'  # SGD with momentum 0.9.
  config.learning_rate = 0.05  # Peak of the cosine schedule.
  config.warmup_epochs = 1.0  # One epoch of linear warmup.
  config.weight_decay = 5e-4  # Coupled L2, as the COCO recipe.
  config.weight_decay_norm_bias = False  # No decay on BN and biases.
  config.eval_every_epochs = 10  # And at the end.
  config.log_every_steps = 46  # Once per epoch.
  d = config.detection
  d.feat_sizes = (8, 4, 2, 1)  # The four maps at 64x64.
  d.steps = (8, 16, 32, 64)  # Pixels per map cell.
  d.scales = (12, 18, 26, 36, 50)  # Digits are 12-28 px; one more than maps.
  d.aspect_ratios = ((2,), (2, 3), (2, 3), (2,))  # Matches per_location.
  return config
