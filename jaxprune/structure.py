"""The channel graph: which parameter axes must be pruned together.

`trace(apply_fn, variables, *args, **kwargs)` traces `apply_fn` to a jaxpr and
propagates channel axes through every equation with a union-find over
(variable, axis) nodes. Classes of coupled axes that hold at least one
parameter or batch-statistic axis become `Group`s.

Axes are not always coupled one-to-one:

* a `reshape` that splits or merges axes makes one axis the row-major
  *product* of others (heads x head_dim, H x W x C flattening);
* `concatenate`, `split`, `pad` and contiguous `slice`s make one axis the
  *concatenation* of others (channel concat, option-A zero-pad shortcuts);
* a grouped convolution's feature axis is the product (groups x per-group).

Such a composite axis is expanded into the atomic classes it is built from;
each atomic class is a group, and a parameter axis on a composite class is a
member of each of its atomic groups through an index map (`Group.index`):
channel c of the group owns indices `index[member][c]` of that axis.

Safety: an axis class is marked unprunable when it touches the model's
inputs or outputs, passes through an unknown primitive (one warning naming
it), through a reshape that is not a clean split or merge, through a reduction
that would see the pruned channels (max, or a sum of values that are not zero
at pruned positions), or a contraction where neither operand is zero there.
Everything that remains can be masked (`param_masks`) or physically removed
(`jaxprune.slim`) with identical outputs.
"""
import collections
import dataclasses
import itertools
import math
from typing import Any, Callable, NamedTuple, Sequence
import warnings

import jax
from jax.extend import core as jex_core
import jax.numpy as jnp
import numpy as np

Var = Any
Node = int


class Member(NamedTuple):
  """One parameter axis that carries a group's channels."""
  collection: str  # e.g. 'params' or 'batch_stats'.
  path: tuple[str, ...]  # Keys below the collection, e.g. ('conv1', 'kernel').
  axis: int


@dataclasses.dataclass
class Group:
  """A set of parameter axes whose channels are pruned together.

  Attributes:
    name: stable readable name, from the first member's parameter path.
    size: number of channels.
    members: every (collection, path, axis) that carries the channels.
    residual: the channels pass through an elementwise add of two branches.
    prunable: False where pruning cannot be done safely (see `reason`).
    reason: why the group is not prunable ('' when it is).
    touches_input: the channels are an axis of the model input (e.g. RGB).
    touches_output: the channels are an axis of the model output (logits).
    producers: kernel axes that create the channels (conv/dense outputs).
    consumers: kernel axes that read the channels (conv/dense inputs).
    index: for members whose axis is composite, an int array [size, k]:
      channel c owns indices index[member][c] along the member's axis.
      Members not listed map channel c to index c.
  """
  name: str
  size: int
  members: list[Member]
  residual: bool = False
  prunable: bool = True
  reason: str = ''
  touches_input: bool = False
  touches_output: bool = False
  producers: list[Member] = dataclasses.field(default_factory=list)
  consumers: list[Member] = dataclasses.field(default_factory=list)
  index: dict[Member, np.ndarray] = dataclasses.field(default_factory=dict)

  def __repr__(self):
    flags = ('residual ' if self.residual else '') + (
        '' if self.prunable else f'unprunable: {self.reason}')
    return (f'Group({self.name!r}, size={self.size}, '
            f'{len(self.members)} members{", " + flags if flags else ""})')


# ----------------------------------------------------------------------------
# Primitive tables.
# ----------------------------------------------------------------------------

ELEMENTWISE = frozenset("""
abs acos acosh add add_any and asin asinh atan atan2 atanh cbrt ceil clamp clz
conj convert_element_type copy copy_p cos cosh digamma div eq erf erf_inv erfc
exp exp2 expm1 floor ge gt igamma igammac imag integer_pow is_finite le lgamma
log log1p logistic lt max min mul ne neg nextafter not or polygamma
population_count pow real reduce_precision rem round rsqrt select_n
shift_left shift_right_arithmetic shift_right_logical sign sin sinh sqrt square
stop_gradient sub tan tanh xor zeta bessel_i0e bessel_i1e random_wrap
random_unwrap threefry2x32 sharding_constraint mesh_cast reshard
optimization_barrier bitcast_convert_type
""".split())
# Ops that keep zeros at zero (f(0) = 0), for the zero analysis.
ZERO_UNARY = frozenset("""
neg convert_element_type copy copy_p abs sign sqrt cbrt square sin tan tanh
erf erf_inv expm1 log1p floor ceil round reduce_precision real imag conj asin
asinh atan atanh sinh stop_gradient sharding_constraint mesh_cast reshard
integer_pow
""".split())
REDUCTIONS = frozenset("""
reduce_sum reduce_max reduce_min reduce_prod reduce_and reduce_or reduce_xor
argmax argmin
""".split())
CUMULATIVE = frozenset('cumsum cumprod cummax cummin cumlogsumexp'.split())
SOURCES = frozenset("""
iota random_bits random_seed random_fold_in random_split rng_bit_generator
rng_uniform
""".split())
CALLS = ('jaxpr', 'call_jaxpr', 'fun_jaxpr')


