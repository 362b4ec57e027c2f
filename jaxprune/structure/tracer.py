"""The tracer: walks a jaxpr and couples (variable, axis) nodes.

A union-find over one node per (call context, jaxpr variable, axis) records
which axes must be pruned together; `rules.py` holds what each primitive
family couples. Besides the unions the tracer keeps the bookkeeping that the
graph needs: blocked nodes with their reasons, composite-axis definitions,
spatial and residual nodes, the model's input/output nodes, producer and
consumer roles of kernel axes, and one MAC term per contraction.

Constants (values computed from literals, closed-over arrays and sources
such as `iota` alone: no model input, no variable) are never a coupling
between layers: a constant read by an equation that also reads model values
is replaced there by a per-use *proxy* with fresh nodes (`Tracer.proxied`),
and slimming slices the constant by the proxy's kept indices. A
`head_mask = jnp.ones((layers, heads))` broadcast into every layer therefore
leaves each layer's heads in their own group.
"""
import collections
import dataclasses
from typing import Any
import warnings

import numpy as np

from jaxprune.structure import jaxpr as jx
from jaxprune.structure import rules
from jaxprune.structure.members import Member

Var = Any
Node = int


class UnionFind:
  """Union-find over integer nodes with per-node sizes."""

  def __init__(self):
    self.parent: list[int] = []
    self.size: list[int] = []

  def new(self, size: int) -> int:
    self.parent.append(len(self.parent))
    self.size.append(int(size))
    return len(self.parent) - 1

  def find(self, a: int) -> int:
    root = a
    while self.parent[root] != root:
      root = self.parent[root]
    while self.parent[a] != root:
      self.parent[a], a = root, self.parent[a]
    return root

  def union(self, a: int, b: int) -> int:
    ra, rb = self.find(a), self.find(b)
    if ra != rb:
      self.parent[max(ra, rb)] = min(ra, rb)
    return min(ra, rb)


@dataclasses.dataclass
class VarInfo:
  """Dataflow facts about one jaxpr variable."""
  data: bool = False  # Depends on the model inputs (not only on variables).
  stat: bool = False  # A statistic: reduced or broadcast data, not a branch.
  zero: bool = False  # Zero wherever a pruned channel sits.
  origin: Member | None = None  # The variable leaf it is (up to casts).
  perm: tuple[int, ...] | None = None  # Its axis a is origin's perm[a].
  src: frozenset = frozenset()  # conv/matmul equations its value comes from.
  const: bool = False  # Computed from constants alone (no input, no variable).
  layer: str = ''  # The layer (name stack or parameter path) it comes from.


class Proxy:
  """A per-use stand-in for a constant operand (see the module docstring)."""

  def __init__(self, var):
    self.aval = var.aval
    self.var = var

  def __repr__(self):
    return f'Proxy({self.var})'


@dataclasses.dataclass(eq=False)
class ProxiedEqn:
  """An equation whose constant operands were replaced by `Proxy`s."""
  primitive: Any
  params: dict
  invars: list
  outvars: list
  source_info: Any
  proxies: dict  # Operand position -> Proxy.


def _layer_of(origin: Member) -> str:
  path = list(origin.path)
  if len(path) > 1 and path[-1] == 'value':  # nnx Variable leaves.
    path.pop()
  return '/'.join(path[:-1]) or '/'.join(path)


