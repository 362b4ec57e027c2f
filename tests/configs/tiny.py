"""A tiny ResNet-20 for the end-to-end tests (seconds on CPU)."""
from jaxprune import config as config_lib


def get_config():
  config = config_lib.base()
  config.model = 'resnet20'  # Narrowed below.
  config.model_overrides.stage_widths = (4, 8, 8)  # Tiny residual widths.
  config.dataset = 'digits'  # Offline.
  config.batch_size = 64  # 8 per fake device.
  config.eval_batch_size = 120  # 3 eval batches on digits.
  config.num_epochs = 4  # 88 steps on digits.
  config.learning_rate = 0.05  # Cosine from here.
  config.log_every_steps = 11  # Twice per epoch.
  config.data_threads = 2  # Small machine.
  return config