def _sub_jaxpr(eqn):
  """The callee of a call-like equation (jit, remat, custom_jvp/vjp...)."""
  for key in CALLS:
    j = eqn.params.get(key)
    if isinstance(j, jex_core.ClosedJaxpr):
      return j.jaxpr, list(j.consts)
    if isinstance(j, jex_core.Jaxpr):
      return j, []
  return None


def _is_literal(v) -> bool:
  return isinstance(v, jex_core.Literal)


def _shape(v) -> tuple[int, ...]:
  return tuple(getattr(v.aval, 'shape', ()))


class _UnionFind:
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
class _VarInfo:
  """Dataflow facts about one jaxpr variable."""
  data: bool = False  # Depends on the model inputs (not only on variables).
  stat: bool = False  # A statistic: reduced or broadcast data, not a branch.
  zero: bool = False  # Zero wherever a pruned channel sits.
  origin: Member | None = None  # The variable leaf it is (up to casts).
  src: frozenset = frozenset()  # conv/matmul equations its value comes from.


# ----------------------------------------------------------------------------
# Tracing.
# ----------------------------------------------------------------------------


class _Tracer:
  """Walks a jaxpr, building the union-find and the bookkeeping."""

  def __init__(self):
    self.uf = _UnionFind()
    self.nodes: dict[tuple[Var, int], Node] = {}
    self.info: dict[Var, _VarInfo] = {}
    self.blocked: dict[Node, str] = {}
    self.spatial: set[Node] = set()
    self.io: dict[Node, str] = {}
    self.touches: dict[Node, set[str]] = collections.defaultdict(set)
    self.residual: set[Node] = set()
    self.defs: list[tuple[str, Node, list[Node]]] = []  # (kind, whole, parts)
    self.fresh_nodes: dict[Any, Node] = {}
    self.eqn_nodes: dict[tuple[int, str], Any] = {}
    self.roles: list[tuple[str, Member]] = []  # ('producer'|'consumer', m)
    self.matmuls: list[tuple[list[Node], list[Node], int, int]] = []
    self.unknown: set[str] = set()
    self.ctx = 0
    self.n_ctx = 0
    self.children: dict[tuple[int, int], list[int]] = {}
    self.mult = 1  # MAC multiplicity of the code being walked (scan length).
    self.first_use: dict[Member, int] = {}
    self.counter = 0

  # -- nodes ------------------------------------------------------------------
  # A cached sub-jaxpr (e.g. jax.nn.relu's) is the same object at every call
  # site, so variables are keyed by (call context, var).
  def node(self, v, axis: int, ctx: int | None = None) -> Node | None:
    if _is_literal(v):
      return None
    key = (self.ctx if ctx is None else ctx, v, axis)
    if key not in self.nodes:
      self.nodes[key] = self.uf.new(_shape(v)[axis])
    return self.nodes[key]

  def fresh(self, key, size: int) -> Node:
    key = (self.ctx, key)
    if key not in self.fresh_nodes:
      self.fresh_nodes[key] = self.uf.new(size)
    return self.fresh_nodes[key]

  def note(self, eqn, tag: str, value) -> None:
    self.eqn_nodes[(self.ctx, id(eqn), tag)] = value

  def vinfo(self, v, ctx: int | None = None) -> _VarInfo:
    if _is_literal(v):
      val = np.asarray(v.val)
      return _VarInfo(zero=bool(np.all(val == 0)))
    return self.info.setdefault((self.ctx if ctx is None else ctx, v),
                                _VarInfo())

  def set_info(self, v, info: _VarInfo, ctx: int | None = None) -> None:
    if not _is_literal(v):
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
    if _is_literal(outer) or _is_literal(inner):
      return
    for a in range(len(_shape(inner))):
      self.union(self.node(outer, a + shift), self.node(inner, a, inner_ctx))
    if shift:
      for a in range(shift):
        self.block(self.node(outer, a), 'scanned axis')

  def sub(self, eqn, jaxpr, ins, outs, in_shift=None, out_shift=None,
          carry=None) -> None:
    """Walks a callee in a fresh context, linked to the caller's vars."""
    outer = self.ctx
    self.n_ctx += 1
    inner = self.n_ctx
    self.children.setdefault((outer, id(eqn)), []).append(inner)
    for k, (o, i) in enumerate(zip(ins, jaxpr.invars)):
      self.link(o, i, inner, (in_shift or {}).get(k, 0))
    self.ctx = inner
    self.walk(jaxpr)
    for bi, bo in (carry or []):  # Loop carries: body output = body input.
      bi, bo = jaxpr.invars[bi], jaxpr.outvars[bo]
      if not _is_literal(bo):
        for a in range(len(_shape(bo))):
          self.union(self.node(bi, a), self.node(bo, a))
    self.ctx = outer
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
    if n is not None and n not in self.blocked:
      self.blocked[n] = reason

  def block_var(self, v, reason: str) -> None:
    if not _is_literal(v):
      for a in range(len(_shape(v))):
        self.block(self.node(v, a), reason)

  def define(self, kind: str, whole: Node, parts: list[Node]) -> None:
    parts = [p for p in parts if self.uf.size[p] > 0]
    if len(parts) == 1:
      self.union(whole, parts[0])
    else:
      self.defs.append((kind, whole, parts))

  # -- walking ----------------------------------------------------------------
  def walk(self, jaxpr) -> None:
    for eqn in jaxpr.eqns:
      self.counter += 1
      for v in eqn.invars:
        o = self.vinfo(v).origin
        if o is not None and o not in self.first_use:
          self.first_use[o] = self.counter
      self.equation(eqn)

  def equation(self, eqn) -> None:
    name = eqn.primitive.name
    ins, outs = eqn.invars, eqn.outvars
    data = any(self.vinfo(v).data for v in ins)
    src = frozenset().union(*(self.vinfo(v).src for v in ins))
    for o in outs:
      self.set_info(o, _VarInfo(data=data, src=src))
    handler = getattr(self, '_p_' + name, None)
    if handler is not None:
      handler(eqn)
    elif name in ELEMENTWISE:
      self.elementwise(eqn)
    elif name in REDUCTIONS:
      self.reduction(eqn)
    elif name in CUMULATIVE:
      self.same_shape(eqn, block_axes=(eqn.params['axis'],), reason=name)
    elif name in SOURCES:
      pass  # Fresh values: no coupling.
    elif _sub_jaxpr(eqn) is not None:
      self.sub(eqn, _sub_jaxpr(eqn)[0], ins, outs)
    else:
      if name not in self.unknown:
        self.unknown.add(name)
        warnings.warn(f'jaxprune.structure: unknown primitive {name!r}; the '
                      'axes it touches are marked unprunable.', stacklevel=3)
      for v in list(ins) + list(outs):
        self.block_var(v, f'unknown primitive {name!r}')

  # -- generic rules ----------------------------------------------------------
  def elementwise(self, eqn) -> None:
    name = eqn.primitive.name
    out = eqn.outvars[0]
    shape = _shape(out)
    for v in eqn.invars:
      s = _shape(v)
      if len(s) != len(shape):
        continue  # Scalars.
      for a, (n, m) in enumerate(zip(s, shape)):
        if n == m:
          for o in eqn.outvars:
            self.union(self.node(v, a), self.node(o, a))
        elif n != 1:
          self.block(self.node(v, a), f'{name} with shape {s} vs {shape}')
    infos = [self.vinfo(v) for v in eqn.invars]
    data = [i for i in infos if i.data]
    oi = self.vinfo(out)
    oi.stat = bool(data) and all(i.stat for i in data)
    oi.src = frozenset().union(*(i.src for i in infos))
    if name in ('add', 'add_any', 'sub'):
      # Two branches: data from different layers (x + 0.04 * x**3 in a GELU
      # adds two functions of one layer's output, which is no residual).
      branches = {i.src for i in data if not i.stat}
      if len(branches) >= 2:
        for a in range(len(shape)):
          self.residual.add(self.node(out, a))
      oi.zero = all(i.zero for i in infos)
    elif name in ('max', 'min', 'select_n', 'clamp'):
      cases = infos[1:] if name == 'select_n' else infos
      oi.zero = all(i.zero for i in cases)
    elif name == 'mul':
      oi.zero = any(i.zero for i in infos)
    elif name == 'div':
      oi.zero = infos[0].zero
    elif name in ZERO_UNARY:
      oi.zero = infos[0].zero
      oi.origin = infos[0].origin if name in (
          'convert_element_type', 'copy', 'copy_p', 'reduce_precision',
          'sharding_constraint', 'mesh_cast', 'reshard') else None
    for o in eqn.outvars[1:]:
      self.set_info(o, dataclasses.replace(oi, origin=None))

  def same_shape(self, eqn, block_axes=(), reason='') -> None:
    for v in list(eqn.invars) + list(eqn.outvars):
      if _shape(v) != _shape(eqn.outvars[0]):
        continue
      for a in range(len(_shape(v))):
        self.union(self.node(v, a), self.node(eqn.outvars[0], a))
    for a in block_axes:
      self.block(self.node(eqn.outvars[0], a), f'{reason} along the axis')
    z = self.vinfo(eqn.invars[0]).zero
    for o in eqn.outvars:
      self.vinfo(o).zero = z and eqn.primitive.name == 'cumsum'

  def map_axes(self, src, dst, mapping: dict[int, int]) -> None:
    for a, b in mapping.items():
      self.union(self.node(src, a), self.node(dst, b))

  def reduction(self, eqn) -> None:
    name = eqn.primitive.name
    x, out = eqn.invars[0], eqn.outvars[0]
    axes = tuple(eqn.params['axes'])
    kept = [a for a in range(len(_shape(x))) if a not in axes]
    self.map_axes(x, out, {a: i for i, a in enumerate(kept)})
    xi = self.vinfo(x)
    for a in axes:
      if name != 'reduce_sum' or not xi.zero:
        self.block(self.node(x, a), f'{name} over the axis sees pruned '
                   'channels')
    oi = self.vinfo(out)
    oi.stat = xi.data
    oi.zero = xi.zero and name in ('reduce_sum', 'reduce_max', 'reduce_min')

  # -- structural primitives --------------------------------------------------
  def _p_broadcast_in_dim(self, eqn) -> None:
    x, out = eqn.invars[0], eqn.outvars[0]
    xs, os_ = _shape(x), _shape(out)
    dims = eqn.params['broadcast_dimensions']
    for a, d in enumerate(dims):
      if xs[a] == os_[d]:
        self.union(self.node(x, a), self.node(out, d))
    xi = self.vinfo(x)
    oi = self.vinfo(out)
    oi.zero = xi.zero
    oi.stat = xi.data and (xi.stat or math.prod(xs) < math.prod(os_))

  def _p_reshape(self, eqn) -> None:
    x, out = eqn.invars[0], eqn.outvars[0]
    xs, os_ = _shape(x), _shape(out)
    xi = self.vinfo(x)
    self.set_info(out, dataclasses.replace(xi, origin=None))
    if eqn.params.get('dimensions') is not None:
      self.block_var(x, 'reshape with dimensions')
      self.block_var(out, 'reshape with dimensions')
      return
    ins = [a for a in range(len(xs)) if xs[a] != 1]
    outs = [a for a in range(len(os_)) if os_[a] != 1]
    i = j = 0
    while i < len(ins) and j < len(outs):
      bi, bo = [ins[i]], [outs[j]]
      pi, po = xs[ins[i]], os_[outs[j]]
      i, j = i + 1, j + 1
      while pi != po:
        if pi < po and i < len(ins):
          bi.append(ins[i])
          pi *= xs[ins[i]]
          i += 1
        elif po < pi and j < len(outs):
          bo.append(outs[j])
          po *= os_[outs[j]]
          j += 1
        else:
          break
      if pi != po or (len(bi) > 1 and len(bo) > 1):
        for a in bi:
          self.block(self.node(x, a), 'reshape that is not a split or merge')
        for b in bo:
          self.block(self.node(out, b), 'reshape that is not a split or merge')
      elif len(bi) == 1 and len(bo) == 1:
        self.union(self.node(x, bi[0]), self.node(out, bo[0]))
      elif len(bi) == 1:
        self.define('product', self.node(x, bi[0]),
                    [self.node(out, b) for b in bo])
      else:
        self.define('product', self.node(out, bo[0]),
                    [self.node(x, a) for a in bi])

  def _p_squeeze(self, eqn) -> None:
    x, out = eqn.invars[0], eqn.outvars[0]
    dims = set(d % len(_shape(x)) for d in eqn.params['dimensions'])
    kept = [a for a in range(len(_shape(x))) if a not in dims]
    self.map_axes(x, out, {a: i for i, a in enumerate(kept)})
    self.set_info(out, dataclasses.replace(self.vinfo(x), origin=None))

  def _p_expand_dims(self, eqn) -> None:
    x, out = eqn.invars[0], eqn.outvars[0]
    dims = set(eqn.params['dimensions'])
    new = [b for b in range(len(_shape(out))) if b not in dims]
    self.map_axes(x, out, {a: b for a, b in enumerate(new)})
    self.set_info(out, dataclasses.replace(self.vinfo(x), origin=None))

  def _p_transpose(self, eqn) -> None:
    x, out = eqn.invars[0], eqn.outvars[0]
    perm = eqn.params['permutation']
    self.map_axes(x, out, {p: i for i, p in enumerate(perm)})
    self.set_info(out, dataclasses.replace(self.vinfo(x), origin=None))

  def _p_rev(self, eqn) -> None:
    x, out = eqn.invars[0], eqn.outvars[0]
    self.map_axes(x, out, {a: a for a in range(len(_shape(x)))})
    for a in eqn.params['dimensions']:
      self.block(self.node(out, a), 'rev reverses the axis')
    self.set_info(out, dataclasses.replace(self.vinfo(x), origin=None))

  def _p_concatenate(self, eqn) -> None:
    out = eqn.outvars[0]
    d = eqn.params['dimension']
    for v in eqn.invars:
      for a in range(len(_shape(out))):
        if a != d:
          self.union(self.node(v, a), self.node(out, a))
    parts = [self.node(v, d) if not _is_literal(v) else self.fresh(
        (id(eqn), 'lit', k), _shape(v)[d]) for k, v in enumerate(eqn.invars)]
    self.define('concat', self.node(out, d), parts)
    infos = [self.vinfo(v) for v in eqn.invars]
    self.vinfo(out).zero = all(i.zero for i in infos)

  def _p_split(self, eqn) -> None:
    x = eqn.invars[0]
    d = eqn.params['axis']
    for o in eqn.outvars:
      for a in range(len(_shape(x))):
        if a != d:
          self.union(self.node(x, a), self.node(o, a))
      self.vinfo(o).zero = self.vinfo(x).zero
    self.define('concat', self.node(x, d),
                [self.node(o, d) for o in eqn.outvars])

  def _p_pad(self, eqn) -> None:
    x, value = eqn.invars
    out = eqn.outvars[0]
    for a, (lo, hi, interior) in enumerate(eqn.params['padding_config']):
      lo, hi, interior = int(lo), int(hi), int(interior)
      if lo == hi == interior == 0:
        self.union(self.node(x, a), self.node(out, a))
      elif interior == 0 and lo >= 0 and hi >= 0:
        lo_n = self.fresh((id(eqn), a, 'lo'), lo) if lo else None
        hi_n = self.fresh((id(eqn), a, 'hi'), hi) if hi else None
        parts = [n for n in (lo_n, self.node(x, a), hi_n) if n is not None]
        self.note(eqn, f'pad{a}', (lo_n, hi_n))
        self.define('concat', self.node(out, a), parts)
      else:
        self.block(self.node(x, a), 'pad with interior or negative padding')
        self.block(self.node(out, a), 'pad with interior or negative padding')
    self.vinfo(out).zero = self.vinfo(x).zero and self.vinfo(value).zero

  def _p_slice(self, eqn) -> None:
    x, out = eqn.invars[0], eqn.outvars[0]
    xs = _shape(x)
    strides = eqn.params['strides'] or (1,) * len(xs)
    for a, (s, l, st) in enumerate(zip(eqn.params['start_indices'],
                                       eqn.params['limit_indices'], strides)):
      if s == 0 and l == xs[a] and st == 1:
        self.union(self.node(x, a), self.node(out, a))
      elif st == 1:
        pre = self.fresh((id(eqn), a, 'pre'), s) if s else None
        post = (self.fresh((id(eqn), a, 'post'), xs[a] - l) if l < xs[a]
                else None)
        parts = [n for n in (pre, self.node(out, a), post) if n is not None]
        self.note(eqn, f'slice{a}', (pre, post))
        self.define('concat', self.node(x, a), parts)
      else:
        self.block(self.node(x, a), 'strided slice')
        self.block(self.node(out, a), 'strided slice')
    xi = self.vinfo(x)
    self.vinfo(out).zero = xi.zero
    self.vinfo(out).stat = xi.stat

  def _p_dynamic_slice(self, eqn) -> None:
    x, out = eqn.invars[0], eqn.outvars[0]
    for a, (n, m) in enumerate(zip(_shape(x), eqn.params['slice_sizes'])):
      if n == m:
        self.union(self.node(x, a), self.node(out, a))
      else:
        self.block(self.node(x, a), 'dynamic_slice')
        self.block(self.node(out, a), 'dynamic_slice')
    for v in eqn.invars[1:]:
      self.block_var(v, 'index')
    self.vinfo(out).zero = self.vinfo(x).zero

  def _p_dynamic_update_slice(self, eqn) -> None:
    x, upd = eqn.invars[:2]
    out = eqn.outvars[0]
    for a, (n, m) in enumerate(zip(_shape(x), _shape(upd))):
      self.union(self.node(x, a), self.node(out, a))
      if n == m:
        self.union(self.node(upd, a), self.node(out, a))
      else:
        self.block(self.node(out, a), 'dynamic_update_slice')
        self.block(self.node(upd, a), 'dynamic_update_slice')
    self.vinfo(out).zero = self.vinfo(x).zero and self.vinfo(upd).zero

  def _p_sort(self, eqn) -> None:
    self.same_shape(eqn, block_axes=(eqn.params['dimension'],), reason='sort')

  def _p_top_k(self, eqn) -> None:
    x = eqn.invars[0]
    r = len(_shape(x))
    for o in eqn.outvars:
      self.map_axes(x, o, {a: a for a in range(r - 1)})
      self.block(self.node(o, r - 1), 'top_k')
    self.block(self.node(x, r - 1), 'top_k')

  def _reduce_window(self, eqn) -> None:
    x, out = eqn.invars[0], eqn.outvars[0]
    p = eqn.params
    r = len(_shape(x))
    pads = p.get('padding') or ((0, 0),) * r
    for a in range(r):
      plain = (p['window_dimensions'][a] == 1 and p['window_strides'][a] == 1
               and tuple(pads[a]) == (0, 0)
               and (p.get('base_dilation') or (1,) * r)[a] == 1)
      if plain:
        self.union(self.node(x, a), self.node(out, a))
      else:
        self.spatial.add(self.node(x, a))
        self.spatial.add(self.node(out, a))
    self.vinfo(out).zero = self.vinfo(x).zero and eqn.primitive.name in (
        'reduce_window_sum', 'reduce_window_max', 'reduce_window_min')

  _p_reduce_window_sum = _reduce_window
  _p_reduce_window_max = _reduce_window
  _p_reduce_window_min = _reduce_window

  def _p_reduce_window(self, eqn) -> None:
    n = len(eqn.outvars)
    for x, o in zip(eqn.invars[:n], eqn.outvars):
      fake = type('E', (), {'invars': [x], 'outvars': [o], 'params':
                            eqn.params, 'primitive': eqn.primitive})
      self._reduce_window(fake)

  def _p_argsort(self, eqn) -> None:  # Only in some versions.
    self._p_sort(eqn)

  # -- contractions -------------------------------------------------------------
  def _roles(self, v, axes, role: str) -> None:
    origin = self.vinfo(v).origin
    if origin is not None:
      for a in axes:
        self.roles.append((role, Member(origin.collection, origin.path, a)))

  def _p_dot_general(self, eqn) -> None:
    lhs, rhs = eqn.invars[:2]
    out = eqn.outvars[0]
    (lc, rc), (lb, rb) = eqn.params['dimension_numbers']
    ls, rs = _shape(lhs), _shape(rhs)
    li, ri = self.vinfo(lhs), self.vinfo(rhs)
    k = 0
    for a, b in zip(lb, rb):
      self.union(self.node(lhs, a), self.node(out, k))
      self.union(self.node(rhs, b), self.node(out, k))
      k += 1
    lfree = [a for a in range(len(ls)) if a not in lc and a not in lb]
    rfree = [b for b in range(len(rs)) if b not in rc and b not in rb]
    for a in lfree:
      self.union(self.node(lhs, a), self.node(out, k))
      k += 1
    for b in rfree:
      self.union(self.node(rhs, b), self.node(out, k))
      k += 1
    for a, b in zip(lc, rc):
      self.union(self.node(lhs, a), self.node(rhs, b))
      if not (li.zero or ri.zero):
        self.block(self.node(lhs, a), 'contraction of values that are not '
                   'zero at pruned channels')
    self._roles(rhs, rfree, 'producer')
    self._roles(rhs, rc, 'consumer')
    self._roles(lhs, lfree, 'producer')
    self._roles(lhs, lc, 'consumer')
    self.vinfo(out).zero = li.zero or ri.zero
    self.vinfo(out).src = frozenset([(self.ctx, id(eqn))])
    self.matmuls.append(([self.node(out, a) for a in range(len(_shape(out)))],
                         [self.node(lhs, a) for a in lc], 1, self.mult))

  def _p_conv_general_dilated(self, eqn) -> None:
    lhs, rhs = eqn.invars[:2]
    out = eqn.outvars[0]
    p = eqn.params
    dn = p['dimension_numbers']
    ls, rs, os_ = _shape(lhs), _shape(rhs), _shape(out)
    (ln, lc), lsp = dn.lhs_spec[:2], dn.lhs_spec[2:]
    (ro, ri), rsp = dn.rhs_spec[:2], dn.rhs_spec[2:]
    (on, oc), osp = dn.out_spec[:2], dn.out_spec[2:]
    self.union(self.node(lhs, ln), self.node(out, on))
    for a in lsp:
      self.spatial.add(self.node(lhs, a))
    for a in rsp:
      self.spatial.add(self.node(rhs, a))
    for a in osp:
      self.spatial.add(self.node(out, a))
    self.union(self.node(rhs, ro), self.node(out, oc))
    g = p['feature_group_count']
    if p['batch_group_count'] != 1:
      for v, a in ((lhs, lc), (rhs, ro), (rhs, ri), (out, oc)):
        self.block(self.node(v, a), 'batch_group_count > 1')
    elif g == 1:
      self.union(self.node(lhs, lc), self.node(rhs, ri))
    else:
      gnode = self.fresh((id(eqn), 'groups'), g)
      self.note(eqn, 'groups', gnode)
      cin, cout = ls[lc] // g, rs[ro] // g
      self.define('product', self.node(lhs, lc),
                  [gnode] + ([self.node(rhs, ri)] if cin > 1 else []))
      self.define('product', self.node(rhs, ro),
                  [gnode] + ([self.fresh((id(eqn), 'per_group_out'), cout)]
                             if cout > 1 else []))
    self._roles(rhs, (ro,), 'producer')
    self._roles(rhs, (ri,), 'consumer')
    self.vinfo(out).zero = self.vinfo(lhs).zero or self.vinfo(rhs).zero
    self.vinfo(out).src = frozenset([(self.ctx, id(eqn))])
    window = math.prod(rs[a] for a in rsp)
    self.matmuls.append(([self.node(out, a) for a in range(len(os_))],
                         [self.node(rhs, ri)], window, self.mult))

  # -- control flow -------------------------------------------------------------
  def _p_scan(self, eqn) -> None:
    p = eqn.params
    nc, ncarry = p['num_consts'], p['num_carry']
    n_in = len(eqn.invars)
    outer_mult = self.mult
    self.mult *= p['length']
    self.sub(eqn, p['jaxpr'].jaxpr, eqn.invars, eqn.outvars,
             in_shift={k: 1 for k in range(nc + ncarry, n_in)},
             out_shift={k: 1 for k in range(ncarry, len(eqn.outvars))},
             carry=[(nc + k, k) for k in range(ncarry)])
    self.mult = outer_mult
    for k in range(ncarry):  # The carry enters and leaves with one shape.
      self.link(eqn.invars[nc + k], eqn.outvars[k], self.ctx)

  def _p_while(self, eqn) -> None:
    # The trip count is unknown: the body's MACs count once, as in flops.
    p = eqn.params
    cn, bn = p['cond_nconsts'], p['body_nconsts']
    ins = list(eqn.invars)
    init = ins[cn + bn:]
    self.sub(eqn, p['cond_jaxpr'].jaxpr, ins[:cn] + init, [None])
    self.sub(eqn, p['body_jaxpr'].jaxpr, ins[cn:], eqn.outvars,
             carry=[(bn + k, k) for k in range(len(init))])
    for i, o in zip(init, eqn.outvars):
      self.link(i, o, self.ctx)

  def _p_cond(self, eqn) -> None:
    ops = eqn.invars[1:]
    kept, best = [], -1
    for br in eqn.params['branches']:
      start = len(self.matmuls)
      self.sub(eqn, br.jaxpr, ops, eqn.outvars)
      mine = self.matmuls[start:]
      del self.matmuls[start:]
      dense = sum(w * m * math.prod(self.uf.size[n] for n in o + c)
                  for o, c, w, m in mine)
      if dense > best:  # As flops.count: the costliest branch.
        kept, best = mine, dense
    self.matmuls.extend(kept)


