"""Dense ResNet-18 on ImageNet with the NVIDIA recipe that REPrune uses.

Command:
  python -m jaxprune.main --config=configs/resnet18_imagenet.py \
      --workdir=/tmp/resnet18_imagenet --config.data_dir=<tfds dir>

Needs imagenet2012 prepared as ArrayRecord (manual download). Multi-host:
see launch/. Expected: the seed table's dense baseline is 69.4% top-1 at
1.81G MACs (jaxprune counts 1.814G, 11,689,512 params). Not run here (no
GPU).
"""
from configs import common
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  common.nvidia_imagenet_recipe(config)  # 250 epochs, batch 1024, bf16.
  config.model = 'resnet18'  # torchvision topology.
  return config
