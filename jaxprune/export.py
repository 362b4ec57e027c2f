"""Exporting a (slim) forward pass: `jax.export` artifacts plus variables.

`export` writes one serialized `jax.export.Exported` per batch size, the
variables as flax msgpack and a `meta.json`; `load_export` reads them back.
Variables and outputs travel as plain nested dicts of arrays: flax metadata
boxes (`nn.LogicallyPartitioned`, `nn.Partitioned`) are unboxed and an nnx
`State` becomes its pure dict, so any linen or nnx model round-trips.
"""
import collections.abc
import json
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune import variables as variables_lib


def _names(keypath) -> tuple[str, ...]:
  """A leaf's path as key names, without the `.value` of boxes/Variables."""
  return tuple(variables_lib.key_name(k) for k in keypath if not (
      isinstance(k, jax.tree_util.GetAttrKey) and k.name == 'value'))


def plain(tree: Any) -> Any:
  """`tree` as built-in containers of arrays: boxes unboxed, nnx states and
  FrozenDicts as dicts with string keys, tuples and lists kept."""
  from flax.core import meta  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  if isinstance(tree, meta.AxisMetadata):
    return plain(tree.unbox())
  if isinstance(tree, nnx.Variable):
    return plain(tree.get_value() if hasattr(tree, 'get_value') else
                 tree.value)
  if isinstance(tree, nnx.State):
    return plain(tree.to_pure_dict())
  if isinstance(tree, collections.abc.Mapping):
    return {str(k): plain(v) for k, v in tree.items()}
  if isinstance(tree, tuple) and hasattr(tree, '_fields'):
    return type(tree)(*(plain(v) for v in tree))
  if isinstance(tree, (list, tuple)):
    return type(tree)(plain(v) for v in tree)
  return tree


def _is_key(x) -> bool:
  return jax.dtypes.issubdtype(jnp.result_type(x), jax.dtypes.extended)


def storable(tree: Any) -> Any:
  """`plain(tree)` with PRNG keys as their raw key data (uint32)."""
  return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x,
                      plain(tree))


def _rebuilder(variables: Any) -> Callable[[Any], Any]:
  """A function from `storable(variables)`-shaped trees back to
  `variables`'s own structure (boxes, nnx states and PRNG keys included),
  matching leaves by path."""
  flat, treedef = jax.tree_util.tree_flatten_with_path(variables)
  paths = [_names(p) for p, _ in flat]
  impls = [jax.random.key_impl(x) if _is_key(x) else None for _, x in flat]
  pure_paths = [_names(p) for p, _ in
                jax.tree_util.tree_flatten_with_path(plain(variables))[0]]
  if sorted(paths) != sorted(pure_paths):
    raise ValueError('export: cannot map the variables to plain dicts '
                     f'(paths {paths[:3]}... vs {pure_paths[:3]}...).')

  def rebuild(pure):
    by_path = {_names(p): x for p, x in
               jax.tree_util.tree_flatten_with_path(pure)[0]}
    return jax.tree.unflatten(treedef, [
        by_path[p] if impl is None else jax.random.wrap_key_data(
            by_path[p], impl=impl) for p, impl in zip(paths, impls)])

  return rebuild


def _with_batch(args: Any, batch: int) -> Any:
  """`args` as shape structs with leading (batch) dim `batch`."""
  def one(x):
    shape = np.shape(x)
    if not shape:
      raise ValueError('export(batch_sizes=...) needs inputs with a leading '
                       'batch axis; got a scalar.')
    return jax.ShapeDtypeStruct((batch, *shape[1:]), jnp.result_type(x))
  return jax.tree.map(one, args)


def _batch_of(args: Any) -> int | None:
  """The common leading size of the inputs (None if they disagree)."""
  lead = {np.shape(x)[0] for x in jax.tree.leaves(args) if np.ndim(x)}
  return lead.pop() if len(lead) == 1 else None


def _artifact(batch: int) -> str:
  return f'forward_b{batch}.jax_exported'