# ----------------------------------------------------------------------------
# The graph.
# ----------------------------------------------------------------------------


def _leaf_members(variables) -> list[tuple[Member | None, Any]]:
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

  def __init__(self, tracer: _Tracer, closed, variables, leaves, treedef,
               n_var_leaves: int, args_treedef, out_treedef):
    self._t = tracer
    self.closed = closed
    self.variables_treedef = treedef
    self.args_treedef = args_treedef
    self.out_treedef = out_treedef
    self.leaves = leaves  # [(collection, path, leaf)] for the variables.
    self.n_var_leaves = n_var_leaves
    self._resolve()

  # -- resolution -------------------------------------------------------------
  def _resolve(self) -> None:
    t, uf = self._t, self._t.uf
    find = uf.find
    n_nodes = len(uf.parent)
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
    defs: dict[Node, dict] = collections.defaultdict(dict)
    for kind, whole, parts in t.defs:
      parts = tuple(find(p) for p in parts)
      key = (kind, tuple(-1 if uf.size[p] == 1 else p for p in parts))
      defs[find(whole)].setdefault(key, (kind, parts))
    layout: dict[Node, tuple[str, tuple[Node, ...]]] = {}
    conflicting: dict[Node, list[Node]] = {}
    for root, by_key in defs.items():
      ds = list(by_key.values())
      if len(ds) == 1:
        layout[root] = ds[0]
      else:
        conflicting[root] = [parts for _, parts in ds]
        blocked.setdefault(root, 'axis split or concatenated in two '
                           'incompatible ways')
        for _, parts in ds:
          for p in parts:
            blocked.setdefault(p, 'axis split or concatenated in two '
                               'incompatible ways')
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
        for g, idx in self._expand(find(t.nodes[(0, v, a)])):
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

  def groups_of(self, member: Member) -> list[tuple[Group, np.ndarray]]:
    """Groups carried by one parameter axis, with their index maps."""
    coll, path, axis = member
    for (c, p, _), v in zip(self.leaves, self.closed.jaxpr.invars):
      if (c, tuple(p)) == (coll, tuple(path)):
        node = self._t.nodes.get((0, v, axis))
        if node is None:
          return []
        return [(self._root_group[g], idx)
                for g, idx in self._expand(self._t.uf.find(node))
                if g in self._root_group]
    raise ValueError(f'No variable {coll}/{"/".join(path)}.')

  def touches(self, member: Member) -> frozenset[str]:
    """Which ends of the model ('input', 'output') a parameter axis is tied
    to, including axes of size 1 that form no group (a grey-scale input)."""
    coll, path, axis = member
    for (c, p, _), v in zip(self.leaves, self.closed.jaxpr.invars):
      if (c, tuple(p)) == (coll, tuple(path)):
        node = self._t.nodes.get((0, v, axis))
        if node is None:
          return frozenset()
        root = self._t.uf.find(node)
        ends = set(self._touches.get(root, ()))
        for g, _ in self._expand(root):  # The parts of a composite axis.
          ends |= self._touches.get(g, set())
        return frozenset(ends)
    raise ValueError(f'No variable {coll}/{"/".join(path)}.')

  def full_masks(self, value: bool = True) -> dict[str, jax.Array]:
    """All-kept (or all-pruned) channel masks for every prunable group."""
    return {g.name: jnp.full((g.size,), value) for g in self.prunable}

  def _check_masks(self, channel_masks) -> None:
    bad = [k for k in channel_masks if k not in self._by_name]
    if bad:
      raise ValueError(f'Unknown group(s) {bad}; known: '
                       f'{", ".join(self._by_name)}.')
    for k, m in channel_masks.items():
      if np.shape(m) != (self._by_name[k].size,):
        raise ValueError(f'Mask of group {k!r} has shape {np.shape(m)}; '
                         f'expected ({self._by_name[k].size},).')

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
    self._check_masks(channel_masks)
    out = []
    for (_, _, leaf), v in zip(self.leaves, self.closed.jaxpr.invars):
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
                 collection: str = 'params') -> int:
    """Scalars in `collection` once the masked channels are removed.

    Equals `jaxprune.flops.count(...).params` of the slimmed network (which
    counts the 'params' collection).
    """
    self._check_masks(channel_masks)
    total = 0
    for (coll, _, leaf), v in zip(self.leaves, self.closed.jaxpr.invars):
      if coll != collection:
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
    self._check_masks(channel_masks)
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


