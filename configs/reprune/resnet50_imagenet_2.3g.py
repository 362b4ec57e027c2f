"""REPrune 50-layer ResNet on ImageNet at 2.3G MACs (seed row: 77.2% top-1).

Command:
  python -m jaxprune.main --config=configs/reprune/resnet50_imagenet_2.3g.py \
      --workdir=/tmp/reprune_resnet50_imagenet_2.3g --config.data_dir=<tfds dir>

Recipe: NVIDIA DeepLearningExamples (250 epochs, batch 1024, SGD 0.875 /
1.024, cosine, label smoothing 0.1, bf16), T_prune 180, Delta T 2, from
scratch. Not run here (no GPU): about 40 GPU-hours on 8 A6000s (Table 6).
Paper: 2.3G FLOPs, 77.2% top-1 (dense 4.1G/76.2%).
"""
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  config_lib.nvidia_imagenet_recipe(config)  # 250 epochs, batch 1024, bf16.
  config.model = 'resnet50'  # torchvision topology.
  config.model_overrides.zero_init_residual = True  # NVIDIA recipe.
  config_lib.reprune_schedule(config, until_epoch=180)  # Methods.md 1.4.
  config.reprune.target_macs = 2.3e9  # The seed row's FLOPs (MACs) at 224.
  return config
