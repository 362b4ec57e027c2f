"""SSD300 with a ResNet-50 backbone on COCO-2017 (seed 000, Table 4 baseline).

Command (8 GPUs or a TPU slice; COCO prepared as ArrayRecord, see README):
  python -m jaxprune.main --config=configs/detection/ssd300_resnet50_coco.py \
      --workdir=/ckpt/ssd300_r50 --config.data_dir=/data/tfds \
      --config.init_from=/ckpt/resnet50_imagenet

The recipe of NVIDIA DeepLearningExamples' PyTorch SSD300 v1.1 (`main.py`
and `examples/SSD300_FP16_8GPU.sh`): SGD with momentum 0.9, batch 512,
learning rate 2.6e-3 x 512 / 32 = 0.0416 after 300 warmup iterations
(about 1.3 epochs), x0.1 at epochs 43 and 54, 65 epochs, weight decay
5e-4 off BN parameters and biases, bf16 compute. NVIDIA reports about
0.25 mAP@[.5:.95] for it; seed 000 reports 25.7 for its baseline. Not run
here (no COCO and no GPU on this machine); the mock-data smoke test
(`tests/test_detection.py`) runs it for 2 steps with evaluation.

`init_from` loads an ImageNet-trained backbone from a jaxprune
classification workdir of `configs/resnet50_imagenet.py`:
`init_from_map` renames its top-level ResNet layers to `backbone/...`
(the classifier `fc` and conv5_x are left out, as the reference drops
them).
"""
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  config.task = 'detection'  # MultiBox loss, NMS, COCO mAP.
  config.model = 'ssd300_resnet50'  # NVIDIA's SSD300 v1.1.
  config.dataset = 'coco'  # TFDS coco/2017: 118,287 train / 5,000 val.
  config.batch_size = 512  # Global batch (8 GPUs x 64).
  config.eval_batch_size = 256  # Divisible by the device count.
  config.num_epochs = 65  # NVIDIA's schedule.
  config.optimizer = 'momentum'  # SGD with momentum.
  config.momentum = 0.9  # As the reference.
  config.learning_rate = 0.0416  # 2.6e-3 per 32 images, scaled linearly.
  config.warmup_epochs = 1.3  # 300 iterations of batch 512.
  config.schedule = 'multistep'  # Step decay.
  config.lr_milestones = (43, 54)  # NVIDIA's --multistep.
  config.lr_gamma = 0.1  # x0.1 at each milestone.
  config.weight_decay = 5e-4  # Coupled L2.
  config.weight_decay_norm_bias = False  # No decay on BN and biases.
  config.half_precision = True  # bf16 compute (the reference uses AMP).
  config.eval_every_epochs = 5  # COCO evaluation is slow; and at the end.
  config.log_every_steps = 50  # Logging interval.
  config.init_from_map = (  # An ImageNet ResNet-50's layers -> backbone/.
      '^(params|batch_stats)/(conv1|bn1|layer[123]_\\d+)/=>\\1/backbone/\\2/',)
  return config
