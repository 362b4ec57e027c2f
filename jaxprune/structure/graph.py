"""The channel graph: groups of coupled parameter axes, and mask arithmetic.

`ChannelGraph` resolves a finished `Tracer` into `Group`s (one per atomic
class of coupled axes that holds a variable axis), names them, and turns
channel masks (group name -> bool [size]) into parameter masks, parameter
and MAC counts, and the indices that slimming keeps. Its public accessors
(`node`, `root`, `size_of`, `note`, `child`, `proxied`, `variable_vars`) are
what `jaxprune.slim` reads to re-specialise the traced jaxpr.
"""
import collections
import itertools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune import variables as variables_lib
from jaxprune.variables import key_name
from jaxprune.structure import jaxpr as jx
from jaxprune.structure import tracer as tracer_lib
from jaxprune.structure.members import Group, Member

Node = int


def leaf_members(variables) -> list[tuple[str, tuple[str, ...], Any]]:
  """(collection, path) of every leaf of a variables pytree, in flat order."""
  out = []
  for keypath, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]:
    keys = tuple(key_name(k) for k in keypath)
    out.append((keys[0] if len(keys) > 1 else '', keys[1:] if len(keys) > 1
                else keys, leaf))
  return out


class ChannelGraph:
  """Channel groups of a traced model, and mask/MAC arithmetic over them.

  Build with `jaxprune.structure.trace`. `groups` lists every group;
  `group(name)` finds one; `param_masks`, `macs` and `kept_indices` turn
  channel masks (group name -> bool [size]) into parameter masks, MAC counts
  and the indices that slimming keeps.
  """

  def __init__(self, tracer: tracer_lib.Tracer, closed, variables, leaves, treedef,
               n_var_leaves: int, args_treedef, out_treedef,
               kwargs: dict[str, Any] | None = None):
    self._t = tracer
    self.closed = closed
    self.variables_treedef = treedef
    self.args_treedef = args_treedef
    self.out_treedef = out_treedef
    self.leaves = leaves  # [(collection, path, leaf)] for the variables.
    self.n_var_leaves = n_var_leaves
    # The keyword arguments of the trace; `slim` replays them.
    self.kwargs = dict(kwargs or {})
    # Per variable leaf: a trainable parameter (linen 'params', nnx Param)?
    self.trainable = variables_lib.trainable(variables)
    self._resolve()
    used = set()
    for eqn in closed.jaxpr.eqns:
      used.update(v for v in eqn.invars if not jx.is_literal(v))
    used.update(v for v in closed.jaxpr.outvars
                if not jx.is_literal(v))
    # Variables the traced call never reads: members of no group.
    self.unused: list[tuple[str, tuple[str, ...]]] = [
        (c, tuple(p)) for (c, p, _), v in zip(self.leaves, self.variable_vars)
        if v not in used]

  # -- resolution -------------------------------------------------------------
  def _resolve(self) -> None:
    t, uf = self._t, self._t.uf
    find = uf.find
    self._unify_definitions()
    # Flags per class root.
    blocked: dict[Node, str] = {}
    for n, why in t.blocked.items():
      blocked.setdefault(find(n), why)
    io = {}
    for n, why in t.io.items():
      io.setdefault(find(n), why)
    touches: dict[Node, set[str]] = collections.defaultdict(set)
    for n, ends in t.touches.items():
      touches[find(n)] |= ends
    spatial = {find(n) for n in t.spatial}
    residual = {find(n) for n in t.residual}
    # Composite definitions per class.
    # Two definitions agree when their parts are the same classes; size-1
    # parts (a CLS token, a padded singleton) only need to agree in size.
    defs = self._definitions()
    layout: dict[Node, tuple[str, tuple[Node, ...]]] = {}
    conflicting: dict[Node, list[Node]] = {}
    for root, by_key in defs.items():
      ds = list(by_key.values())
      if len(ds) == 1:
        layout[root] = ds[0][:2]
      else:
        conflicting[root] = [parts for _, parts, _ in ds]
        why = ('axis split or concatenated in two incompatible ways: ' +
               '; '.join(f'{kind} of sizes '
                         f'{[uf.size[p] for p in parts]} ({where})'
                         for kind, parts, where in ds[:2]))
        blocked.setdefault(root, why)
        for _, parts, _ in ds:
          for p in parts:
            blocked.setdefault(p, why)
    # Flags flow from a composite class to its parts; a class built from
    # spatial axes (ViT tokens = CLS + H x W) is spatial itself.
    changed = True
    while changed:
      changed = False
      for root, options in itertools.chain(
          ((r, [ps]) for r, (_, ps) in layout.items()), conflicting.items()):
        if root not in spatial and any(
            all(p in spatial for p in ps if uf.size[p] > 1) for ps in options):
          spatial.add(root)
          changed = True
      for root, (_, parts) in layout.items():
        for p in parts:
          for flags, val in ((blocked, blocked.get(root)), (io, io.get(root))):
            if val is not None and p not in flags:
              flags[p] = val
              changed = True
          for flags in (spatial, residual):
            if root in flags and p not in flags:
              flags.add(p)
              changed = True
          if not touches[root] <= touches[p]:
            touches[p] |= touches[root]
            changed = True
    self._layout = layout
    self._expand_cache: dict[Node, list[tuple[Node, np.ndarray]]] = {}
    self._flags = dict(blocked=blocked, io=io, spatial=spatial,
                       residual=residual)
    self._touches = touches

    # Members.
    var_invars = self.closed.jaxpr.invars[:self.n_var_leaves]
    members: dict[Node, list[tuple[Member, np.ndarray | None]]] = (
        collections.defaultdict(list))
    for (coll, path, leaf), v in zip(self.leaves, var_invars):
      for a, n in enumerate(np.shape(leaf)):
        if n <= 1:
          continue
        node = t.nodes.get((0, v, a))
        if node is None:  # An unused variable, or an axis no rule reads.
          continue
        for g, idx in self._expand(find(node)):
          ident = idx.shape == (n, 1) and np.array_equal(idx[:, 0],
                                                         np.arange(n))
          members[g].append((Member(coll, path, a), None if ident else idx))
    order = {m: t.first_use.get(m, 1 << 30) for m in (
        Member(c, p, 0) for c, p, _ in self.leaves)}
    leaf_rank = {(c, p): i for i, (c, p, _) in enumerate(self.leaves)}

    def rank(m: Member):
      return (order.get(Member(m.collection, m.path, 0), 1 << 30),
              m.collection != 'params', leaf_rank[(m.collection, m.path)],
              m.axis)

    roles = collections.defaultdict(set)
    for role, m in t.roles:
      roles[m].add(role)
    groups = []
    for g, ms in members.items():
      if g in spatial or uf.size[g] <= 1:
        continue
      ms.sort(key=lambda mi: (rank(mi[0]), _first(mi[1])))
      reason = blocked.get(g) or io.get(g) or ''
      groups.append(Group(
          name='', size=uf.size[g], members=[m for m, _ in ms],
          residual=g in residual, prunable=not reason, reason=reason,
          touches_input='input' in touches[g],
          touches_output='output' in touches[g],
          producers=[m for m, _ in ms if 'producer' in roles[m]],
          consumers=[m for m, _ in ms if 'consumer' in roles[m]],
          index={m: i for m, i in ms if i is not None}))
      groups[-1]._root = g  # pylint: disable=protected-access
      groups[-1]._rank = (rank(ms[0][0]), _first(ms[0][1]))
    groups.sort(key=lambda gr: gr._rank)  # pylint: disable=protected-access
    # Names: a group is named after the layer that produces its channels
    # (else its first member); producers claim names first.
    used = set()
    for pass_ in (0, 1):
      for gr in groups:
        if bool(gr.producers) == bool(pass_):
          continue
        m = gr.producers[0] if gr.producers else gr.members[0]
        base = _base_name(m)
        if m in gr.index:
          base += f'@{_first(gr.index[m])}'
        cands = itertools.chain((base, f'{base}:{m.axis}'), (
            f'{base}:{m.axis}#{k}' for k in itertools.count(1)))
        gr.name = next(c for c in cands if c not in used)
        used.add(gr.name)
    self.groups: list[Group] = groups
    self._by_name = {g.name: g for g in groups}
    self._root_group = {g._root: g for g in groups}  # pylint: disable=protected-access

  def _definitions(self) -> dict[Node, dict]:
    """Composite definitions per class root: {key: (kind, parts, where)}.

    Two definitions agree when their parts are the same classes; size-1
    parts (a CLS token, a padded singleton) only need to agree in size.
    """
    uf = self._t.uf
    defs: dict[Node, dict] = collections.defaultdict(dict)
    for kind, whole, parts, where in self._t.defs:
      parts = tuple(uf.find(p) for p in parts)
      key = (kind, tuple(-1 if uf.size[p] == 1 else p for p in parts))
      defs[uf.find(whole)].setdefault(key, (kind, parts, where))
    return defs

  def _unify_definitions(self) -> None:
    """Couples the parts of two definitions of one axis with equal part sizes.

    An axis that is both [A; B] and [C; D] with |A| = |C| has A and C at the
    same positions, so they are one class (and B, D another); likewise for
    two row-major products with equal factor sizes. RoPE's rotate-half, which
    concatenates [x2; x1] back onto an axis split as [x1; x2], thereby makes
    x1 and x2 one class: the rotated head_dim prunes in pairs (i, i + d/2).
    Definitions with different part sizes stay a conflict.
    """
    uf = self._t.uf
    changed = True
    while changed:
      changed = False
      for by_key in self._definitions().values():
        ds = list(by_key.values())
        kind, parts, _ = ds[0]
        for other_kind, other, _ in ds[1:]:
          if other_kind == kind and [uf.size[p] for p in other] == [
              uf.size[p] for p in parts]:
            for a, b in zip(parts, other):
              if uf.find(a) != uf.find(b):
                uf.union(a, b)
                changed = True

  def _expand(self, root: Node) -> list[tuple[Node, np.ndarray]]:
    """Atomic classes of a class, each with its index map [size_g, k]."""
    if root in self._expand_cache:
      return self._expand_cache[root]
    self._expand_cache[root] = []  # Cycle guard.
    uf = self._t.uf
    n = uf.size[root]
    if root not in self._layout:
      out = [(root, np.arange(n)[:, None])]
    else:
      kind, parts = self._layout[root]
      sizes = [uf.size[p] for p in parts]
      pieces = collections.defaultdict(list)
      if kind == 'concat':
        offset = 0
        for p, s in zip(parts, sizes):
          for g, idx in self._expand(p):
            pieces[g].append(idx + offset)
          offset += s
      else:
        strides = [math.prod(sizes[i + 1:]) for i in range(len(sizes))]
        for i, (p, s) in enumerate(zip(parts, sizes)):
          others = np.zeros([1], np.int64)
          for j, (sj, st) in enumerate(zip(sizes, strides)):
            if j != i:
              others = (others[:, None] + np.arange(sj)[None, :] * st).ravel()
          for g, idx in self._expand(p):
            full = idx[:, :, None] * strides[i] + others[None, None, :]
            pieces[g].append(full.reshape(idx.shape[0], -1))
      out = [(g, np.concatenate(v, axis=1)) for g, v in pieces.items()]
    self._expand_cache[root] = out
    return out

  # -- lookups ------------------------------------------------------------------
  def group(self, name: str) -> Group:
    """The group called `name`; raises naming the known groups otherwise."""
    if name not in self._by_name:
      raise ValueError(f'Unknown group {name!r}; known: '
                       f'{", ".join(self._by_name)}.')
    return self._by_name[name]

  @property
  def prunable(self) -> list[Group]:
    return [g for g in self.groups if g.prunable]

  def _leaf_var(self, member: Member):
    coll, path, _ = member
    for (c, p, _), v in zip(self.leaves, self.variable_vars):
      if (c, tuple(p)) == (coll, tuple(path)):
        return v
    raise ValueError(f'No variable {coll}/{"/".join(path)}; known: '
                     f'{", ".join(c + "/" + "/".join(p) for c, p, _ in self.leaves[:8])}'
                     f'{", ..." if len(self.leaves) > 8 else ""}.')

  def groups_of(self, member: Member) -> list[tuple[Group, np.ndarray]]:
    """Groups carried by one parameter axis, with their index maps."""
    node = self._t.nodes.get((0, self._leaf_var(member), member.axis))
    if node is None:
      return []
    return [(self._root_group[g], idx)
            for g, idx in self._expand(self._t.uf.find(node))
            if g in self._root_group]

  def touches(self, member: Member) -> frozenset[str]:
    """Which ends of the model ('input', 'output') a parameter axis is tied
    to, including axes of size 1 that form no group (a grey-scale input)."""
    node = self._t.nodes.get((0, self._leaf_var(member), member.axis))
    if node is None:
      return frozenset()
    root = self._t.uf.find(node)
    ends = set(self._touches.get(root, ()))
    for g, _ in self._expand(root):  # The parts of a composite axis.
      ends |= self._touches.get(g, set())
    return frozenset(ends)

  def full_masks(self, value: bool = True) -> dict[str, jax.Array]:
    """All-kept (or all-pruned) channel masks for every prunable group."""
    return {g.name: jnp.full((g.size,), value) for g in self.prunable}

  # -- accessors for jaxprune.slim ------------------------------------------
  @property
  def variable_vars(self) -> list[Any]:
    """The jaxpr input variables of the variable leaves, in flat order."""
    return list(self.closed.jaxpr.invars[:self.n_var_leaves])

  def node(self, ctx: int, var: Any, axis: int) -> Node | None:
    """The node of axis `axis` of jaxpr variable `var` in call context `ctx`
    (0: the traced function; None for literals and axes no rule touched)."""
    return self._t.nodes.get((ctx, var, axis))

  def root(self, node: Node) -> Node:
    """The class representative of a node."""
    return self._t.uf.find(node)

  def size_of(self, node: Node) -> int:
    """The full (unpruned) size of a node's axis."""
    return self._t.uf.size[node]

  def note(self, ctx: int, eqn: Any, tag: str) -> Any:
    """What a rule recorded for an equation (pad/slice parts, conv groups)."""
    return self._t.eqn_nodes.get((ctx, id(eqn), tag))

  def child(self, ctx: int, eqn: Any, k: int = 0) -> int:
    """The call context of the k-th callee of a call-like equation."""
    return self._t.children[(ctx, id(eqn))][k]

  def proxied(self, ctx: int, eqn: Any) -> tracer_lib.ProxiedEqn | None:
    """The equation as walked when constants were proxied in it (its
    `proxies` map operand positions to the per-use stand-ins), else None."""
    return self._t.proxied.get((ctx, id(eqn)))

  # -- masks and counts ------------------------------------------------------
  def check_masks(self, channel_masks: dict[str, Any]) -> dict[str, Any]:
    """Validates channel masks; returns them, concrete ones as numpy bools.

    Shared by `param_masks`, `macs`, `num_params` and `jaxprune.slim`: every
    key must name a group, every mask must be a bool array of the group's
    size, and an unprunable group may only be given all-kept (concrete)
    masks.

    Raises:
      ValueError: naming the bad group, shape, dtype or value.
    """
    if not isinstance(channel_masks, dict):
      raise ValueError(f'channel masks must be a dict of group name -> bool '
                       f'[size]; got {type(channel_masks).__name__}.')
    bad = [k for k in channel_masks if k not in self._by_name]
    if bad:
      raise ValueError(f'Unknown group(s) {bad}; known: '
                       f'{", ".join(self._by_name)}.')
    out = {}
    for k, m in channel_masks.items():
      g = self._by_name[k]
      if np.shape(m) != (g.size,):
        raise ValueError(f'Mask of group {k!r} has shape {np.shape(m)}; '
                         f'expected ({g.size},).')
      dtype = jnp.result_type(m)
      if dtype != jnp.bool_:
        raise ValueError(f'Mask of group {k!r} has dtype {dtype}; expected '
                         'bool (True keeps a channel). Convert with '
                         '`mask > 0.5` or `mask.astype(bool)`.')
      traced = isinstance(m, jax.core.Tracer)
      if not g.prunable:
        if traced:
          raise ValueError(f'Group {k!r} is not prunable ({g.reason}); leave '
                           'it out of traced channel masks.')
        if not np.all(np.asarray(m)):
          raise ValueError(f'Group {k!r} is not prunable ({g.reason}); its '
                           'mask must keep every channel.')
      out[k] = m if traced else np.asarray(m)
    return out

  def _axis_mask(self, node: Node, channel_masks, xp):
    """Keep-mask along one axis (None: nothing pruned there)."""
    root = self._t.uf.find(node)
    n = self._t.uf.size[root]
    mask = None
    for g, idx in self._expand(root):
      gr = self._root_group.get(g)
      if gr is None or gr.name not in channel_masks:
        continue
      m = xp.asarray(channel_masks[gr.name]).astype(bool)
      if idx.shape == (n, 1) and np.array_equal(idx[:, 0], np.arange(n)):
        contrib = m
      elif xp is np:
        contrib = np.ones(n, bool)
        np.logical_and.at(contrib, idx.ravel(), np.repeat(m, idx.shape[1]))
      else:
        contrib = jnp.ones(n, bool).at[idx.ravel()].min(
            jnp.repeat(m, idx.shape[1]))
      mask = contrib if mask is None else mask & contrib
    return mask

  def param_masks(self, channel_masks: dict[str, Any]) -> Any:
    """Broadcastable bool masks shaped like the traced variables.

    Args:
      channel_masks: group name -> bool [size]; groups left out are kept.

    Returns:
      A pytree like `variables`; each leaf is a bool array broadcastable to
      the variable (size 1 on axes nothing prunes). Jittable: changing the
      mask values does not recompile.
    """
    channel_masks = self.check_masks(channel_masks)
    out = []
    for (_, _, leaf), v in zip(self.leaves, self.variable_vars):
      shape = np.shape(leaf)
      mask = jnp.ones([1] * len(shape), bool)
      for a in range(len(shape)):
        am = self._axis_mask(self._t.nodes[(0, v, a)], channel_masks,
                             jnp) if (0, v, a) in self._t.nodes else None
        if am is not None:
          bshape = [1] * len(shape)
          bshape[a] = shape[a]
          mask = mask & am.reshape(bshape)
      out.append(mask)
    return jax.tree.unflatten(self.variables_treedef, out)

  def kept_indices(self, node: Node, channel_masks) -> np.ndarray | None:
    """Indices kept along an axis node (None when nothing is pruned)."""
    m = self._axis_mask(node, channel_masks, np)
    return None if m is None else np.flatnonzero(m)

  def num_params(self, channel_masks: dict[str, Any],
                 collection: str | None = None) -> int:
    """Trainable parameters once the masked channels are removed.

    Trainable means linen's 'params' collection or nnx `Param` variables
    (not batch statistics, caches or RNG state), as
    `jaxprune.flops.count(...).params` counts the slimmed network.

    Args:
      channel_masks: group name -> bool [size] (concrete).
      collection: count this linen collection instead (e.g. 'batch_stats').
    """
    channel_masks = self.check_masks(channel_masks)
    total = 0
    for (coll, _, leaf), v, train in zip(self.leaves, self.variable_vars,
                                         self.trainable):
      counted = train if collection is None else coll == collection
      if not counted:
        continue
      count = 1
      for a, n in enumerate(np.shape(leaf)):
        m = (self._axis_mask(self._t.nodes[(0, v, a)], channel_masks, np)
             if (0, v, a) in self._t.nodes else None)
        count *= n if m is None else int(np.sum(m))
      total += count
    return total

  def macs(self, channel_masks: dict[str, Any]):
    """MACs of the network with the masked channels removed.

    Equals `jaxprune.flops.count` of the slimmed network. With concrete
    masks the result is an exact Python int; inside `jit` it is a float32
    scalar (relative error about 1e-7).
    """
    channel_masks = self.check_masks(channel_masks)
    traced = any(isinstance(m, jax.core.Tracer) for m in
                 channel_masks.values())
    xp = jnp if traced else np
    sizes = {}

    def eff(node):
      root = self._t.uf.find(node)
      if root not in sizes:
        m = self._axis_mask(root, channel_masks, xp)
        sizes[root] = (self._t.uf.size[root] if m is None else
                       (m.sum() if xp is np else m.sum().astype(jnp.float32)))
      return sizes[root]

    total = 0
    for outs, contract, window, mult in self._t.matmuls:
      term = window * mult
      for n in outs + contract:
        term = term * (int(eff(n)) if xp is np else eff(n))
      total = total + term
    return int(total) if xp is np else total


LINEN_COLLECTIONS = ('batch_stats', 'cache', 'constants', 'intermediates')


def _base_name(m: Member) -> str:
  """'layer1_0/conv1' for ('params', ('layer1_0', 'conv1', 'kernel')).

  Linen collections other than params become a prefix ('batch_stats:bn1');
  nnx states (no collection level, leaves end in 'value') read as paths.
  """
  keys = list(m.path)
  prefix = ''
  if m.collection in LINEN_COLLECTIONS:
    prefix = f'{m.collection}:'
  elif m.collection and m.collection != 'params':
    keys.insert(0, m.collection)
  if len(keys) > 1 and keys[-1] == 'value':
    keys.pop()
  if len(keys) > 1:
    keys.pop()  # The leaf: kernel, bias, scale, ...
  return prefix + '/'.join(keys)


def lookup(tree: Any, path: tuple[str, ...]) -> Any:
  """The node of a nested dict at `path`, e.g. a Member's parameter."""
  for k in path:
    tree = tree[k]
  return tree


def _first(idx) -> int:
  return 0 if idx is None else int(idx.min())