def key_name(k) -> str:
  """The name of one pytree path entry (dict key, attribute or index)."""
  for attr in ('key', 'name', 'idx'):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def _first(idx) -> int:
  return 0 if idx is None else int(idx.min())


def trace(apply_fn: Callable[..., Any], variables: Any, *args: Any,
          **kwargs: Any) -> ChannelGraph:
  """Builds the channel graph of `apply_fn(variables, *args, **kwargs)`.

  Args:
    apply_fn: e.g. `model.apply`, or any function of (variables, *args).
    variables: the variables pytree, e.g. {'params': ..., 'batch_stats': ...}
      (arrays or `jax.ShapeDtypeStruct`s); its top-level keys are the
      collections of the members.
    *args: example inputs (arrays or ShapeDtypeStructs); their axes are never
      pruned.
    **kwargs: static keyword arguments, e.g. `train=False`.

  Returns:
    The `ChannelGraph`.
  """
  var_leaves, treedef = jax.tree.flatten(variables)
  arg_leaves, args_treedef = jax.tree.flatten(args)
  out_store = {}

  def fn(var_leaves, arg_leaves):
    v = jax.tree.unflatten(treedef, var_leaves)
    a = jax.tree.unflatten(args_treedef, arg_leaves)
    out = apply_fn(v, *a, **kwargs)
    flat, out_store['treedef'] = jax.tree.flatten(out)
    out_store['paths'] = [tuple(key_name(k) for k in p) for p, _ in
                          jax.tree_util.tree_flatten_with_path(out)[0]]
    return flat

  closed = jax.make_jaxpr(fn)(var_leaves, arg_leaves)
  t = _Tracer()
  jaxpr = closed.jaxpr
  leaves = _leaf_members(variables)
  for (coll, path, _), v in zip(leaves, jaxpr.invars[:len(var_leaves)]):
    t.set_info(v, _VarInfo(zero=True, origin=Member(coll, tuple(path), 0)))
  for k, v in enumerate(jaxpr.invars[len(var_leaves):]):
    t.set_info(v, _VarInfo(data=True))
    for a in range(len(_shape(v))):
      t.io[t.node(v, a)] = 'touches the model input'
      t.touches[t.node(v, a)].add('input')
  for v in jaxpr.constvars:
    t.set_info(v, _VarInfo())
  t.walk(jaxpr)
  # An output that is a variable's new value (flax's `mutable=[...]`, e.g.
  # updated batch statistics) is sliced like that variable, not fixed in
  # width like the model's outputs.
  var_of = {(coll, *map(str, path)): v for (coll, path, _), v in
            zip(leaves, jaxpr.invars[:len(var_leaves)])}
  for v, names in zip(jaxpr.outvars, out_store['paths']):
    if _is_literal(v):
      continue
    same = next((var_of[names[i:]] for i in range(len(names) - 1)
                 if names[i:] in var_of), None)
    if same is not None and _shape(same) == _shape(v):
      for a in range(len(_shape(v))):
        t.union(t.node(v, a), t.node(same, a), 'a variable and its update')
      continue
    for a in range(len(_shape(v))):
      t.io[t.node(v, a)] = 'touches the model output'
      t.touches[t.node(v, a)].add('output')
  return ChannelGraph(t, closed, variables, leaves, treedef, len(var_leaves),
                      args_treedef, out_store.get('treedef'))
