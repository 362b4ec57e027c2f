"""Physical slimming: remove masked channels from any traced Flax model.

`slim(apply_fn, variables, graph, channel_masks, *args, **kwargs)` gathers the
kept indices of every variable and re-specialises the traced jaxpr to the
smaller shapes: each equation is re-bound on the slim operands, with the
shape-carrying parameters (reshape sizes, broadcast shapes, pad widths, slice
bounds, conv feature groups) recomputed from the graph. The result equals
`apply_fn(masked_variables, *args)`; no model code is needed.

For zoo models, `zoo_overrides` reads the slim widths back as model
attributes, so training can continue on the physically smaller module.
"""
import functools
from typing import Any, Callable

import jax
from jax import lax
from jax.extend import core as jex_core
import jax.numpy as jnp
import numpy as np

from jaxprune import structure
from jaxprune.export import export, load_export  # pylint: disable=unused-import
from jaxprune.structure import jaxpr as jx


def round_masks(graph: structure.ChannelGraph, channel_masks: dict[str, Any],
                round_to: int, scores: dict[str, Any] | None = None
                ) -> dict[str, np.ndarray]:
  """Rounds every group's kept count *up* to a multiple of `round_to`.

  Channels are restored in order of decreasing `scores[group]` when given,
  else lowest index first. A group never grows past its size. Hardware
  (tensor cores, vector units) runs fastest on widths that are multiples of
  8 or 16.

  Args:
    graph: the channel graph.
    channel_masks: group name -> bool [size].
    round_to: the multiple (>= 1).
    scores: optional group name -> float [size]; higher is restored first.

  Returns:
    New host bool masks.
  """
  if not isinstance(round_to, int) or round_to < 1:
    raise ValueError(f'round_to={round_to!r}; allowed: an int >= 1.')
  out = {}
  for name, m in channel_masks.items():
    m = np.asarray(m).astype(bool).copy()
    size = graph.group(name).size
    target = min(size, -(-int(m.sum()) // round_to) * round_to)
    missing = target - int(m.sum())
    if missing > 0:
      pruned = np.flatnonzero(~m)
      if scores is not None and name in scores:
        pruned = pruned[np.argsort(-np.asarray(scores[name])[pruned],
                                   kind='stable')]
      m[pruned[:missing]] = True
    out[name] = m
  return out


class _Specializer:
  """Evaluates a traced jaxpr at the slim shapes of one channel masking."""

  def __init__(self, graph: structure.ChannelGraph, masks: dict[str, Any]):
    self.g = graph
    self.masks = masks
    self._kept: dict[int, np.ndarray | None] = {}

  def kept(self, node) -> np.ndarray | None:
    if node is None:
      return None
    root = self.g.root(node)
    if root not in self._kept:
      self._kept[root] = self.g.kept_indices(root, self.masks)
    return self._kept[root]

  def size(self, node, default: int | None = None) -> int:
    """Kept count of an axis node (`default`, else its full size, if none)."""
    if node is None:
      return default
    k = self.kept(node)
    if k is not None:
      return len(k)
    return self.g.size_of(node) if default is None else default

  def node(self, ctx, v, a):
    return self.g.node(ctx, v, a)

  def shape(self, ctx, v) -> tuple[int, ...]:
    shp = jx.shape(v)
    return tuple(n if self.node(ctx, v, a) is None else
                 self.size(self.node(ctx, v, a)) for a, n in enumerate(shp))

  def gather(self, ctx, v, x):
    """Keeps the kept indices of value `x` of var `v` along every axis."""
    for a in range(np.ndim(x)):
      k = self.kept(self.node(ctx, v, a))
      if k is not None and len(k) != np.shape(x)[a]:
        x = jnp.take(x, jnp.asarray(k), axis=a)
    return x

  # -- evaluation -------------------------------------------------------------
  def run(self, jaxpr, ctx: int, consts, args):
    env = {}

    def read(v):
      return v.val if isinstance(v, jex_core.Literal) else env[v]

    for v, c in zip(jaxpr.constvars, consts):
      env[v] = self.gather(ctx, v, c)
    for v, a in zip(jaxpr.invars, args):
      env[v] = a
    for eqn in jaxpr.eqns:
      invals = [read(v) for v in eqn.invars]
      walked = self.g.proxied(ctx, eqn)
      if walked is not None:
        # Constants read beside model values: sliced for this use only.
        for k, proxy in walked.proxies.items():
          invals[k] = self.gather(ctx, proxy, invals[k])
        eqn = walked
      outs = self.equation(eqn, ctx, invals)
      if not eqn.primitive.multiple_results:
        outs = [outs]
      for v, o in zip(eqn.outvars, outs):
        expect = self.shape(ctx, v)
        if tuple(np.shape(o)) != expect:
          raise AssertionError(
              f'slim: {eqn.primitive.name} produced {np.shape(o)}, expected '
              f'{expect}. Please report this model.')
        env[v] = o
    return [read(v) for v in jaxpr.outvars]

  def child(self, ctx, eqn, k=0) -> int:
    return self.g.child(ctx, eqn, k)

  def equation(self, eqn, ctx, invals):
    name = eqn.primitive.name
    p = dict(eqn.params)
    out = eqn.outvars[0]
    handler = getattr(self, '_p_' + name, None)
    if handler is not None:
      return handler(eqn, ctx, invals, p)
    if name in structure.SOURCES:
      # Evaluate at the dense shape, then keep the kept indices, so that
      # iota values and random bits match the masked model.
      vals = eqn.primitive.bind(*invals, **p)
      if eqn.primitive.multiple_results:
        return [self.gather(ctx, v, x) for v, x in zip(eqn.outvars, vals)]
      return self.gather(ctx, out, vals)
    if not structure.is_known(name) and jx.sub_jaxpr(eqn):
      # Calls (jit, remat, custom_jvp/vjp) are inlined at the slim shapes.
      inner, consts = jx.sub_jaxpr(eqn)
      return self.run(inner, self.child(ctx, eqn), consts, invals)
    return eqn.primitive.bind(*invals, **p)

  # Shape-carrying primitives.
  def _p_reshape(self, eqn, ctx, invals, p):
    p['new_sizes'] = self.shape(ctx, eqn.outvars[0])
    return eqn.primitive.bind(*invals, **p)

  def _p_broadcast_in_dim(self, eqn, ctx, invals, p):
    p['shape'] = self.shape(ctx, eqn.outvars[0])
    return eqn.primitive.bind(*invals, **p)

  def _p_gather(self, eqn, ctx, invals, p):
    # Whole-axis windows follow the operand's slim width; indexed axes are
    # blocked, so they keep their sizes.
    x = eqn.invars[0]
    full, slim_in = jx.shape(x), self.shape(ctx, x)
    p['slice_sizes'] = tuple(m if s == n else s for s, n, m in zip(
        p['slice_sizes'], full, slim_in))
    return eqn.primitive.bind(*invals, **p)

  def _p_dynamic_slice(self, eqn, ctx, invals, p):
    p['slice_sizes'] = self.shape(ctx, eqn.outvars[0])
    return eqn.primitive.bind(*invals, **p)

  def _p_split(self, eqn, ctx, invals, p):
    p['sizes'] = tuple(self.shape(ctx, o)[p['axis']] for o in eqn.outvars)
    return eqn.primitive.bind(*invals, **p)

  def _p_pad(self, eqn, ctx, invals, p):
    cfg = []
    for a, (lo, hi, interior) in enumerate(p['padding_config']):
      roles = self.g.note(ctx, eqn, f'pad{a}')
      if roles is not None:
        lo = 0 if roles[0] is None else self.size(roles[0])
        hi = 0 if roles[1] is None else self.size(roles[1])
      cfg.append((int(lo), int(hi), int(interior)))
    p['padding_config'] = tuple(cfg)
    return eqn.primitive.bind(*invals, **p)

  def _p_slice(self, eqn, ctx, invals, p):
    x = eqn.invars[0]
    new_in = self.shape(ctx, x)
    starts, limits = list(p['start_indices']), list(p['limit_indices'])
    for a in range(len(new_in)):
      roles = self.g.note(ctx, eqn, f'slice{a}')
      if roles is not None:
        starts[a] = 0 if roles[0] is None else self.size(roles[0])
        limits[a] = new_in[a] - (0 if roles[1] is None else
                                 self.size(roles[1]))
      elif starts[a] == 0 and limits[a] == jx.shape(x)[a]:
        limits[a] = new_in[a]
    p['start_indices'], p['limit_indices'] = tuple(starts), tuple(limits)
    return eqn.primitive.bind(*invals, **p)

  def _p_conv_general_dilated(self, eqn, ctx, invals, p):
    gnode = self.g.note(ctx, eqn, 'groups')
    if gnode is not None:
      p['feature_group_count'] = self.size(gnode, p['feature_group_count'])
    return eqn.primitive.bind(*invals, **p)

  def _p_scan(self, eqn, ctx, invals, p):
    nc, ncarry = p['num_consts'], p['num_carry']
    body = p['jaxpr']
    child = self.child(ctx, eqn)
    consts, init, xs = invals[:nc], invals[nc:nc + ncarry], invals[nc + ncarry:]

    def f(carry, x):
      outs = self.run(body.jaxpr, child, body.consts,
                      list(consts) + list(carry) + list(x))
      return outs[:ncarry], outs[ncarry:]

    carry, ys = lax.scan(f, list(init), list(xs), length=p['length'],
                         reverse=p['reverse'], unroll=p['unroll'])
    return list(carry) + list(ys)

  def _p_while(self, eqn, ctx, invals, p):
    cn, bn = p['cond_nconsts'], p['body_nconsts']
    cc, bc, init = invals[:cn], invals[cn:cn + bn], invals[cn + bn:]
    cj, bj = p['cond_jaxpr'], p['body_jaxpr']
    c_ctx, b_ctx = self.child(ctx, eqn, 0), self.child(ctx, eqn, 1)
    cond = lambda c: self.run(cj.jaxpr, c_ctx, cj.consts, list(cc) + list(c))[0]
    body = lambda c: self.run(bj.jaxpr, b_ctx, bj.consts, list(bc) + list(c))
    return list(lax.while_loop(cond, body, list(init)))

  def _p_cond(self, eqn, ctx, invals, p):
    index, ops = invals[0], invals[1:]
    fns = [functools.partial(
        lambda br, c, *a: self.run(br.jaxpr, c, br.consts, list(a)), br,
        self.child(ctx, eqn, k)) for k, br in enumerate(p['branches'])]
    return list(lax.switch(index, fns, *ops))


def _check(graph, channel_masks):
  masks = graph.check_masks(channel_masks)
  traced = [k for k, m in masks.items() if isinstance(m, jax.core.Tracer)]
  if traced:
    raise ValueError(f'slim needs concrete channel masks; got traced masks '
                     f'for {traced} (call it outside jit).')
  return masks


def slim_variables(graph: structure.ChannelGraph, variables: Any,
                   channel_masks: dict[str, Any]) -> Any:
  """Every variable with the pruned indices removed along each axis."""
  masks = _check(graph, channel_masks)
  spec = _Specializer(graph, masks)
  leaves = jax.tree.leaves(variables)
  out = [spec.gather(0, v, x) for v, x in zip(graph.variable_vars, leaves)]
  return jax.tree.unflatten(graph.variables_treedef, out)


def slim(apply_fn: Callable[..., Any], variables: Any,
         graph: structure.ChannelGraph, channel_masks: dict[str, Any],
         *args: Any, round_to: int | None = None,
         **kwargs: Any) -> tuple[Any, Callable[..., Any]]:
  """Physically removes the masked channels.

  Args:
    apply_fn: the function the graph was traced from, e.g. `model.apply`.
    variables: the (masked or unmasked) variables; kept entries are copied.
      `jax.ShapeDtypeStruct` leaves are allowed: the slim variables are
      then structures too, for building the slim function without values.
    graph: `jaxprune.structure.trace(apply_fn, variables, *args, **kwargs)`.
    channel_masks: group name -> bool [size]; missing groups keep all.
    *args: example inputs, as given to `trace`.
    round_to: if set, kept counts are first rounded up to a multiple of it
      (see `round_masks`).
    **kwargs: the static keyword arguments given to `trace`; they may be
      left out (the graph remembers them: `graph.kwargs`), but any that are
      given must equal the trace's, since the slim function replays the
      traced call for every input shape.

  Returns:
    `(slim_variables, slim_apply_fn)`: `slim_apply_fn(slim_variables,
    *inputs)` equals `apply_fn(masked_variables, *inputs, **kwargs)`. It is
    a pure function of arrays (jit it freely); inputs of another batch size
    re-trace `apply_fn` once per new shape, with the trace's kwargs.

  Raises:
    ValueError: for bad masks (see `ChannelGraph.check_masks`), or kwargs
      that differ from the trace's.
  """
  differ = {k: (v, graph.kwargs.get(k, '<not given>'))
            for k, v in kwargs.items()
            if k not in graph.kwargs or not _same(v, graph.kwargs[k])}
  if differ:
    raise ValueError(
        'slim: keyword arguments differ from the trace\'s: ' + ', '.join(
            f'{k}={v!r} (traced with {t!r})' for k, (v, t) in differ.items())
        + '; trace again with them, or leave them out to use the trace\'s.')
  kwargs = graph.kwargs
  masks = _check(graph, channel_masks)
  if round_to:
    masks = round_masks(graph, masks, round_to)
  if any(isinstance(x, jax.ShapeDtypeStruct)
         for x in jax.tree.leaves(variables)):
    slim_vars = jax.eval_shape(lambda v: slim_variables(graph, v, masks),
                               variables)
  else:
    slim_vars = slim_variables(graph, variables, masks)
  var_struct = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x),
                                                           x.dtype), variables)

  @functools.lru_cache(maxsize=16)
  def specialise(arg_key):
    if arg_key == _arg_key(args):
      g = graph
    else:
      structs = [jax.ShapeDtypeStruct(s, d) for s, d in arg_key[1]]
      g = structure.trace(apply_fn, var_struct,
                          *jax.tree.unflatten(arg_key[0], structs), **kwargs)
    return g, _Specializer(g, masks)

  def slim_apply_fn(slim_vars_, *call_args):
    g, spec = specialise(_arg_key(call_args))
    flat_args = jax.tree.leaves(call_args)
    flat_vars = jax.tree.leaves(slim_vars_)
    outs = spec.run(g.closed.jaxpr, 0, g.closed.consts, flat_vars + flat_args)
    return jax.tree.unflatten(g.out_treedef, outs)

  slim_apply_fn.masks = masks
  return slim_vars, slim_apply_fn


def _same(a, b) -> bool:
  try:
    return bool(a == b)
  except Exception:  # pylint: disable=broad-except
    return a is b


def _arg_key(args):
  leaves, treedef = jax.tree.flatten(args)
  return treedef, tuple((tuple(np.shape(x)), jnp.result_type(x))
                        for x in leaves)


def zoo_overrides(model: str, params: Any) -> dict[str, Any]:
  """Width attributes of a zoo model, read from (slim) parameter shapes.

  `models.create(model, num_classes, **zoo_overrides(model, slim_params))`
  builds the physically smaller module; its `apply` on the slim variables
  equals the slim forward pass, with two exceptions that `slim_apply_fn`
  does not have: a LayerNorm over a pruned width (the ViT residual stream)
  normalises over the kept features only, and option-A CIFAR shortcuts pad
  symmetrically, so residual groups pruned unevenly around the padding do
  not match.

  Raises:
    JaxpruneError: for a model family without width overrides, or widths the
      module cannot express (e.g. differently pruned ViT head dimensions).
  """
  from jaxprune import models  # pylint: disable=g-import-not-at-top
  return models.overrides_from_params(model, params)
