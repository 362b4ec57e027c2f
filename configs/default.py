"""Offline demo: ResNet-20 on scikit-learn's digits, no network needed.

Command:
  python -m jaxprune.main --config=configs/default.py --workdir=/tmp/default

The digits dataset (1,797 8x8 images shipped with scikit-learn) is built
into the TFDS data dir as ArrayRecord on first use and read with grain.
Measured on 2 CPU cores (the command above): 35 s wall, 98.89% top-1 and
100.0% top-5 on the 360 test images; 2,516,608 MACs, 269,434 params.
"""
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  config.model = 'resnet20'  # CIFAR ResNet-20: 16/32/64 widths.
  config.dataset = 'digits'  # Offline: 1,437 train / 360 test images.
  config.batch_size = 64  # Global batch.
  config.eval_batch_size = 120  # Divisible by 8 fake or real devices.
  config.num_epochs = 15  # About 330 steps.
  config.learning_rate = 0.05  # Peak of the cosine schedule.
  config.warmup_epochs = 1.0  # One epoch of linear warmup.
  config.weight_decay = 5e-4  # Coupled L2, as PyTorch SGD.
  config.log_every_steps = 22  # Once per epoch.
  return config