def export(slim_apply_fn: Callable[..., Any], slim_vars: Any, *args: Any,
           path: str, batch_sizes: tuple[int, ...] | None = None) -> str:
  """Writes the slim forward pass as `jax.export` artifacts plus its params.

  `slim_apply_fn` may be any function `(variables, *args) -> outputs`, e.g.
  the eval-mode forward, or a train-mode one that also returns updated
  batch statistics (`mutable=['batch_stats']` when slimming).

  Files: one serialized `jax.export.Exported` per batch size,
  `<path>/forward_b<N>.jax_exported`; `<path>/variables.msgpack` (flax
  msgpack of `storable(slim_vars)`: plain dicts, PRNG keys as key data);
  `<path>/meta.json` with `inputs` (shapes at the first batch size), `batch_sizes`, `params` (trainable scalars:
  linen's 'params' collection or nnx `Param`s, as `jaxprune.flops.count`
  and results.json's `pruned_params` count them) and `variables` (all
  scalars, batch statistics included). The exported functions take and
  return plain trees (see `plain`).

  Args:
    slim_apply_fn: the function to export.
    slim_vars: its variables.
    *args: example inputs (only shapes and dtypes are used).
    path: the directory to write.
    batch_sizes: leading-axis sizes to export (each a separate artifact);
      default: the example inputs' own.

  Returns:
    `path`.
  """
  from flax import serialization  # pylint: disable=g-import-not-at-top
  rebuild = _rebuilder(slim_vars)
  pure_vars = storable(jax.device_get(slim_vars))

  def forward(pure, *inputs):
    return storable(slim_apply_fn(rebuild(pure), *inputs))

  spec = lambda x: jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x))
  if batch_sizes is None:
    batch = _batch_of(args)
    batch_sizes = () if batch is None else (batch,)
    structs = [jax.tree.map(spec, args)]
  else:
    batch_sizes = tuple(batch_sizes)
    bad = [b for b in batch_sizes if not isinstance(b, int) or b < 1]
    if bad or not batch_sizes:
      raise ValueError(f'batch_sizes={batch_sizes!r}; allowed: ints >= 1.')
    structs = [_with_batch(args, b) for b in batch_sizes]
  os.makedirs(path, exist_ok=True)
  names = [_artifact(b) for b in batch_sizes] or ['forward.jax_exported']
  for name, st in zip(names, structs):
    exp = jax.export.export(jax.jit(forward))(
        jax.tree.map(spec, pure_vars), *st)
    with open(os.path.join(path, name), 'wb') as f:
      f.write(exp.serialize())
  with open(os.path.join(path, 'variables.msgpack'), 'wb') as f:
    f.write(serialization.msgpack_serialize(pure_vars))
  size = lambda tree: int(sum(np.size(x) for x in jax.tree.leaves(tree)))
  with open(os.path.join(path, 'meta.json'), 'w') as f:
    json.dump({'inputs': [list(x.shape) for x in jax.tree.leaves(structs[0])],
               'batch_sizes': list(batch_sizes),
               'params': variables_lib.count(slim_vars),
               'variables': size(slim_vars)}, f)
  return path


def load_export(path: str) -> tuple[Callable[..., Any], Any]:
  """Reads an `export` directory: returns `(call, variables)`.

  `variables` is the plain tree that was saved (boxes unboxed, nnx states as
  dicts). `call(variables, *args)` runs the exported computation of the
  inputs' batch size; another batch size raises ValueError naming the exported ones.
  """
  from flax import serialization  # pylint: disable=g-import-not-at-top
  with open(os.path.join(path, 'meta.json')) as f:
    sizes = json.load(f).get('batch_sizes', [])
  files = {b: os.path.join(path, _artifact(b)) for b in sizes}
  if not files or not all(os.path.exists(p) for p in files.values()):
    files = {None: os.path.join(path, 'forward.jax_exported')}
  exported = {}
  for b, p in files.items():
    with open(p, 'rb') as f:
      exported[b] = jax.export.deserialize(bytearray(f.read()))
  with open(os.path.join(path, 'variables.msgpack'), 'rb') as f:
    variables = serialization.msgpack_restore(f.read())

  def call(variables, *args):
    if None in exported:
      return exported[None].call(variables, *args)
    b = _batch_of(args)
    if b not in exported:
      raise ValueError(f'batch size {b}; allowed: {sorted(exported)} (the '
                       f'sizes exported to {path}).')
    return exported[b].call(variables, *args)

  return call, variables
