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

from jaxprune.models import mobilenet_v2, resnet, resnet_cifar, ssd, vit

_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    **{f'resnet{d}': functools.partial(resnet_cifar.CifarResNet, depth=d)
       for d in (20, 32, 44, 56, 110)},
    'resnet18': functools.partial(resnet.ResNet, stage_sizes=(2, 2, 2, 2),
                                  block=resnet.BasicBlock),
    # 3x3/1 stem, no max-pool: the CIFAR ResNet-18 of Structure-LTH/RSST.
    'resnet18_cifar': functools.partial(
        resnet.ResNet, stage_sizes=(2, 2, 2, 2), block=resnet.BasicBlock,
        cifar_stem=True),
    'resnet34': functools.partial(resnet.ResNet, stage_sizes=(3, 4, 6, 3),
                                  block=resnet.BasicBlock),
    'resnet50': functools.partial(resnet.ResNet, stage_sizes=(3, 4, 6, 3),
                                  block=resnet.Bottleneck),
    'resnet101': functools.partial(resnet.ResNet, stage_sizes=(3, 4, 23, 3),
                                   block=resnet.Bottleneck),
    'mobilenet_v2': mobilenet_v2.MobileNetV2,
    # SSD300 over ResNet-50's conv1..conv4_x (NVIDIA's SSD300 v1.1).
    'ssd300_resnet50': ssd.SSD,
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


def _shape(params, *path) -> tuple[int, ...]:
  node = params
  for k in path:
    node = node[k]
  return tuple(node.shape)


def overrides_from_params(name: str, params: Any) -> dict[str, Any]:
  """Width attributes that rebuild zoo model `name` at these param shapes.

  Args:
    name: the zoo name the params belong to.
    params: the `params` collection (e.g. of a slimmed network).

  Returns:
    Keyword overrides for `create(name, num_classes, **overrides)`.
  """
  if name not in _REGISTRY:
    raise JaxpruneError(f'Unknown model {name!r}; allowed: {", ".join(NAMES)}.')
  factory = _REGISTRY[name]
  cls = factory.func if isinstance(factory, functools.partial) else factory
  out_w = lambda *path: _shape(params, *path)[-1]
  if cls is resnet_cifar.CifarResNet:
    n = (factory.keywords['depth'] - 2) // 6
    stages = tuple(out_w(f'layer{s + 1}_{n - 1}', 'conv2', 'kernel')
                   for s in range(3))
    if out_w('conv1', 'kernel') != stages[0]:
      raise JaxpruneError('The stem and stage 1 widths differ; a CIFAR ResNet '
                          'couples them.')
    return {'stage_widths': stages, 'block_widths': tuple(
        out_w(f'layer{s + 1}_{b}', 'conv1', 'kernel')
        for s in range(3) for b in range(n))}
  if cls is resnet.ResNet:
    sizes = factory.keywords['stage_sizes']
    bottleneck = factory.keywords['block'] is resnet.Bottleneck
    internal = ('conv1', 'conv2') if bottleneck else ('conv1',)
    last = 'conv3' if bottleneck else 'conv2'
    return {
        'stem_width': out_w('conv1', 'kernel'),
        'stage_widths': tuple(out_w(f'layer{s + 1}_{n - 1}', last, 'kernel')
                              for s, n in enumerate(sizes)),
        'block_widths': tuple(
            tuple(out_w(f'layer{s + 1}_{b}', c, 'kernel') for c in internal)
            for s, n in enumerate(sizes) for b in range(n)),
    }
  if cls is mobilenet_v2.MobileNetV2:
    n = sum(r for _, _, r, _ in mobilenet_v2.SETTINGS)
    return {
        'stem_width': out_w('stem_conv', 'kernel'),
        'block_out_widths': tuple(out_w(f'block{i}', 'project_conv', 'kernel')
                                  for i in range(n)),
        'hidden_widths': tuple(out_w(f'block{i}', 'dw_conv', 'kernel')
                               for i in range(n)),
        'last_width': out_w('last_conv', 'kernel'),
    }
  if cls is vit.ViT:
    depth = sum(1 for k in params if k.startswith('block'))
    q = [_shape(params, f'block{i}', 'attn', 'query', 'kernel')
         for i in range(depth)]
    v = [_shape(params, f'block{i}', 'attn', 'value', 'kernel')
         for i in range(depth)]
    dims = {s[2] for s in q} | {s[2] for s in v}
    if len(dims) != 1:
      raise JaxpruneError(f'Head dims {sorted(dims)} differ across blocks or '
                          'between q/k and v; the zoo ViT has one head_dim.')
    return {
        'hidden_size': out_w('patch_embed', 'kernel'), 'depth': depth,
        'num_heads': tuple(s[1] for s in q), 'head_dim': dims.pop(),
        'mlp_dim': tuple(out_w(f'block{i}', 'fc1', 'kernel')
                         for i in range(depth)),
    }
  raise JaxpruneError(f'Model {name!r} has no width overrides.')
