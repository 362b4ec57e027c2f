"""Every experiment config loads, validates and builds its model."""
import glob
import importlib.util
import os

import jax
import jax.numpy as jnp
import pytest

from jaxprune import config as config_lib
from jaxprune import data, models

from conftest import REPO

CONFIGS = sorted(glob.glob(os.path.join(REPO, 'configs', '**', '*.py'),
                           recursive=True))


def load(path):
  spec = importlib.util.spec_from_file_location('cfg', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  assert module.__doc__ and 'python -m jaxprune.main' in module.__doc__
  return module.get_config()


def test_dense_baselines_exist():
  names = {os.path.relpath(p, os.path.join(REPO, 'configs')) for p in CONFIGS}
  assert {'default.py', 'resnet56_cifar10.py', 'resnet18_imagenet.py',
          'resnet50_imagenet.py', 'mobilenet_v2_imagenet.py',
          'vit_small_cifar10.py'} <= names


@pytest.mark.parametrize('path', CONFIGS,
                         ids=[os.path.basename(p) for p in CONFIGS])
def test_config_is_valid(path):
  config = load(path)
  config_lib.validate(config)
  spec = data.get_spec(config.dataset)
  assert config.batch_size % 8 == 0 and config.eval_batch_size % 8 == 0
  model = models.create(config.model, spec.num_classes,
                        **dict(config.model_overrides))
  shape = (1, spec.image_size, spec.image_size, spec.channels)
  jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))


def test_seed003_vit_recipe():
  c = load(os.path.join(REPO, 'configs', 'vit_small_cifar10.py'))
  assert (c.learning_rate, c.momentum, c.weight_decay, c.warmup_epochs,
          c.batch_size, c.validation_size) == (0.01, 0.9, 1e-4, 20.0, 128, 5000)