class Tracer(rules.ElementwiseRules, rules.ShapeRules, rules.IndexingRules,
             rules.ContractionRules, rules.ControlFlowRules):
  """Walks a jaxpr, building the union-find and the bookkeeping."""

  def __init__(self):
    self.uf = UnionFind()
    self.nodes: dict[tuple[int, Var, int], Node] = {}
    self.info: dict[Var, VarInfo] = {}
    self.blocked: dict[Node, str] = {}
    self.spatial: set[Node] = set()
    self.io: dict[Node, str] = {}
    self.touches: dict[Node, set[str]] = collections.defaultdict(set)
    self.residual: set[Node] = set()
    # (kind, whole, parts, where the definition comes from).
    self.defs: list[tuple[str, Node, list[Node], str]] = []
    self.fresh_nodes: dict[Any, Node] = {}
    self.eqn_nodes: dict[tuple[int, int, str], Any] = {}
    self.roles: list[tuple[str, Member]] = []  # ('producer'|'consumer', m)
    self.matmuls: list[tuple[list[Node], list[Node], int, int]] = []
    self.unknown: set[str] = set()
    self.proxied: dict[tuple[int, int], ProxiedEqn] = {}
    self.ctx = 0
    self.n_ctx = 0
    self.children: dict[tuple[int, int], list[int]] = {}
    self.mult = 1  # MAC multiplicity of the code being walked (scan length).
    self.first_use: dict[Member, int] = {}
    self.counter = 0
    self.scope = ''  # The caller's layer while a callee is walked.
    self.where = ''  # 'at <primitive> in <layer>' of the equation walked.
    self.layer = ''

  # -- nodes ------------------------------------------------------------------
  # A cached sub-jaxpr (e.g. jax.nn.relu's) is the same object at every call
  # site, so variables are keyed by (call context, var).
  def node(self, v, axis: int, ctx: int | None = None) -> Node | None:
    if jx.is_literal(v):
      return None
    key = (self.ctx if ctx is None else ctx, v, axis)
    if key not in self.nodes:
      self.nodes[key] = self.uf.new(jx.shape(v)[axis])
    return self.nodes[key]

  def fresh(self, key, size: int) -> Node:
    key = (self.ctx, key)
    if key not in self.fresh_nodes:
      self.fresh_nodes[key] = self.uf.new(size)
    return self.fresh_nodes[key]

  def note(self, eqn, tag: str, value) -> None:
    self.eqn_nodes[(self.ctx, id(eqn), tag)] = value

  def vinfo(self, v, ctx: int | None = None) -> VarInfo:
    if jx.is_literal(v):
      val = np.asarray(v.val)
      return VarInfo(zero=bool(np.all(val == 0)), const=True)
    return self.info.setdefault((self.ctx if ctx is None else ctx, v),
                                VarInfo())

  def set_info(self, v, info: VarInfo, ctx: int | None = None) -> None:
    if not jx.is_literal(v):
      self.info[(self.ctx if ctx is None else ctx, v)] = info

  def link(self, outer, inner, inner_ctx: int, shift: int = 0,
           inward: bool = True) -> None:
    """Couples axis a of `outer` (this context) with axis a - shift of
    `inner` (context `inner_ctx`), and copies dataflow facts across."""
    if inward:
      self.set_info(inner, dataclasses.replace(
          self.vinfo(outer), origin=None if shift else self.vinfo(
              outer).origin), inner_ctx)
    else:
      self.set_info(outer, dataclasses.replace(self.vinfo(inner, inner_ctx),
                                               origin=None))
    if jx.is_literal(outer) or jx.is_literal(inner):
      return
    for a in range(len(jx.shape(inner))):
      self.union(self.node(outer, a + shift), self.node(inner, a, inner_ctx))
    if shift:
      for a in range(shift):
        self.block(self.node(outer, a), 'scanned axis')

  def sub(self, eqn, jaxpr, ins, outs, in_shift=None, out_shift=None,
          carry=None) -> None:
    """Walks a callee in a fresh context, linked to the caller's vars."""
    outer, scope, where, layer = self.ctx, self.scope, self.where, self.layer
    self.n_ctx += 1
    inner = self.n_ctx
    self.children.setdefault((outer, id(eqn)), []).append(inner)
    for k, (o, i) in enumerate(zip(ins, jaxpr.invars)):
      self.link(o, i, inner, (in_shift or {}).get(k, 0))
    self.ctx, self.scope = inner, self.layer
    self.walk(jaxpr)
    for bi, bo in (carry or []):  # Loop carries: body output = body input.
      bi, bo = jaxpr.invars[bi], jaxpr.outvars[bo]
      if not jx.is_literal(bo):
        for a in range(len(jx.shape(bo))):
          self.union(self.node(bi, a), self.node(bo, a))
    self.ctx, self.scope, self.where, self.layer = outer, scope, where, layer
    for k, (i, o) in enumerate(zip(jaxpr.outvars, outs)):
      if o is not None:
        self.link(o, i, inner, (out_shift or {}).get(k, 0), inward=False)

  def union(self, a: Node | None, b: Node | None, why: str = '') -> None:
    if a is None or b is None:
      return
    if self.uf.size[a] != self.uf.size[b]:
      self.block(a, why or 'size mismatch')
      self.block(b, why or 'size mismatch')
      return
    self.uf.union(a, b)

  def block(self, n: Node | None, reason: str) -> None:
    """Marks a node unprunable; the reason gets the equation's place."""
    if n is not None and n not in self.blocked:
      self.blocked[n] = f'{reason} ({self.where})' if self.where else reason

  def block_var(self, v, reason: str) -> None:
    if not jx.is_literal(v):
      for a in range(len(jx.shape(v))):
        self.block(self.node(v, a), reason)

  def define(self, kind: str, whole: Node, parts: list[Node]) -> None:
    parts = [p for p in parts if self.uf.size[p] > 0]
    if len(parts) == 1:
      self.union(whole, parts[0])
    else:
      self.defs.append((kind, whole, parts, self.where))

  # -- walking ----------------------------------------------------------------
  def walk(self, jaxpr) -> None:
    for eqn in jaxpr.eqns:
      self.counter += 1
      for v in eqn.invars:
        o = self.vinfo(v).origin
        if o is not None and o not in self.first_use:
          self.first_use[o] = self.counter
      self.equation(eqn)

  def _source(self, eqn) -> str:
    """The parameter path, else the layer, of the first operand with one."""
    for v in eqn.invars:
      if self.vinfo(v).origin is not None:
        return _layer_of(self.vinfo(v).origin)
    for v in eqn.invars:
      if self.vinfo(v).layer:
        return self.vinfo(v).layer
    return ''

  def _place(self, eqn) -> str:
    """The layer of an equation: flax's name stack (under the caller's),
    else where its operands come from."""
    stack = str(getattr(getattr(eqn, 'source_info', None), 'name_stack', ''))
    if stack:
      return f'{self.scope}/{stack}' if self.scope else stack
    return self._source(eqn) or self.scope

  def _proxy_constants(self, eqn):
    """Replaces the constant operands of an equation that also reads model
    values by per-use proxies; returns the equation to walk."""
    ins = list(eqn.invars)
    const = [not jx.is_literal(v) and self.vinfo(v).const for v in ins]
    if not any(const) or all(jx.is_literal(v) or c for v, c in zip(ins,
                                                                  const)):
      return eqn
    proxies = {}
    for k, (v, c) in enumerate(zip(ins, const)):
      if c:
        proxies[k] = ins[k] = Proxy(v)
        self.set_info(ins[k], dataclasses.replace(self.vinfo(v), const=False))
    peqn = ProxiedEqn(eqn.primitive, eqn.params, ins, eqn.outvars,
                      getattr(eqn, 'source_info', None), proxies)
    self.proxied[(self.ctx, id(eqn))] = peqn
    return peqn

  def equation(self, eqn) -> None:
    name = eqn.primitive.name
    self.layer = self._place(eqn)
    self.where = f'at {name} in {self.layer}' if self.layer else f'at {name}'
    source = self._source(eqn)
    if source and not self.layer.endswith(source):
      self.where += f', reading {source}'
    all_const = all(jx.is_literal(v) or self.vinfo(v).const
                    for v in eqn.invars)
    eqn = self._proxy_constants(eqn)
    ins, outs = eqn.invars, eqn.outvars
    data = any(self.vinfo(v).data for v in ins)
    src = frozenset().union(*(self.vinfo(v).src for v in ins))
    for o in outs:
      self.set_info(o, VarInfo(data=data, src=src))
    handler = getattr(self, '_p_' + name.replace('-', '_'), None)
    call = False
    if handler is not None:
      handler(eqn)
      call = name in ('scan', 'while', 'cond')
    elif name in rules.ELEMENTWISE:
      self.elementwise(eqn)
    elif name in rules.REDUCTIONS:
      self.reduction(eqn)
    elif name in rules.CUMULATIVE:
      self.same_shape(eqn, block_axes=(eqn.params['axis'],), reason=name)
    elif name in rules.SOURCES:
      pass  # Fresh values: no coupling.
    elif jx.sub_jaxpr(eqn) is not None:
      self.sub(eqn, jx.sub_jaxpr(eqn)[0], ins, outs)
      call = True
    else:
      if name not in self.unknown:
        self.unknown.add(name)
        warnings.warn(f'jaxprune.structure: unknown primitive {name!r} '
                      f'({self.where}); the axes it touches are marked '
                      'unprunable.', stacklevel=3)
      for v in list(ins) + list(outs):
        self.block_var(v, f'unknown primitive {name!r}')
    for o in outs:
      if not jx.is_literal(o):
        info = self.vinfo(o)
        info.layer = self.layer
        if not call:  # A callee's outputs carry what its body computed.
          info.const = all_const
    self.where = ''
