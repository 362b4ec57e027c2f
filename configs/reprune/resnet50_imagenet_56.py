"""REPrune ResNet-50 on ImageNet at 56.09% FLOPs off (seed row: 77.04%).

Command:
  python -m jaxprune.main --config=configs/reprune/resnet50_imagenet_56.py \
      --workdir=/tmp/reprune_resnet50_imagenet_56 --config.data_dir=<tfds dir>

Recipe: NVIDIA DeepLearningExamples (250 epochs, batch 1024, SGD 0.875 /
1.024, cosine, label smoothing 0.1, bf16), T_prune 180, Delta T 2, from
scratch. Not run here (no GPU): about 40 GPU-hours on 8 A6000s (Table 6).
Paper: 56.09% FLOPs reduction, 77.04% top-1 (dense 76.2%).
"""
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  config_lib.nvidia_imagenet_recipe(config)  # 250 epochs, batch 1024, bf16.
  config.model = 'resnet50'  # torchvision topology.
  config.model_overrides.zero_init_residual = True  # NVIDIA recipe.
  config_lib.reprune_schedule(config, until_epoch=180)  # Methods.md 1.4.
  config.reprune.target_reduction = 0.5609  # The seed row's FLOPs cut.
  return config
