"""The model zoo: `create(name, num_classes, **overrides)`.

Every model is a Flax linen module called as `model.apply(variables, x,
train=...)`, initialised with `model.init(rng, x, train=False)`; BatchNorm
statistics live in the `batch_stats` collection. Per-layer widths are
attributes, so a physically slimmed network is the same class with smaller
widths.
"""
import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn

from jaxprune.errors import JaxpruneError

from jaxprune.models import mobilenet_v2, resnet, resnet_cifar, vit

_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    **{f'resnet{d}': functools.partial(resnet_cifar.CifarResNet, depth=d)
       for d in (20, 32, 44, 56, 110)},
    'resnet18': functools.partial(resnet.ResNet, stage_sizes=(2, 2, 2, 2),
                                  block=resnet.BasicBlock),
    'resnet34': functools.partial(resnet.ResNet, stage_sizes=(3, 4, 6, 3),
                                  block=resnet.BasicBlock),
    'resnet50': functools.partial(resnet.ResNet, stage_sizes=(3, 4, 6, 3),
                                  block=resnet.Bottleneck),
    'resnet101': functools.partial(resnet.ResNet, stage_sizes=(3, 4, 23, 3),
                                   block=resnet.Bottleneck),
    'mobilenet_v2': mobilenet_v2.MobileNetV2,
    'vit_small': functools.partial(vit.ViT, hidden_size=384, depth=12,
                                   num_heads=6, mlp_dim=1536),
    'vit_tiny': functools.partial(vit.ViT, hidden_size=192, depth=12,
                                  num_heads=3, mlp_dim=768),
    # A few-thousand-parameter ViT for tests and offline demos.
    'vit_micro': functools.partial(vit.ViT, hidden_size=32, depth=2,
                                   num_heads=4, mlp_dim=64, patch_size=2,
                                   image_size=8),
}

NAMES = tuple(sorted(_REGISTRY))


def create(name: str, num_classes: int, **overrides: Any) -> nn.Module:
  """Builds a zoo model.

  Args:
    name: one of `jaxprune.models.NAMES`.
    num_classes: classifier outputs.
    **overrides: module attributes to set, e.g. `block_widths=...`,
      `shortcut='B'`, `patch_size=16, image_size=224`, `dtype=jnp.bfloat16`.

  Returns:
    The (unbound) Flax module.

  Raises:
    ValueError: for an unknown name or an override the model does not have.
  """
  if name not in _REGISTRY:
    raise JaxpruneError(f'Unknown model {name!r}; allowed: {", ".join(NAMES)}.')
  factory = _REGISTRY[name]
  fields = {f.name for f in dataclasses.fields(factory.func if isinstance(
      factory, functools.partial) else factory)} - {'parent', 'name'}
  bad = sorted(set(overrides) - fields)
  if bad:
    raise JaxpruneError(f'Model {name!r} has no field(s) {bad}; allowed: '
                     f'{sorted(fields - {"num_classes"})}.')
  return factory(num_classes=num_classes, **overrides)
