"""FPGM (He et al., CVPR 2019) on ResNet-18 / ImageNet at about 1.05G MACs, from pretrained.

Command:
  python -m jaxprune.main --config=configs/fpgm/resnet18_imagenet.py \
      --workdir=/tmp/fpgm_resnet18_imagenet --config.data_dir=<tfds dir> \
      --config.init_from=<trained dense ResNet-18: a jaxprune workdir, .npz
      or .safetensors (PyTorch layouts are converted)>

Recipe: the seed table's comparison row: 200 epochs from pretrained
weights (masked from epoch 0), the NVIDIA recipe otherwise, block-internal
groups only. Paper (seed table 000): about 1.05G FLOPs, SFP 67.1% / FPGM
68.4% top-1 (dense 69.4%), 200 epochs. Not run here (no GPU). Without init_from the
run stops: init_from is set to a path that does not exist.
"""
from configs import common
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  common.nvidia_imagenet_recipe(config)  # Batch 1024, SGD, cosine, bf16.
  config.model = 'resnet18'  # torchvision topology.
  config.num_epochs = 200  # The seed table's schedule for these rows.
  config.init_from = '<set --config.init_from to the pretrained ResNet-18>'  # Required.
  config.method = 'fpgm'  # Re-masked after every epoch.
  config.fpgm.target_macs = 1.05e9  # The seed row's FLOPs (MACs) at 224.
  config.fpgm.prune_at_start = True  # Pretrained: mask before epoch 1 too.
  return config
