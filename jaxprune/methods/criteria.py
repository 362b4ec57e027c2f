"""Importance criteria of units: one home, used by every method.

Each criterion maps units (`jaxprune.methods.units.Unit`) to scores, float
[size] per group (higher = more important):

* `filter_norm`: L1 or L2 norm of each filter of the unit's `kernel` (Li
  et al., "Pruning Filters for Efficient ConvNets", arXiv:1608.08710);
* `bn_gamma`: |gamma| of the unit's normalisation scales, averaged (Liu et
  al., "Learning Efficient Convolutional Networks through Network
  Slimming", arXiv:1708.06519);
* `magnitude`: sum of |W| over every producer kernel (for a head: its Q, K
  and V weights; for an MLP neuron: its fc1 weights), Refill's criterion
  (Chen et al., "Coarsening the Granularity: Towards Structurally Sparse
  Lottery Tickets", arXiv:2202.04736);
* `activation`: L1 or L2 norm of the unit's output feature map on a batch;
* `saliency`: SNIP's sum of |w dL/dw| over the unit's producer weights
  (Lee et al., arXiv:1810.02340).

Kernel criteria (contracts: `criteria.<name>(kernel) -> scores [n]`, for a
kernel with its n output channels on the last axis, e.g. a conv's
`[kh, kw, c_in, n]` or a dense `[c_in, n]`; higher = more important):

* `l1`, `l2`: the filter norms sum |W| and sqrt(sum W^2) (Li et al.,
  ICLR 2017; He et al., "Soft Filter Pruning", IJCAI 2018);
* `fpgm`: sum_k ||F_i - F_k||_2, the summed distance of filter i to the
  layer's other filters; the smallest are nearest the geometric median,
  the most replaceable (He et al., "Filter Pruning via Geometric Median",
  CVPR 2019, Eq. 6);
* `leverage`: the column leverage scores of the filter matrix F [D, n] in
  its top-r right singular subspace, sum_{j<r} V[i, j]^2 (the column subset
  selection of Hou et al., "CHEX", CVPR 2022).

`top_k` keeps the k highest scores of one group; `global_top` of a pool of
groups; `magnitude_masks` the largest |w| of a set of kernels, unstructured.
"""
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune import structure
from jaxprune.errors import JaxpruneError
from jaxprune.methods.units import Unit

NORMS = ('l1', 'l2')


def axis_sums(x: jax.Array, axis: int) -> jax.Array:
  """Sums of `x` over everything but `axis`: [x.shape[axis]]."""
  return jnp.sum(jnp.moveaxis(x, axis, 0).reshape(x.shape[axis], -1), axis=1)


def unit_sums(x: jax.Array, axis: int, index=None) -> jax.Array:
  """Per-unit sums of `x` over everything but `axis`, where unit c owns
  entry c of the axis (index None) or the entries index[c]."""
  per_entry = axis_sums(x, axis)
  return per_entry if index is None else jnp.sum(per_entry[index], axis=1)


def producer_sum(unit: Unit, per_producer) -> jax.Array:
  """Sum over the unit's producers of `per_producer(path, axis, index)`
  (each a float [size]): float32 [size]."""
  total = jnp.zeros((unit.size,), jnp.float32)
  for i, (path, axis) in enumerate(unit.producers):
    total = total + per_producer(path, axis, unit.entries(i))
  return total


def _filters(kernel) -> jax.Array:
  """The filter matrix F [D, n] of a kernel [..., n], in float32 (float64
  under x64)."""
  w = jnp.asarray(kernel)
  if w.ndim < 2:
    raise JaxpruneError(f'kernel of shape {tuple(w.shape)}; allowed: 2 or '
                        'more axes, output channels last.')
  w = w.reshape(-1, w.shape[-1])
  return w.astype(jnp.promote_types(w.dtype, jnp.float32))


def l1(kernel) -> jax.Array:
  """Filter L1 norms: sum |W[..., i]| per output channel i: [n]."""
  return jnp.sum(jnp.abs(_filters(kernel)), axis=0)


def l2(kernel) -> jax.Array:
  """Filter L2 norms: sqrt(sum W[..., i]^2) per output channel i: [n]."""
  return jnp.sqrt(jnp.sum(jnp.square(_filters(kernel)), axis=0))


def fpgm(kernel) -> jax.Array:
  """FPGM scores: sum_k ||F_i - F_k||_2 over the layer's filters: [n].

  Filters with the smallest scores are nearest the geometric median of
  the layer (their information is shared by the others) and go first.
  The distances are computed from the Gram matrix, as one matmul.
  """
  f = _filters(kernel)
  sq = jnp.sum(f * f, axis=0)
  d2 = sq[:, None] + sq[None, :] - 2 * (f.T @ f)
  # sqrt(0) has no gradient and rounding can make d2 slightly negative.
  return jnp.sum(jnp.sqrt(jnp.maximum(d2, 0.0)), axis=1)


