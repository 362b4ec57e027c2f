"""REPrune 18-layer ResNet on ImageNet at 1.03G MACs (seed row: 69.2% top-1).

Command:
  python -m jaxprune.main --config=configs/reprune/resnet18_imagenet.py \
      --workdir=/tmp/reprune_resnet18_imagenet --config.data_dir=<tfds dir>

Recipe: NVIDIA DeepLearningExamples (250 epochs, batch 1024, SGD 0.875 /
1.024, cosine, label smoothing 0.1, bf16), T_prune 180, Delta T 2, from
scratch. Not run here (no GPU): about 40 GPU-hours on 8 A6000s (Table 6).
Paper: 1.03G FLOPs, 69.2% top-1 (dense 1.81G/69.4%).

Where CHEX's published command (the loop REPrune adopts) differs from the
NVIDIA recipe, this config follows CHEX: fan-in Kaiming init, mixup 0.2,
delta0 = 0.3 and no zero-init of each block's last BN
(`common.chex_command`).
"""
from configs import common
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  common.nvidia_imagenet_recipe(config)  # 250 epochs, batch 1024, bf16.
  config.model = 'resnet18'  # torchvision topology.
  common.reprune_schedule(config, until_epoch=180)  # T_prune, Delta T.
  common.chex_command(config)  # Fan-in init, mixup 0.2, delta0 0.3.
  config.reprune.target_macs = 1.03e9  # The seed row's FLOPs (MACs) at 224.
  return config
