"""REPrune MobileNetV2 on ImageNet, expansion widths only, s = 0.5.

Command:
  python -m jaxprune.main --config=configs/reprune/mobilenet_v2_imagenet.py \
      --workdir=/tmp/reprune_mobilenet_v2_imagenet --config.data_dir=<tfds dir>

Recipe: torchvision's MobileNetV2 schedule (300 epochs, SGD 0.045 for batch
256, wd 4e-5, cosine, bf16) with REPrune from scratch: T_prune 216 (the
ImageNet ResNets' 180/250 ratio), Delta T 2, BN-gamma allocation at s = 0.5.
Only the expansion (hidden) widths are pruned (the paper prunes expansions only): residual
groups are skipped by the policy; the non-residual projection outputs and
the last 1x1 conv (the classifier input) by `exclude`. The seed table has no MobileNetV2 row. Not run here (no GPU).
"""
from configs import common
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  config.model = 'mobilenet_v2'  # Width 1.0, dropout 0.2.
  config.dataset = 'imagenet2012'  # 1.28M train / 50k validation.
  config.batch_size = 256  # Global batch.
  config.eval_batch_size = 512  # Global eval batch.
  config.num_epochs = 300  # torchvision recipe.
  config.learning_rate = 0.045  # For batch 256.
  config.weight_decay = 4e-5  # torchvision recipe.
  config.schedule = 'cosine'  # In place of 0.98 per epoch.
  config.half_precision = True  # bf16 compute.
  config.log_every_steps = 500  # Progress lines.
  config.data_threads = 32  # JPEG decoding is the host bottleneck.
  common.reprune_schedule(config, until_epoch=216)  # T_prune, Delta T.
  config.reprune.sparsity = 0.5  # Global channel sparsity s.
  config.reprune.exclude = r'project_conv$|^last_conv$'  # Not expansions.
  return config