def leverage(kernel, rank=None) -> jax.Array:
  """Column leverage scores of F [D, n] in rank r: sum_{j<r} V[i, j]^2.

  Args:
    kernel: [..., n], output channels last.
    rank: r, the subspace dimension (CHEX uses the number of channels it
      keeps); None: ceil(min(D, n) / 2). Clipped to 1..min(D, n). May be
      traced (jittable).

  Returns:
    float [n], in [0, 1], summing to r.
  """
  f = _filters(kernel)
  full = min(f.shape)
  r = (full + 1) // 2 if rank is None else jnp.clip(rank, 1, full)
  _, _, vt = jnp.linalg.svd(f, full_matrices=False)  # vt: [full, n]
  use = (jnp.arange(full) < r)[:, None]
  return jnp.sum(jnp.where(use, vt * vt, 0.0), axis=0)


KERNEL_CRITERIA = {'l1': l1, 'l2': l2, 'fpgm': fpgm, 'leverage': leverage}


def filter_norm(params: Any, unit: Unit, norm: str = 'l1') -> jax.Array:
  """L1 or L2 norm of each filter `W[..., c]` of the unit's kernel."""
  if norm not in NORMS:
    raise JaxpruneError(f'norm={norm!r}; allowed: {", ".join(NORMS)}.')
  if unit.kernel is None:
    raise JaxpruneError(f'Group {unit.group!r} has no kernel with its '
                        'channels on the last axis to take filter norms of.')
  return KERNEL_CRITERIA[norm](structure.lookup(params, unit.kernel))


def kernel_scores(params: Any, unit: Unit, name: str, **kw) -> jax.Array:
  """A kernel criterion (`l1`, `l2`, `fpgm`, `leverage`) of the unit's
  kernel (`Unit.kernel`): float [size]."""
  if name not in KERNEL_CRITERIA:
    raise JaxpruneError(f'criterion={name!r}; allowed: '
                        f'{", ".join(KERNEL_CRITERIA)}.')
  if unit.kernel is None:
    raise JaxpruneError(f'Group {unit.group!r} has no kernel with its '
                        f'channels on the last axis to score with {name}.')
  return KERNEL_CRITERIA[name](structure.lookup(params, unit.kernel), **kw)


def bn_gamma(params: Any, unit: Unit) -> jax.Array:
  """|gamma| per channel, averaged over the unit's normalisation scales."""
  if not unit.gammas:
    raise JaxpruneError(
        f'Group {unit.group!r} has no normalisation scale for a BN-gamma '
        "criterion; use a uniform allocation or another criterion.")
  return jnp.mean(jnp.stack([jnp.abs(structure.lookup(params, p)) for p in
                             unit.gammas]), axis=0)


def magnitude(params: Any, unit: Unit) -> jax.Array:
  """Sum of |W| of the unit's producer weights, per unit: float [size]."""
  return producer_sum(unit, lambda path, axis, index: unit_sums(
      jnp.abs(jnp.asarray(structure.lookup(params, path), jnp.float32)),
      axis, index))


def activation(apply_fn: Callable[..., Any], variables: Any, x,
               found: list[Unit], norm: str = 'l1') -> dict[str, jax.Array]:
  """L1 or L2 norm of each unit's output feature map on the batch `x`.

  The model runs in eval mode with Flax's `capture_intermediates`; a unit's
  outputs are those of the modules owning its producer kernels (their
  trailing output axes mirror the kernel's, so kernel axis a is output axis
  `out.ndim - (kernel.ndim - a)`). Jittable.

  Args:
    apply_fn: a Flax linen `apply` (`model.apply`).
    variables: the model variables (trained, unmasked weights).
    x: a batch of model inputs.
    found: the units to score.
    norm: 'l1' (sum |y|) or 'l2' (sqrt of sum y^2), over everything but the
      unit axis.

  Returns:
    group -> float32 [size].
  """
  if norm not in NORMS:
    raise ValueError(f'norm={norm!r}; allowed: {", ".join(NORMS)}.')
  _, state = apply_fn(variables, x, train=False, capture_intermediates=True,
                      mutable=['intermediates'])
  inter = state['intermediates']

  def per(path, axis, index):
    node = inter
    for k in path[:-1]:
      if k not in node:
        raise ValueError(f'No captured output for module {path[:-1]}; '
                         'activation scores need a Flax linen module per '
                         'kernel.')
      node = node[k]
    y = node['__call__'][0].astype(jnp.float32)
    ndim = len(np.shape(structure.lookup(variables['params'], path)))
    a = y.ndim - (ndim - axis)
    if norm == 'l1':
      return unit_sums(jnp.abs(y), a, index)
    return jnp.sqrt(unit_sums(y * y, a, index))

  return {u.group: producer_sum(u, per) for u in found}


