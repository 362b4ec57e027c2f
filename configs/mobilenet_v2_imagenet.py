"""Dense MobileNetV2 (width 1.0) on ImageNet, torchvision-style recipe.

Command:
  python -m jaxprune.main --config=configs/mobilenet_v2_imagenet.py \
      --workdir=/tmp/mobilenet_v2_imagenet --config.data_dir=<tfds dir>

torchvision's recipe (SGD lr 0.045 for batch 256, wd 4e-5, 300 epochs)
reports 71.88% top-1; here the per-epoch 0.98 step decay is replaced by a
cosine. 300.8M MACs, 3,504,872 params. Runtime not measured here (no GPU).
"""
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  config.model = 'mobilenet_v2'  # Width 1.0, dropout 0.2.
  config.dataset = 'imagenet2012'  # 1.28M train / 50k validation.
  config.batch_size = 256  # Global batch.
  config.eval_batch_size = 512  # Global eval batch.
  config.num_epochs = 300  # torchvision recipe.
  config.optimizer = 'momentum'  # SGD with momentum.
  config.learning_rate = 0.045  # For batch 256.
  config.momentum = 0.9  # SGD momentum.
  config.weight_decay = 4e-5  # torchvision recipe.
  config.schedule = 'cosine'  # In place of 0.98 per epoch.
  config.label_smoothing = 0.0  # None in torchvision's recipe.
  config.half_precision = True  # bf16 compute.
  config.log_every_steps = 500  # Progress lines.
  config.data_threads = 32  # JPEG decoding is the host bottleneck.
  return config
