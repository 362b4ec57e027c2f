"""ResNet-18 (CIFAR stem) on CIFAR-10: Refill from IMP survivors.

Command:
  python -m jaxprune.main --config=configs/states/resnet18_cifar10_refill.py \
      --workdir=/tmp/resnet18_cifar10_refill --config.data_dir=<tfds dir>
  python -m jaxprune.report --workdir=/tmp/resnet18_cifar10_refill

The CNN state loop of methods.md 3.2-3.3: 16 states x 160 epochs, each state
removing 20% of what remains (gradual: state 15 keeps 0.8^15 = 3.5%),
rewinding to the weights after epoch 1 of state 0; SGD lr 0.1, momentum 0.9,
wd 5e-4, multistep at epochs 80 and 120, batch 128. The residual stream
keeps its width; the block-internal channels are pruned.

Runtime: 16 x 160 epochs of ResNet-18 on CIFAR-10; not run here (no GPU).
Expected: about 95% top-1 at state 0 (the usual dense CIFAR ResNet-18); no
seed table gives per-state numbers for it.
"""
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  config.model = 'resnet18_cifar'  # 3x3/1 stem, no max-pool, 11,173,962 params.
  config.dataset = 'cifar10'  # Crop (pad 4) + flip.
  config.validation_size = 5000  # 45k train / 5k validation / 10k test.
  config.batch_size = 128  # Structure-LTH.
  config.eval_batch_size = 512  # Global eval batch.
  config.num_epochs = 160  # Epochs per state.
  config.optimizer = 'momentum'  # SGD with momentum.
  config.learning_rate = 0.1  # Peak.
  config.momentum = 0.9  # SGD momentum.
  config.weight_decay = 5e-4  # Coupled L2.
  config.schedule = 'multistep'  # x0.1 at the milestones.
  config.lr_milestones = (80, 120)  # Epochs.
  config.lr_gamma = 0.1  # Multistep factor.
  config.log_every_steps = 100  # Progress lines.
  config.method = 'refill'  # State-loop method.
  config.states.num_states = 16  # States 0..15.
  config.states.rate = 0.2  # Of what remains, per state.
  config.states.amount = 'gradual'  # IMP's usual iterative schedule.
  config.states.rewind_epoch = 1  # Rewind to the weights after epoch 1.
  config.states.criterion = 'remain'  # CNN Refill ranking (Refill default).
  config.states.fillback_rate = 0.0  # 0: Refill; > 0: Refill+.
  return config
