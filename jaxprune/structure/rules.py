"""The tracer's rules: how each primitive family couples channel axes.

Each mixin handles one family; `Tracer` (tracer.py) combines them and
dispatches an equation to `_p_<name>` (names with '-' use '_'), else to the
generic elementwise, reduction or cumulative rule by the tables below, else
inlines a call-like equation's callee. Any other primitive is *unknown*: every
axis of its operands and results becomes unprunable, with a reason naming it
and the layer, and one warning per primitive name.

A rule couples axes with `self.union`, defines composite axes with
`self.define('product' | 'concat', whole, parts)`, blocks axes with
`self.block(node, why)` (the tracer appends the primitive and layer), and
updates the dataflow facts of the results (`zero`, `stat`, `origin`, `src`).
"""
import dataclasses
import math

from jaxprune.structure import jaxpr as jx
from jaxprune.structure.members import Member

ELEMENTWISE = frozenset("""
abs acos acosh add add_any and asin asinh atan atan2 atanh cbrt ceil clamp clz
conj convert_element_type copy copy_p cos cosh digamma div eq erf erf_inv erfc
exp exp2 expm1 floor ge gt igamma igammac imag integer_pow is_finite le lgamma
log log1p logistic lt max min mul ne neg nextafter not or polygamma
population_count pow real reduce_precision rem round rsqrt select_n
shift_left shift_right_arithmetic shift_right_logical sign sin sinh sqrt square
stop_gradient sub tan tanh xor zeta bessel_i0e bessel_i1e random_wrap
random_unwrap threefry2x32 sharding_constraint mesh_cast reshard
optimization_barrier bitcast_convert_type random_clone
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


class ElementwiseRules:
  """Elementwise ops (with broadcasting), reductions, scans along an axis."""

  def elementwise(self, eqn) -> None:
    name = eqn.primitive.name
    out = eqn.outvars[0]
    shape = jx.shape(out)
    for v in eqn.invars:
      s = jx.shape(v)
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
      oi.perm = infos[0].perm if oi.origin else None
    for o in eqn.outvars[1:]:
      self.set_info(o, dataclasses.replace(oi, origin=None))

  def same_shape(self, eqn, block_axes=(), reason='') -> None:
    for v in list(eqn.invars) + list(eqn.outvars):
      if jx.shape(v) != jx.shape(eqn.outvars[0]):
        continue
      for a in range(len(jx.shape(v))):
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
    kept = [a for a in range(len(jx.shape(x))) if a not in axes]
    self.map_axes(x, out, {a: i for i, a in enumerate(kept)})
    xi = self.vinfo(x)
    for a in axes:
      if name != 'reduce_sum' or not xi.zero:
        self.block(self.node(x, a), f'{name} over the axis sees pruned '
                   'channels')
    oi = self.vinfo(out)
    oi.stat = xi.data
    oi.zero = xi.zero and name in ('reduce_sum', 'reduce_max', 'reduce_min')


  def _p_sort(self, eqn) -> None:
    self.same_shape(eqn, block_axes=(eqn.params['dimension'],), reason='sort')


  def _p_argsort(self, eqn) -> None:  # Only in some versions.
    self._p_sort(eqn)


  def _p_top_k(self, eqn) -> None:
    x = eqn.invars[0]
    r = len(jx.shape(x))
    for o in eqn.outvars:
      self.map_axes(x, o, {a: a for a in range(r - 1)})
      self.block(self.node(o, r - 1), 'top_k')
    self.block(self.node(x, r - 1), 'top_k')



class ShapeRules:
  """Broadcasts, reshapes, transposes, concatenation, padding, slicing."""

  def _p_broadcast_in_dim(self, eqn) -> None:
    x, out = eqn.invars[0], eqn.outvars[0]
    xs, os_ = jx.shape(x), jx.shape(out)
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
    xs, os_ = jx.shape(x), jx.shape(out)
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
    dims = set(d % len(jx.shape(x)) for d in eqn.params['dimensions'])
    kept = [a for a in range(len(jx.shape(x))) if a not in dims]
    self.map_axes(x, out, {a: i for i, a in enumerate(kept)})
    self.set_info(out, dataclasses.replace(self.vinfo(x), origin=None))

  def _p_expand_dims(self, eqn) -> None:
    x, out = eqn.invars[0], eqn.outvars[0]
    dims = set(eqn.params['dimensions'])
    new = [b for b in range(len(jx.shape(out))) if b not in dims]
    self.map_axes(x, out, {a: b for a, b in enumerate(new)})
    self.set_info(out, dataclasses.replace(self.vinfo(x), origin=None))

  def _p_transpose(self, eqn) -> None:
    x, out = eqn.invars[0], eqn.outvars[0]
    perm = eqn.params['permutation']
    self.map_axes(x, out, {p: i for i, p in enumerate(perm)})
    xi = self.vinfo(x)
    # A transposed variable (kernel.T, as in Conv1D-style projections) is
    # still that variable: its axes are tracked through the permutation.
    axes = xi.perm or tuple(range(len(perm)))
    self.set_info(out, dataclasses.replace(
        xi, perm=tuple(axes[p] for p in perm) if xi.origin else None))

  def _p_rev(self, eqn) -> None:
    x, out = eqn.invars[0], eqn.outvars[0]
    self.map_axes(x, out, {a: a for a in range(len(jx.shape(x)))})
    for a in eqn.params['dimensions']:
      self.block(self.node(out, a), 'rev reverses the axis')
    self.set_info(out, dataclasses.replace(self.vinfo(x), origin=None))

  def _p_concatenate(self, eqn) -> None:
    out = eqn.outvars[0]
    d = eqn.params['dimension']
    for v in eqn.invars:
      for a in range(len(jx.shape(out))):
        if a != d:
          self.union(self.node(v, a), self.node(out, a))
    parts = [self.node(v, d) if not jx.is_literal(v) else self.fresh(
        (id(eqn), 'lit', k), jx.shape(v)[d]) for k, v in enumerate(eqn.invars)]
    self.define('concat', self.node(out, d), parts)
    infos = [self.vinfo(v) for v in eqn.invars]
    self.vinfo(out).zero = all(i.zero for i in infos)

  def _p_split(self, eqn) -> None:
    x = eqn.invars[0]
    d = eqn.params['axis']
    for o in eqn.outvars:
      for a in range(len(jx.shape(x))):
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
    xs = jx.shape(x)
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


  def _p_stack(self, eqn) -> None:
    out = eqn.outvars[0]
    d = eqn.params['axis']
    for v in eqn.invars:
      self.map_axes(v, out, {a: a + (a >= d) for a in range(len(jx.shape(v)))})
    self.block(self.node(out, d), 'stack builds the axis from separate '
               'arrays')
    self.vinfo(out).zero = all(self.vinfo(v).zero for v in eqn.invars)

  def _p_tile(self, eqn) -> None:
    # Copy r of the input along an axis is one part of a concatenation, so
    # channel c owns positions c, c + n, c + 2n, ... of the tiled axis.
    x, out = eqn.invars[0], eqn.outvars[0]
    for a, r in enumerate(eqn.params['reps']):
      if r == 1:
        self.union(self.node(x, a), self.node(out, a))
      else:
        self.define('concat', self.node(out, a), [self.node(x, a)] * int(r))
    self.vinfo(out).zero = self.vinfo(x).zero

  def _reduce_window(self, eqn) -> None:
    x, out = eqn.invars[0], eqn.outvars[0]
    p = eqn.params
    r = len(jx.shape(x))
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



class IndexingRules:
  """Dynamic slices and updates, gathers and scatters: indexed axes are
  blocked, the others map through."""

  def _p_dynamic_slice(self, eqn) -> None:
    x, out = eqn.invars[0], eqn.outvars[0]
    for a, (n, m) in enumerate(zip(jx.shape(x), eqn.params['slice_sizes'])):
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
    for a, (n, m) in enumerate(zip(jx.shape(x), jx.shape(upd))):
      self.union(self.node(x, a), self.node(out, a))
      if n == m:
        self.union(self.node(upd, a), self.node(out, a))
      else:
        self.block(self.node(out, a), 'dynamic_update_slice')
        self.block(self.node(upd, a), 'dynamic_update_slice')
    self.vinfo(out).zero = self.vinfo(x).zero and self.vinfo(upd).zero



  def _p_gather(self, eqn) -> None:
    x, idx = eqn.invars[:2]
    out = eqn.outvars[0]
    dn = eqn.params['dimension_numbers']
    sizes = eqn.params['slice_sizes']
    xs, os_ = jx.shape(x), jx.shape(out)
    indexed = set(dn.collapsed_slice_dims) | set(dn.start_index_map)
    window = [a for a in range(len(xs)) if a not in dn.collapsed_slice_dims
              and a not in dn.operand_batching_dims]
    for a, d in zip(window, dn.offset_dims):
      if a not in indexed and sizes[a] == xs[a]:
        self.union(self.node(x, a), self.node(out, d))  # e.g. the features.
      else:
        self.block(self.node(x, a), 'gather slices the axis')
        self.block(self.node(out, d), 'gather slices the axis')
    for a in indexed:
      self.block(self.node(x, a), 'gather indexes along the axis')
    # The index array's batch axes (all but the trailing index vector) are
    # the output's non-offset axes, in order.
    batch = [d for d in range(len(os_)) if d not in dn.offset_dims]
    for i, d in zip(range(len(jx.shape(idx)) - 1), batch):
      self.union(self.node(idx, i), self.node(out, d))
    for a, i in zip(dn.operand_batching_dims, dn.start_indices_batching_dims):
      self.union(self.node(x, a), self.node(idx, i))
    xi = self.vinfo(x)
    self.vinfo(out).zero = xi.zero
    self.vinfo(out).stat = xi.stat

  def _scatter(self, eqn) -> None:
    x, idx, upd = eqn.invars[:3]
    out = eqn.outvars[0]
    dn = eqn.params['dimension_numbers']
    xs, us = jx.shape(x), jx.shape(upd)
    self.map_axes(x, out, {a: a for a in range(len(xs))})
    indexed = (set(dn.inserted_window_dims) |
               set(dn.scatter_dims_to_operand_dims))
    window = [a for a in range(len(xs)) if a not in dn.inserted_window_dims
              and a not in dn.operand_batching_dims]
    for a, d in zip(window, dn.update_window_dims):
      if a not in indexed and us[d] == xs[a]:
        self.union(self.node(x, a), self.node(upd, d))
      else:
        self.block(self.node(x, a), 'scatter updates a slice of the axis')
        self.block(self.node(upd, d), 'scatter updates a slice of the axis')
    for a in indexed:
      self.block(self.node(x, a), 'scatter indexes along the axis')
    scatter = [d for d in range(len(us)) if d not in dn.update_window_dims]
    for i, d in zip(range(len(jx.shape(idx)) - 1), scatter):
      self.union(self.node(idx, i), self.node(upd, d))
    for a, i in zip(dn.operand_batching_dims,
                    dn.scatter_indices_batching_dims):
      self.union(self.node(x, a), self.node(idx, i))
    xz, uz = self.vinfo(x).zero, self.vinfo(upd).zero
    self.vinfo(out).zero = xz and (uz or eqn.primitive.name == 'scatter-mul')

  _p_scatter = _scatter
  _p_scatter_add = _scatter
  _p_scatter_sub = _scatter
  _p_scatter_mul = _scatter
  _p_scatter_min = _scatter
  _p_scatter_max = _scatter


class ContractionRules:
  """dot_general and conv_general_dilated: producers, consumers, MACs."""

  def _roles(self, v, axes, role: str) -> None:
    info = self.vinfo(v)
    if info.origin is not None:
      for a in axes:
        self.roles.append((role, Member(info.origin.collection,
                                        info.origin.path,
                                        info.perm[a] if info.perm else a)))

  def _p_dot_general(self, eqn) -> None:
    lhs, rhs = eqn.invars[:2]
    out = eqn.outvars[0]
    (lc, rc), (lb, rb) = eqn.params['dimension_numbers']
    ls, rs = jx.shape(lhs), jx.shape(rhs)
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
    self.matmuls.append(([self.node(out, a) for a in range(len(jx.shape(out)))],
                         [self.node(lhs, a) for a in lc], 1, self.mult))

  def _p_conv_general_dilated(self, eqn) -> None:
    lhs, rhs = eqn.invars[:2]
    out = eqn.outvars[0]
    p = eqn.params
    dn = p['dimension_numbers']
    ls, rs, os_ = jx.shape(lhs), jx.shape(rhs), jx.shape(out)
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



class ControlFlowRules:
  """scan, while and cond: callees walked in their own contexts."""

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




def has_rule(name: str) -> bool:
  """Whether the tracer has a rule of its own for primitive `name` (else it
  is elementwise, a reduction, a source, a call, or unknown)."""
  attr = '_p_' + name.replace('-', '_')
  return any(hasattr(c, attr) for c in (
      ElementwiseRules, ShapeRules, IndexingRules, ContractionRules,
      ControlFlowRules))


def is_known(name: str) -> bool:
  """Whether primitive `name` has a rule (table entries included)."""
  return has_rule(name) or name in ELEMENTWISE or name in REDUCTIONS or (
      name in CUMULATIVE) or name in SOURCES
