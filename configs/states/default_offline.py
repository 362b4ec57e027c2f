"""Offline state loop: a small ViT on scikit-learn's digits, 70% absolute.

Command (method refill; also --config.method=rsst or imp):
  python -m jaxprune.main --config=configs/states/default_offline.py \
      --workdir=/tmp/states_offline_refill

6 states x 20 epochs of the seed-003 loop on the offline dataset: state 0
trains dense; each later state rewinds to the initial weights and trains
under 30% of the heads and of the MLP neurons (Refill: global pools by
weight L1; RSST: reached by the exp_custom_exponents ramp; IMP: 30% of the
prunable weights, unstructured). Then
`python -m jaxprune.report --workdir=...` tabulates the states.

Measured numbers: README.md, "IMP / Refill / RSST".
"""
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  config.model = 'vit_micro'  # Patch 2 on 8x8 images: 16 patches + CLS.
  config.model_overrides.hidden_size = 64  # Token width.
  config.model_overrides.depth = 4  # Blocks.
  config.model_overrides.num_heads = 4  # Heads per block, 16 in all.
  config.model_overrides.mlp_dim = 128  # MLP neurons per block, 512 in all.
  config.dataset = 'digits'  # Offline: 1,437 train / 360 test images.
  config.validation_size = 237  # 1,200 train / 237 validation.
  config.batch_size = 32  # 37 steps per epoch.
  config.eval_batch_size = 120  # Divisible by 8 fake or real devices.
  config.num_epochs = 20  # Epochs per state.
  # SGD (seed 003) leaves this small ViT near chance for the first ~1,000
  # steps; AdamW learns it in minutes.
  config.optimizer = 'adamw'  # Adam with decoupled weight decay.
  config.learning_rate = 0.005  # Peak.
  config.weight_decay = 1e-4  # Decoupled: masked weights barely decay.
  config.weight_decay_mode = 'decoupled'  # AdamW.
  config.schedule = 'cosine'  # After warmup; rebuilt every state.
  config.warmup_epochs = 2.0  # Linear warmup, rebuilt every state.
  config.log_every_steps = 37  # Once per epoch.
  config.method = 'refill'  # imp | refill | rsst.
  config.states.num_states = 6  # States 0..5.
  config.states.rate = 0.7  # 70% of heads and of neurons (or of weights).
  config.states.amount = 'absolute'  # Every state from 1 keeps 30%.
  config.states.rewind_epoch = 0  # Rewind to the initial weights.
  config.states.reg_schedule = 'exp_custom_exponents'  # RSST default.
  config.states.reg_granularity_prune = 1.0  # g.
  config.states.exponents = 4  # n.
  config.export = False  # No exported model for the demo.
  return config
