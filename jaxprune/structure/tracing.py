"""`trace`: the channel graph of any function of (variables, *inputs)."""
from typing import Any, Callable

import jax

from jaxprune.structure import graph as graph_lib
from jaxprune.structure import jaxpr as jx
from jaxprune.structure import tracer as tracer_lib
from jaxprune.structure.members import Member


def trace(apply_fn: Callable[..., Any], variables: Any, *args: Any,
          **kwargs: Any) -> graph_lib.ChannelGraph:
  """Builds the channel graph of `apply_fn(variables, *args, **kwargs)`.

  Args:
    apply_fn: e.g. `model.apply`, or any function of (variables, *args).
    variables: the variables pytree, e.g. {'params': ..., 'batch_stats': ...}
      (arrays or `jax.ShapeDtypeStruct`s); its top-level keys are the
      collections of the members.
    *args: example inputs (arrays or ShapeDtypeStructs); their axes are never
      pruned.
    **kwargs: static keyword arguments, e.g. `train=False`. The graph keeps
      them (`graph.kwargs`), and `jaxprune.slim.slim` replays them.

  Returns:
    The `ChannelGraph`. Variables the call never reads are members of no
    group and are listed in `graph.unused`.

  Train mode: trace `lambda v, x: model.apply(v, x, train=True,
  mutable=['batch_stats'])`. An output that is a variable's new value (the
  updated batch statistics, a decode cache) is tied to that variable and
  sliced like it, instead of being a fixed-width model output.
  """
  var_leaves, treedef = jax.tree.flatten(variables)
  arg_leaves, args_treedef = jax.tree.flatten(args)
  out_store = {}

  def fn(var_leaves, arg_leaves):
    v = jax.tree.unflatten(treedef, var_leaves)
    a = jax.tree.unflatten(args_treedef, arg_leaves)
    out = apply_fn(v, *a, **kwargs)
    flat, out_store['treedef'] = jax.tree.flatten(out)
    out_store['paths'] = [tuple(graph_lib.key_name(k) for k in p) for p, _ in
                          jax.tree_util.tree_flatten_with_path(out)[0]]
    return flat

  closed = jax.make_jaxpr(fn)(var_leaves, arg_leaves)
  t = tracer_lib.Tracer()
  jaxpr = closed.jaxpr
  leaves = graph_lib.leaf_members(variables)
  for (coll, path, _), v in zip(leaves, jaxpr.invars[:len(var_leaves)]):
    t.set_info(v, tracer_lib.VarInfo(zero=True, origin=Member(coll, tuple(path), 0)))
  arg_paths = [''.join(str(k) for k in p) for p, _ in
               jax.tree_util.tree_flatten_with_path(args)[0]]
  for v, name in zip(jaxpr.invars[len(var_leaves):], arg_paths):
    t.set_info(v, tracer_lib.VarInfo(data=True))
    for a in range(len(jx.shape(v))):
      t.io[t.node(v, a)] = f'touches the model input (args{name}, axis {a})'
      t.touches[t.node(v, a)].add('input')
  for v in jaxpr.constvars:
    t.set_info(v, tracer_lib.VarInfo(const=True))
  t.walk(jaxpr)
  # An output that is a variable's new value (flax's `mutable=[...]`, e.g.
  # updated batch statistics) is sliced like that variable, not fixed in
  # width like the model's outputs.
  var_of = {(coll, *map(str, path)): v for (coll, path, _), v in
            zip(leaves, jaxpr.invars[:len(var_leaves)])}
  for v, names in zip(jaxpr.outvars, out_store['paths']):
    if jx.is_literal(v):
      continue
    same = next((var_of[names[i:]] for i in range(len(names) - 1)
                 if names[i:] in var_of), None)
    if same is not None and jx.shape(same) == jx.shape(v):
      for a in range(len(jx.shape(v))):
        t.union(t.node(v, a), t.node(same, a), 'a variable and its update')
      continue
    where = '/'.join(names) or 'the output'
    for a in range(len(jx.shape(v))):
      t.io[t.node(v, a)] = f'touches the model output ({where}, axis {a})'
      t.touches[t.node(v, a)].add('output')
  return graph_lib.ChannelGraph(t, closed, variables, leaves, treedef,
                                len(var_leaves), args_treedef,
                                out_store.get('treedef'), kwargs)
