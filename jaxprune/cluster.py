"""Agglomerative clustering in JAX, identical to scipy's linkage and fcluster.

`linkage(points, method)` clusters every `[n, d]` point set of a batch
`[..., n, d]` in one jitted call and returns scipy-format linkage matrices
`[..., n - 1, 4]`: rows `(id_a, id_b, height, size)` with `id_a < id_b`,
original points numbered 0..n-1 and the cluster formed by row i numbered
n + i, rows in order of increasing height, heights in scipy's convention
(Euclidean for single/complete/average; for Ward the Lance-Williams distance
sqrt(2 * dSSE), dSSE = |A||B| / (|A| + |B|) * ||m_A - m_B||^2).

Algorithms (all four methods are reducible, so the merges do not depend on
the order in which an algorithm finds them; rows are then sorted by height
and numbered as scipy does):

* d >= 2: the nearest-neighbour chain (Murtagh 1983; Muellner 2011, the
  algorithm scipy uses for ward/complete/average), at most 3 (n - 1) steps
  of O(n) vector work, batched with `vmap` and looped until every set of
  the batch is done. Ward keeps cluster centroids and sizes (d(A, B)^2 =
  2|A||B|/(|A|+|B|) ||m_A - m_B||^2): O(n^2 d) time, O(n d) memory. The
  other methods keep the distance matrix with Lance-Williams updates:
  O(n^2) time and memory.
* d == 1 (1x1 convolutions): clusters of all four methods are contiguous
  intervals of the sorted points and only neighbouring intervals merge, so
  a sweep over the n - 1 gaps suffices: O(n^2) time, O(n) memory, with tiny
  constants.

Precision follows the input: float64 points (with x64 enabled, e.g. inside
`jax.enable_x64(True)`) are clustered in float64 as scipy does; anything
else in float32, where merges whose heights differ by less than float32
rounding may be ordered differently from scipy.

`cut(Z, height)` applies every merge of height <= `height` and returns flat
labels with the same partition as `scipy.cluster.hierarchy.fcluster(Z,
height, 'distance')`.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

METHODS = ('ward', 'single', 'complete', 'average')


def _check_method(method: str) -> None:
  if method not in METHODS:
    raise ValueError(f'method={method!r}; allowed: {", ".join(METHODS)}.')


def _update(method, d_xi, d_yi, d_xy, s_x, s_y, s_i):  # pylint: disable=unused-argument
  """Lance-Williams distance from cluster i to the union of x and y.

  Ward never comes here: it runs on centroids (`_nn_chain_ward`), and 1-D
  points take `_linkage_1d`.
  """
  if method == 'single':
    return jnp.minimum(d_xi, d_yi)
  if method == 'complete':
    return jnp.maximum(d_xi, d_yi)
  if method == 'average':
    return (s_x * d_xi + s_y * d_yi) / (s_x + s_y)
  raise ValueError(f'method={method!r}; allowed here: single, complete, '
                   'average.')


def _number(slot_a, slot_b, slot_into, height, size, n):
  """Sorts merges by height and numbers clusters as scipy does.

  Merges refer to the slot a cluster occupied when it merged; cluster ids
  are assigned in height order (reducible linkages never merge a cluster
  below the height it was formed at, so slots resolve correctly).
  """
  order = jnp.argsort(height, stable=True)

  def body(i, carry):
    cid, z = carry
    k = order[i]
    a, b = cid[slot_a[k]], cid[slot_b[k]]
    row = jnp.stack([jnp.minimum(a, b), jnp.maximum(a, b), 0, 0]).astype(
        height.dtype)
    row = row.at[2].set(height[k]).at[3].set(size[k])
    cid = cid.at[slot_into[k]].set(n + i)
    return cid, z.at[i].set(row)

  z = jnp.zeros((n - 1, 4), height.dtype)
  return jax.lax.fori_loop(0, n - 1, body, (jnp.arange(n), z))[1]


def _chain(n, states, row_of, merge_into):
  """The nearest-neighbour chain over any cluster representation, batched.

  Args:
    n: number of points.
    states: dict of per-cluster arrays (the representation's state), with
      a leading batch axis.
    row_of: `(state, a) -> [n]` distances from cluster a (any values at
      inactive clusters and at a; they are masked here).
    merge_into: `(state, xa, y, row, best, t, merge) -> state`: where the
      bool `merge` holds, cluster xa merges into slot y (xa retires) at
      step t; otherwise the state is returned unchanged. Only slot y's
      entries may be written (a whole-state select per step would cost as
      much as the step).

  Returns:
    The merges as (slot_a, slot_b, height, size) arrays `[batch, n - 1]`,
    in the order found; `height` is whatever `row_of` measures.
  """
  big = jnp.inf
  idx = jnp.arange(n)
  merges = jnp.zeros((n - 1,), jnp.int32)
  dtype = jax.tree.leaves(states)[0].dtype
  init = jax.vmap(lambda state: dict(
      st=state, size=jnp.ones(n, dtype), active=jnp.ones(n, bool),
      chain=jnp.zeros(n, jnp.int32), clen=jnp.int32(0), k=jnp.int32(0),
      ma=merges, mb=merges, mh=jnp.zeros(n - 1, dtype),
      ms=jnp.zeros(n - 1, dtype)))(states)

  def step(t, s):
    # Start a chain at the lowest active point when it is empty.
    first = jnp.argmax(s['active']).astype(jnp.int32)
    chain = s['chain'].at[0].set(jnp.where(s['clen'] == 0, first,
                                           s['chain'][0]))
    clen = jnp.maximum(s['clen'], 1)
    a = chain[clen - 1]
    prev = jnp.where(clen >= 2, chain[jnp.maximum(clen - 2, 0)], -1)
    row = jnp.where(s['active'] & (idx != a), row_of(s, a), big)
    nearest = jnp.argmin(row).astype(jnp.int32)
    best = row[nearest]
    # Prefer the previous chain element on ties: this guarantees progress.
    b = jnp.where((prev >= 0) & (row[jnp.maximum(prev, 0)] <= best), prev,
                  nearest)
    done = s['k'] >= n - 1
    merge = (b == prev) & ~done
    # Merge a and b into slot y = b (the previous chain element); a retires.
    y, xa = b, a
    sx, sy = s['size'][xa], s['size'][y]
    st = merge_into(s, xa, y, row, best, t, merge)
    k = s['k']
    kk = jnp.minimum(k, n - 2)
    pick = lambda arr, v: arr.at[kk].set(jnp.where(merge, v, arr[kk]))
    return dict(
        st=st, size=s['size'].at[y].set(jnp.where(merge, sx + sy, sy)),
        active=s['active'].at[xa].set(jnp.where(merge, False,
                                                s['active'][xa])),
        chain=chain.at[jnp.minimum(clen, n - 1)].set(jnp.where(
            merge | done, chain[jnp.minimum(clen, n - 1)], b)),
        clen=jnp.where(done, s['clen'], jnp.where(merge, clen - 2, clen + 1)),
        k=k + merge, ma=pick(s['ma'], xa), mb=pick(s['mb'], y),
        mh=pick(s['mh'], best), ms=pick(s['ms'], sx + sy))

  # At most n - 1 merges and 2 (n - 1) pushes per point set. The loop runs
  # outside vmap until every set is done (finished sets step as no-ops): a
  # while_loop under vmap would have a batched predicate and select the
  # whole state on every step.
  _, s = jax.lax.while_loop(
      lambda c: jnp.any(c[1]['k'] < n - 1),
      lambda c: (c[0] + 1, jax.vmap(lambda s: step(c[0], s))(c[1])),
      (jnp.int32(0), init))
  return s['ma'], s['mb'], s['mh'], s['ms']


def _nn_chain(x, method: str):
  """Linkage of point sets [batch, n, d] by the nearest-neighbour chain.

  Lance-Williams updates of the distance matrix. Only rows of the matrix
  are ever written (a strided column write per step is several times slower
  on CPU): each row carries the step it was written at, and the current
  d(a, k) sits in whichever of row a and row k was written later.
  """
  num, n, _ = x.shape
  d = jnp.sqrt(jnp.sum((x[:, :, None, :] - x[:, None, :, :]) ** 2, -1))

  def row_of(s, a):
    st = s['st']
    return jnp.where(st['tw'] > st['tw'][a], st['d'][:, a], st['d'][a])

  def merge_into(s, xa, y, row, best, t, merge):
    st = s['st']
    new = _update(method, row, row_of(s, y), best, s['size'][xa],
                  s['size'][y], s['size'])
    return dict(d=st['d'].at[y].set(jnp.where(merge, new, st['d'][y])),
                tw=st['tw'].at[y].set(jnp.where(merge, t + 1, st['tw'][y])))

  ma, mb, mh, ms = _chain(n, dict(d=d, tw=jnp.zeros((num, n), jnp.int32)),
                          row_of, merge_into)
  return jax.vmap(lambda *a: _number(*a, n))(ma, mb, mb, mh, ms)


def _nn_chain_ward(x):
  """Ward linkage of point sets [batch, n, d] by the NN chain over centroids.

  The Ward distance needs only cluster sizes and centroids: d(A, B)^2 =
  2 |A||B| / (|A| + |B|) ||m_A - m_B||^2. Keeping centroids ([d, n], O(nd)
  memory) in place of the distance matrix makes each step one pass over
  the centroids, with no O(n^2) state.
  """
  n = x.shape[1]

  def row_of(s, a):
    c = s['st']['c']
    diff2 = jnp.sum((c - c[:, a][:, None]) ** 2, axis=0)
    sa, size = s['size'][a], s['size']
    return 2 * sa * size / (sa + size) * diff2  # Squared height.

  def merge_into(s, xa, y, row, best, t, merge):
    c = s['st']['c']
    sx, sy = s['size'][xa], s['size'][y]
    new = (sx * c[:, xa] + sy * c[:, y]) / (sx + sy)
    return dict(c=c.at[:, y].set(jnp.where(merge, new, c[:, y])))

  ma, mb, mh, ms = _chain(n, dict(c=jnp.swapaxes(x, 1, 2)), row_of,
                          merge_into)
  return jax.vmap(lambda *a: _number(*a, n))(ma, mb, mb, jnp.sqrt(mh), ms)


def _linkage_1d(x, method: str):
  """Linkage of n scalars: only neighbouring intervals ever merge."""
  n = x.shape[0]
  order = jnp.argsort(x, stable=True)
  xs = x[order]
  pos = jnp.arange(n)
  big = jnp.inf

  def gap(s, t, st):
    """Distance between interval starting at s and the next one at t."""
    if method == 'single':
      return st['lo'][t] - st['hi'][s]
    if method == 'complete':
      return st['hi'][t] - st['lo'][s]
    mean = lambda i: st['sum'][i] / st['size'][i]
    if method == 'average':
      return mean(t) - mean(s)
    a, b = st['size'][s], st['size'][t]
    return jnp.sqrt(2 * a * b / (a + b)) * (mean(t) - mean(s))

  st = dict(lo=xs, hi=xs, sum=xs, size=jnp.ones(n, xs.dtype),
            nxt=pos + 1, prv=pos - 1, cid=order.astype(jnp.int32))
  st['dist'] = jnp.where(pos < n - 1, gap(pos, jnp.minimum(pos + 1, n - 1),
                                          st), big)
  z = jnp.zeros((n - 1, 4), x.dtype)

  def body(k, carry):
    st, z = carry
    s = jnp.argmin(st['dist'])  # Heights come out non-decreasing.
    t = st['nxt'][s]
    h = st['dist'][s]
    a, b = st['cid'][s], st['cid'][t]
    size = st['size'][s] + st['size'][t]
    z = z.at[k].set(jnp.stack([jnp.minimum(a, b), jnp.maximum(a, b), h,
                               size]).astype(z.dtype))
    u = st['nxt'][t]  # The interval after the merged one (n if none).
    st = dict(st, hi=st['hi'].at[s].set(st['hi'][t]),
              sum=st['sum'].at[s].add(st['sum'][t]),
              size=st['size'].at[s].set(size),
              nxt=st['nxt'].at[s].set(u),
              prv=st['prv'].at[jnp.minimum(u, n - 1)].set(
                  jnp.where(u < n, s, st['prv'][n - 1])),
              cid=st['cid'].at[s].set(n + k))
    dist = st['dist'].at[t].set(big)
    dist = dist.at[s].set(jnp.where(u < n, gap(s, jnp.minimum(u, n - 1), st),
                                    big))
    p = st['prv'][s]
    dist = dist.at[jnp.maximum(p, 0)].set(jnp.where(
        p >= 0, gap(jnp.maximum(p, 0), s, st), dist[jnp.maximum(p, 0)]))
    return dict(st, dist=dist), z

  return jax.lax.fori_loop(0, n - 1, body, (st, z))[1]


@functools.partial(jax.jit, static_argnames=('method',))
def linkage(points: jax.Array, method: str = 'ward') -> jax.Array:
  """Agglomerative clustering of every point set in a batch.

  Args:
    points: `[..., n, d]` (or `[..., n]`, read as d = 1); any leading batch
      dims, all clustered in one call.
    method: 'ward', 'single', 'complete' or 'average'.

  Returns:
    `[..., n - 1, 4]` linkage matrices in scipy's format (module
    docstring); `[..., 0, 4]` for n = 1.
  """
  _check_method(method)
  points = jnp.asarray(points)
  # float64 input (with x64 enabled, e.g. inside `jax.enable_x64(True)`)
  # is clustered in float64, as scipy does; anything else in float32.
  dtype = jnp.float64 if points.dtype == jnp.float64 else jnp.float32
  points = points.astype(dtype)
  if points.ndim == 1:
    points = points[:, None]
  *batch, n, d = points.shape
  if n <= 1:
    return jnp.zeros((*batch, 0, 4), dtype)
  flat = points.reshape((-1, n, d))
  if d == 1:
    z = jax.vmap(lambda p: _linkage_1d(p[:, 0], method))(flat)
  elif method == 'ward':
    z = _nn_chain_ward(flat)
  else:
    z = _nn_chain(flat, method)
  return z.reshape((*batch, n - 1, 4))


@jax.jit
def cut(z: jax.Array, height) -> jax.Array:
  """Flat clusters: apply every merge of height <= `height`.

  Args:
    z: `[..., n - 1, 4]` linkage matrices (scipy format).
    height: a scalar, or one height per matrix (shape `[...]`).

  Returns:
    int32 labels `[..., n]`, numbered 0, 1, ... in order of each cluster's
    first point; the partition equals `fcluster(Z, height, 'distance')`.
  """
  z = jnp.asarray(z)
  *batch, m, _ = z.shape
  n = m + 1
  flat = z.reshape((-1, m, 4))
  h = jnp.broadcast_to(jnp.asarray(height, z.dtype), tuple(batch)).reshape(-1)
  return jax.vmap(_cut_one)(flat, h).reshape((*batch, n))


def _cut_one(z, h):
  m = z.shape[0]
  n = m + 1
  kids = z[:, :2].astype(jnp.int32)
  applied = z[:, 2] <= h
  parent = jnp.full((2 * n - 1,), -1, jnp.int32)
  ids = n + jnp.arange(m, dtype=jnp.int32)
  parent = parent.at[kids[:, 0]].set(ids)
  parent = parent.at[kids[:, 1]].set(ids)

  # Parents have larger ids than children: resolve from the root down.
  def body(i, top):
    node = 2 * n - 2 - i
    p = parent[node]
    up = (p >= 0) & applied[jnp.maximum(p - n, 0)]
    return top.at[node].set(jnp.where(up, top[jnp.maximum(p, 0)], node))

  top = jax.lax.fori_loop(0, 2 * n - 1, body,
                          jnp.arange(2 * n - 1, dtype=jnp.int32))[:n]
  first = jax.ops.segment_min(jnp.arange(n), top, num_segments=2 * n - 1)
  is_first = first[top] == jnp.arange(n)
  return (jnp.cumsum(is_first) - 1)[first[top]].astype(jnp.int32)


def scipy_reference(points: np.ndarray, method: str) -> np.ndarray:
  """scipy's linkage of one `[n, d]` point set (for tests and benchmarks)."""
  from scipy.cluster import hierarchy  # pylint: disable=g-import-not-at-top
  return hierarchy.linkage(np.asarray(points, np.float64), method)