def saliency(loss_fn: Callable[[Any], jax.Array], params: Any,
             found: list[Unit]) -> dict[str, jax.Array]:
  """SNIP saliency: sum of |w * dL/dw| over each unit's producer weights.

  Args:
    loss_fn: params -> scalar loss on one batch.
    params: the trained, unmasked weights.
    found: the units to score.

  Returns:
    group -> float32 [size]. Jittable.
  """
  grads = jax.grad(loss_fn)(params)

  def per(path, axis, index):
    return unit_sums(jnp.abs(
        jnp.asarray(structure.lookup(params, path), jnp.float32) *
        jnp.asarray(structure.lookup(grads, path), jnp.float32)), axis, index)

  return {u.group: producer_sum(u, per) for u in found}


def top_k(scores: jax.Array, keep) -> jax.Array:
  """Bool mask of the `keep` highest scores; ties go to the lower index.

  Jittable in `scores` and `keep`.
  """
  rank = jnp.argsort(jnp.argsort(-scores, stable=True), stable=True)
  return rank < keep


def global_top(scores: dict[str, Any], keep: int) -> dict[str, np.ndarray]:
  """Keeps the `keep` highest scores over all groups of one pool.

  Ties go to the earlier group, then the lower index (a stable order).

  Returns:
    group -> bool keep mask.
  """
  names = list(scores)
  flat = np.concatenate([np.asarray(scores[k], np.float64) for k in names])
  if not 0 <= keep <= flat.size:
    raise ValueError(f'keep={keep}; allowed: 0..{flat.size}.')
  order = np.argsort(-flat, kind='stable')
  chosen = np.zeros(flat.size, bool)
  chosen[order[:keep]] = True
  out, start = {}, 0
  for k in names:
    n = np.size(scores[k])
    out[k] = chosen[start:start + n]
    start += n
  return out


def magnitude_masks(params: Any, paths: list[tuple[str, ...]],
                    rate: float | None = None, current: Any = None,
                    keep: int | None = None) -> Any:
  """Removes `rate` of the remaining weights of `paths` by global |w|.

  Args:
    params: the trained weights.
    paths: kernels to prune (`units.prunable_kernels`).
    rate: fraction of the remaining (currently kept) weights to remove.
    current: masks from the previous state (a pytree like params, as this
      function returns); None keeps everything.
    keep: instead of `rate`: the number of weights to keep, among the
      remaining ones.

  Returns:
    A bool pytree like `params`: full-shape masks on `paths`, and shape
    (1,) * ndim True masks (broadcastable) elsewhere. Ties at the
    threshold go to the later weights in `paths` order.
  """
  if (rate is None) == (keep is None):
    raise ValueError('Pass exactly one of rate and keep.')
  if rate is not None and not 0 <= rate < 1:
    raise ValueError(f'rate={rate}; allowed: 0 <= rate < 1.')
  flat = []
  for path in paths:
    w = np.abs(np.asarray(structure.lookup(params, path), np.float64))
    live = (np.ones(w.shape, bool) if current is None else
            np.broadcast_to(np.asarray(structure.lookup(current, path), bool),
                            w.shape))
    flat.append(np.where(live, w, -1.0).ravel())
  values = np.concatenate(flat) if flat else np.zeros(0)
  remaining = int(np.sum(values >= 0))
  if keep is not None and not 0 <= keep <= remaining:
    raise ValueError(f'keep={keep}; allowed: 0..{remaining} (the remaining '
                     'weights).')
  drop = int(rate * remaining) if keep is None else remaining - keep
  order = np.argsort(values, kind='stable')
  kept = values >= 0
  dead = int(values.size - remaining)  # Already pruned: first in order.
  kept[order[dead:dead + drop]] = False
  masks = jax.tree.map(lambda x: np.ones((1,) * np.ndim(x), bool), params)
  start = 0
  for path, part in zip(paths, flat):
    node = masks
    for k in path[:-1]:
      node = node[k]
    node[path[-1]] = kept[start:start + part.size].reshape(
        np.shape(structure.lookup(params, path)))
    start += part.size
  return masks
