"""Dense ResNet-50 on ImageNet with the NVIDIA recipe that REPrune uses.

Command:
  python -m jaxprune.main --config=configs/resnet50_imagenet.py \
      --workdir=/tmp/resnet50_imagenet --config.data_dir=<tfds dir>

Expected: the seed table's dense baseline is 76.2% top-1 at 4.1G MACs
(jaxprune counts 4.089G, 25,557,032 params); the paper reports 43.75 h on
8 GPUs for 250 epochs. Not run here (no GPU).
"""
from configs import common
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  common.nvidia_imagenet_recipe(config)  # 250 epochs, batch 1024, bf16.
  config.model = 'resnet50'  # Bottleneck v1.5, torchvision topology.
  config.model_overrides.zero_init_residual = True  # NVIDIA recipe.
  return config
