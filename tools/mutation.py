"""Mutation testing of jaxprune's core: plant one small bug at a time, run
the module's tests, count the bugs they catch.

    python tools/mutation.py                      # every target
    python tools/mutation.py coverage masks -j 2  # some, two workers
    python tools/mutation.py optax --show-survivors

Each mutant changes one operator or constant in one function of a target
(`TARGETS`): `<`/`<=`/`==` swaps, `+`/`-`, `*`/`/`, `&`/`|`, `and`/`or`,
a dropped `not`/`-`/`~`, an integer `n` -> `n + 1`, a float `x` -> `2x`,
`True`/`False` swapped, `min`/`max` and `any`/`all` swapped. Mutants are
compiled from the syntax tree and executed into the imported module (no
file is written); a worker process imports JAX once, runs the target's
tests in-process with `pytest -x` for each mutant, and clears JAX's caches
between mutants. A mutant is killed when a test fails (or it runs past the
timeout, which restarts the worker). Survivors are printed with their
line and change; `EQUIVALENT` lists the reviewed ones that no test can
kill, with why. Not part of CI: it takes tens of minutes.
"""
import argparse
import ast
import copy
import dataclasses
import importlib
import io
import json
import multiprocessing as mp
import os
import queue
import signal
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Target:
  module: str
  functions: tuple[str, ...] | None  # Qualified names; None: every one.
  tests: tuple[str, ...]  # pytest arguments.


TARGETS = {
    'coverage': Target('jaxprune.coverage', None, (
        'tests/test_coverage.py',)),
    # Every test but the hypothesis sweep (test_matches_scipy compiles ~25
    # shapes, 60-90 s per surviving mutant on 2 cores); hand-made cases
    # first, so that with -x most mutants die early. A lower bound on what
    # the whole file kills.
    'cluster': Target('jaxprune.cluster', None, tuple(
        f'tests/test_cluster.py::{t}' for t in (
            'test_hand_computed_ward', 'test_cut_labels_are_numbered_by_first_point',
            'test_chain_prefers_the_previous_element_on_ties_as_scipy',
            'test_duplicate_points', 'test_tied_distances_in_two_dimensions',
            'test_long_nearest_neighbour_chain',
            'test_bad_method', 'test_single_point_and_leading_dims',
            'test_shapes',
            'test_float64_matches_scipy_to_rounding_on_wide_sets'))),
    'masks': Target('jaxprune.masks', None, ('tests/test_masks.py',)),
    'optax': Target('jaxprune.optax', None, (
        'tests/test_optax.py', '-k', 'not 1000_steps')),
    'slim.round_masks': Target('jaxprune.slim', ('round_masks',), (
        'tests/test_slim.py::test_round_masks_by_hand',)),
    'criteria': Target('jaxprune.methods.criteria', None, (
        'tests/test_criteria.py',)),
    'allocation': Target('jaxprune.methods.allocation', None, (
        'tests/test_allocation.py',)),
    'structure.param_masks': Target('jaxprune.structure.graph', (
        'ChannelGraph.param_masks', 'ChannelGraph._axis_mask',
        'ChannelGraph.macs', 'ChannelGraph.check_masks'), (
            'tests/test_structure.py', '-k',
            'param_masks or macs or bad_mask or validated_alike',
            'tests/test_real_models.py::'
            'test_masks_are_validated_alike_everywhere')),
}

# Reviewed survivors no test can kill: (target, line text, change) -> why.
EQUIVALENT: dict[tuple[str, str, str], str] = {
    ('masks', 'm = r < keep', 'Lt -> LtE'):
        'a uniform draw equals `keep` with probability 0',
    ('masks', 'for k, name in zip(jax.random.split(key, max(len(names), 1)),'
     ' names):', '1 -> 2'):
        'split(key, n)[i] does not depend on n, and zip stops at the names',
    ('allocation', 'iters: int = 40, tol: float = 0.005, refine: bool = True',
     '40 -> 41'):
        'one more bisection step moves s by < 2^-40, below any count step',
    ('criteria', 'rank = jnp.argsort(jnp.argsort(-scores, stable=True), '
     'stable=True)', 'True -> False'):
        "XLA's CPU sort is stable whether asked or not (ties are tested)",
    ('criteria', 'flat.append(np.where(live, w, -1.0).ravel())',
     '1.0 -> 2.0'):
        'any negative value marks a pruned weight (|w| >= 0)',
    ('coverage', 'return greedy_batch(labels[None], jnp.full((1,), keep), '
     'tie_break, key)[0]', '0 -> 1'):
        'a batch of one: index 1 clamps to row 0 under jit',
    ('coverage', 'gain = gain + jax.random.uniform(jax.random.fold_in(key, '
     't), (num, n),', 'Add -> Sub'):
        'noise below 1 subtracted also never reorders integer gains; which '
        'tie wins is random either way',
    ('coverage', 'gain = jnp.where(selected, -1.0, gain)', '1.0 -> 2.0'):
        'any marker below -0.999 stays under every live gain (>= 0 - noise)',
    ('coverage', 'return jax.lax.fori_loop(0, jnp.max(keep, initial=0), '
     'body,', '0 -> 1'):
        'initial=1 adds a step only when every keep is 0, where `t < keep` '
        'selects nothing',
    ('slim.round_masks', 'if missing > 0:', 'Gt -> GtE'):
        'with missing == 0 the branch restores pruned[:0], nothing',
    # cluster: the argsorts (XLA's CPU sort is stable either way).
    ('cluster', 'order = jnp.argsort(height, stable=True)', 'True -> False'):
        "XLA's CPU sort is stable whether asked or not (ties are tested)",
    ('cluster', 'order = jnp.argsort(x, stable=True)', 'True -> False'):
        "XLA's CPU sort is stable whether asked or not (ties are tested)",
    # cluster._number.
    ('cluster', 'row = jnp.stack([jnp.minimum(a, b), jnp.maximum(a, b), 0, '
     '0]).astype(', '0 -> 1'):
        'columns 2 and 3 of the row are set on the next line',
    ('cluster', 'return jax.lax.fori_loop(0, n - 1, body, (jnp.arange(n), '
     'z))[1]', 'Sub -> Add'):
        'the 2 extra steps write rows past the end (dropped) and ids no one '
        'reads',
    ('cluster', 'return jax.lax.fori_loop(0, n - 1, body, (st, z))[1]',
     'Sub -> Add'):
        'the 2 extra steps of the 1-D merge write rows past the end '
        '(dropped); the state is not read after',
    # cluster._chain.
    ('cluster', 'merges = jnp.zeros((n - 1,), jnp.int32)', 'Sub -> Add'):
        'two padding slots: merges are written at k <= n - 2 and read there',
    ('cluster', 'ms=jnp.zeros(n - 1, dtype)))(states)', 'Sub -> Add'):
        'two padding slots: sizes are written at k <= n - 2 and read there',
    ('cluster', 'chain=jnp.zeros(n, jnp.int32), clen=jnp.int32(0), '
     'k=jnp.int32(0),', '0 -> 1'):
        'clen = 1 over chain [0] is the empty chain started at point 0 (the '
        'k = 1 instance is killed)',
    ('cluster', "chain = s['chain'].at[0].set(jnp.where(s['clen'] == 0, "
     "first,", 'Eq -> NotEq'):
        'chain[0] is always the lowest active point: it stays active while '
        'in the chain, and points never come back',
    ('cluster', "chain = s['chain'].at[0].set(jnp.where(s['clen'] == 0, "
     "first,", '0 -> 1'):
        "clen == 1: chain[0] is the lowest active point either way (the "
        ".at[1] instance is killed)",
    ('cluster', 'prev = jnp.where(clen >= 2, chain[jnp.maximum(clen - 2, 0)]'
     ', -1)', '1 -> 2'):
        '-2 marks "no previous element" as -1 does (only prev >= 0 is read)',
    ('cluster', 'b = jnp.where((prev >= 0) & (row[jnp.maximum(prev, 0)] <= '
     'best), prev,', '0 -> 1'):
        'prev >= 1: for prev = 0 a tie makes argmin return 0 (the lowest '
        'index) anyway; the maximum(prev, 1) instance is killed',
    ('cluster', 'kk = jnp.minimum(k, n - 2)', 'Sub -> Add'):
        'kk = k differs only at k = n - 1 (done), where the write is a '
        'no-op past the end (dropped)',
    ('cluster', 'chain=chain.at[jnp.minimum(clen, n - 1)].set(jnp.where(',
     'Sub -> Add'):
        'a push writes at clen <= n - 1; clen = n only on a merge, whose '
        'write (past the end now) was a no-op',
    ('cluster', 'merge | done, chain[jnp.minimum(clen, n - 1)], b)),',
     'BitOr -> BitAnd'):
        'on a merge the slot written is above the new top (dead), and once '
        'done the chain is not read',
    ('cluster', 'merge | done, chain[jnp.minimum(clen, n - 1)], b)),',
     'Sub -> Add'):
        'the value kept on a merge or when done lands in a dead slot',
    ('cluster', 'merge | done, chain[jnp.minimum(clen, n - 1)], b)),',
     '1 -> 2'):
        'the value kept on a merge or when done lands in a dead slot',
    ('cluster', 'merge | done, chain[jnp.minimum(clen, n - 1)], b)),',
     '.minimum -> .maximum'):
        'the value kept on a merge or when done lands in a dead slot',
    # cluster._nn_chain: rows carry write times.
    ('cluster', "tw=st['tw'].at[y].set(jnp.where(merge, t + 1, "
     "st['tw'][y])))", '1 -> 2'):
        'only the order of write times is read; t + 2 keeps it (> 0 = '
        'unwritten)',
    ('cluster', "return jnp.where(st['tw'] > st['tw'][a], st['d'][:, a], "
     "st['d'][a])", 'Gt -> GtE'):
        'one row is written per step, so equal times are both 0 (unwritten '
        'rows of the symmetric matrix) or k = a (masked)',
    # cluster._linkage_1d: index guards whose out-of-range reads clamp.
    ('cluster', "st['dist'] = jnp.where(pos < n - 1, gap(pos, "
     "jnp.minimum(pos + 1, n - 1),", 'Sub -> Add'):
        'minimum(pos + 1, n + 1): the read past the end clamps and is '
        'masked by pos < n - 1 (the pos < n + 1 instance is killed)',
    ("cluster", "prv=st['prv'].at[jnp.minimum(u, n - 1)].set(", 'Sub -> Add'):
        'u = n: the write past the end is dropped; it was a no-op',
    ('cluster', "jnp.where(u < n, s, st['prv'][n - 1])),", 'Lt -> LtE'):
        'at u = n slot n - 1 is the retiring interval or inside one: never '
        'read again',
    ('cluster', "jnp.where(u < n, s, st['prv'][n - 1])),", 'Sub -> Add'):
        'the read past the end clamps to n - 1',
    ('cluster', "jnp.where(u < n, s, st['prv'][n - 1])),", '1 -> 2'):
        'at u = n slot n - 1 is dead (see Lt -> LtE)',
    ('cluster', 'dist = dist.at[s].set(jnp.where(u < n, gap(s, '
     'jnp.minimum(u, n - 1), st),', 'Sub -> Add'):
        'the read past the end clamps and is masked by u < n',
    # cluster._cut_one.
    ('cluster', 'kids = z[:, :2].astype(jnp.int32)', '2 -> 3'):
        'columns 0 and 1 (the only ones read) are the same',
    ('cluster', 'parent = parent.at[kids[:, 1]].set(ids)', '1 -> 2'):
        'kids has 2 columns: index 2 clamps to column 1 under jit',
    ('cluster', 'parent = jnp.full((2 * n - 1,), -1, jnp.int32)',
     'Sub -> Add'):
        'two padding nodes, never indexed',
    ('cluster', 'parent = jnp.full((2 * n - 1,), -1, jnp.int32)', '2 -> 3'):
        'n padding nodes, never indexed',
    ('cluster', 'parent = jnp.full((2 * n - 1,), -1, jnp.int32)', '1 -> 2'):
        '-2 marks "no parent" as -1 does; with 2n - 2 nodes the root\'s read '
        'clamps to its child, whose parent is the root itself',
    ('cluster', 'top = jax.lax.fori_loop(0, 2 * n - 1, body,', '0 -> 1'):
        'step 0 is the root, which has no parent: it keeps its own id',
    ('cluster', 'top = jax.lax.fori_loop(0, 2 * n - 1, body,', 'Sub -> Add'):
        'the 2 extra steps (nodes -1, -2) wrap to the two highest cluster '
        'nodes, after every point is resolved',
    ('cluster', 'first = jax.ops.segment_min(jnp.arange(n), top, '
     'num_segments=2 * n - 1)', 'Sub -> Add'):
        'extra empty segments, never read',
    ('cluster', 'first = jax.ops.segment_min(jnp.arange(n), top, '
     'num_segments=2 * n - 1)', '2 -> 3'):
        'extra empty segments, never read',
    ('cluster', 'return top.at[node].set(jnp.where(up, '
     'top[jnp.maximum(p, 0)], node))', '0 -> 1'):
        'where up holds, p >= n >= 2',
    # The 12 reviewed last; each was also run against the original on 768
    # tie-heavy point sets (integer grids, n = 3..12, d = 1..3, all four
    # methods, cut at every merge height) and gave identical output.
    ('cluster', 'b = jnp.where((prev >= 0) & (row[jnp.maximum(prev, 0)] <= '
     'best), prev,', 'GtE -> Gt'):
        'for prev == 0 a tie with best already makes argmin (first minimum) '
        'return 0',
    ('cluster', '(jnp.int32(0), init))', '0 -> 1'):
        'the step count is used only as write times, compared with each '
        'other; all stay above the initial 0',
    ('cluster', 'lambda c: (c[0] + 1, jax.vmap(lambda s: step(c[0], s))'
     '(c[1])),', '1 -> 2'):
        'write times stay strictly increasing',
    ('cluster', "clen=jnp.where(done, s['clen'], jnp.where(merge, clen - 2, "
     "clen + 1)),", '2 -> 3'):
        'a prefix of a nearest-neighbour chain is a chain: dropping one more '
        'element only makes the loop find it again',
    ('cluster', 'z = jax.vmap(lambda p: _linkage_1d(p[:, 0], method))(flat)',
     '0 -> 1'):
        'd == 1 on this path: column 1 clamps to column 0 under jit',
    ('cluster', 'up = (p >= 0) & applied[jnp.maximum(p - n, 0)]',
     'GtE -> Gt'):
        'a parent id is -1 or >= n >= 2',
    ('cluster', 'up = (p >= 0) & applied[jnp.maximum(p - n, 0)]', '0 -> 1'):
        'the `p >= 1` one: a parent id is -1 or >= n >= 2 (the other '
        'constant, in maximum(p - n, 1), is killed)',
    ('cluster', 'node = 2 * n - 2 - i', '2 -> 3'):
        'the `- 3` one: the root is skipped, then index -1 wraps to it; it '
        'has no parent and keeps its own id either way (`3 * n` is killed)',
    ('cluster', 'jnp.arange(2 * n - 1, dtype=jnp.int32))[:n]', 'Sub -> Add'):
        'every node is written before it is read: initial values are never '
        'read',
    ('cluster', 'jnp.arange(2 * n - 1, dtype=jnp.int32))[:n]', '2 -> 3'):
        'every node is written before it is read: initial values are never '
        'read',
    ('cluster', 'jnp.arange(2 * n - 1, dtype=jnp.int32))[:n]', '1 -> 2'):
        "one node short: the root's id clamps to node 2n - 3, which then "
        'names the whole root cluster consistently; labels are renumbered '
        'by first point',
    ('cluster', 'parent = jnp.full((2 * n - 1,), -1, jnp.int32)',
     'drop USub'):
        'the root then reads applied[0] and top[1]; it is read only when '
        'its merge applies, and then (monotone heights) every merge applies '
        'and all points get the one id',
    # The identity fast path of ChannelGraph._axis_mask: the general path
    # computes the same mask, and an index of shape (n, 1) over an n-wide
    # axis is always the identity (permutations such as rev block an axis).
    ('structure.param_masks', 'if idx.shape == (n, 1) and np.array_equal('
     'idx[:, 0], np.arange(n)):', 'And -> Or'):
        'a (n, 1) index over an n-wide axis is the identity',
    ('structure.param_masks', 'if idx.shape == (n, 1) and np.array_equal('
     'idx[:, 0], np.arange(n)):', 'Eq -> NotEq'):
        'the general path gives the same mask (a speed-up only)',
    ('structure.param_masks', 'if idx.shape == (n, 1) and np.array_equal('
     'idx[:, 0], np.arange(n)):', '1 -> 2'):
        'the general path gives the same mask (a speed-up only)',
}


# -- mutants ------------------------------------------------------------------
_SWAPS = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Is: ast.IsNot,
    ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In,
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div, ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult,
    ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd, ast.BitXor: ast.BitAnd,
    ast.And: ast.Or, ast.Or: ast.And, ast.LShift: ast.RShift,
    ast.RShift: ast.LShift,
}
_NAME_SWAPS = {'min': 'max', 'max': 'min', 'any': 'all', 'all': 'any',
               'argmin': 'argmax', 'argmax': 'argmin', 'minimum': 'maximum',
               'maximum': 'minimum'}


def _docstring_nodes(tree) -> set[int]:
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef,
                         ast.AsyncFunctionDef)) and node.body and isinstance(
                             node.body[0], ast.Expr) and isinstance(
                                 node.body[0].value, ast.Constant):
      out.add(id(node.body[0].value))
  return out


def _annotation_nodes(tree) -> set[int]:
  """Nodes inside type annotations (never run: no mutant there)."""
  roots = []
  for node in ast.walk(tree):
    if isinstance(node, ast.arg) and node.annotation is not None:
      roots.append(node.annotation)
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
        node.returns is not None):
      roots.append(node.returns)
    elif isinstance(node, ast.AnnAssign):
      roots.append(node.annotation)
  return {id(n) for r in roots for n in ast.walk(r)}


def _functions(tree, names):
  """The FunctionDef nodes to mutate (by qualified name)."""
  out = []

  def visit(node, prefix):
    for child in ast.iter_child_nodes(node):
      if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
        qual = prefix + child.name
        if names is None or qual in names:
          out.append(child)
        elif names is not None:
          visit(child, qual + '.')
      elif isinstance(child, ast.ClassDef):
        visit(child, prefix + child.name + '.')
  visit(tree, '')
  return out


def _changes(node, skip):
  """(description, mutate(node)) for one node."""
  if id(node) in skip:
    return []
  out = []
  if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in _SWAPS:
    new = _SWAPS[type(node.op)]
    out.append((f'{type(node.op).__name__} -> {new.__name__}',
                lambda n, new=new: setattr(n, 'op', new())))
  elif isinstance(node, ast.BoolOp):
    new = _SWAPS[type(node.op)]
    out.append((f'{type(node.op).__name__} -> {new.__name__}',
                lambda n, new=new: setattr(n, 'op', new())))
  elif isinstance(node, ast.Compare):
    for i, op in enumerate(node.ops):
      if type(op) in _SWAPS:
        new = _SWAPS[type(op)]

        def f(n, i=i, new=new):
          n.ops[i] = new()
        out.append((f'{type(op).__name__} -> {new.__name__}', f))
  elif isinstance(node, ast.Constant):
    v = node.value
    if isinstance(v, bool):
      out.append((f'{v} -> {not v}',
                  lambda n: setattr(n, 'value', not n.value)))
    elif isinstance(v, int):
      out.append((f'{v} -> {v + 1}', lambda n: setattr(n, 'value',
                                                       n.value + 1)))
    elif isinstance(v, float):
      new = 2 * v if v else 1.0
      out.append((f'{v} -> {new}',
                  lambda n, new=new: setattr(n, 'value', new)))
  elif isinstance(node, ast.Name) and node.id in _NAME_SWAPS:
    new = _NAME_SWAPS[node.id]
    out.append((f'{node.id} -> {new}',
                lambda n, new=new: setattr(n, 'id', new)))
  elif isinstance(node, ast.Attribute) and node.attr in _NAME_SWAPS:
    new = _NAME_SWAPS[node.attr]
    out.append((f'.{node.attr} -> .{new}',
                lambda n, new=new: setattr(n, 'attr', new)))
  return out


def _drop(tree, index: int):
  """Replaces the UnaryOp (not, -, ~) at walk position `index` of `tree` by
  its operand, in place."""
  target = list(ast.walk(tree))[index]
  for parent in ast.walk(tree):
    for field, value in ast.iter_fields(parent):
      if value is target:
        setattr(parent, field, target.operand)
        return tree
      if isinstance(value, list) and any(v is target for v in value):
        setattr(parent, field, [target.operand if v is target else v
                                for v in value])
        return tree
  raise AssertionError('no parent')


def mutants(target: Target):
  """Yields (line, change, mutated module tree) for every mutant."""
  path = importlib.util.find_spec(target.module).origin
  with open(path) as f:
    source = f.read()
  tree = ast.parse(source)
  lines = source.splitlines()
  skip = _docstring_nodes(tree) | _annotation_nodes(tree)
  funcs = _functions(tree, target.functions)
  # Nodes by walk index, so that a deep copy can find the same node.
  order = {id(n): i for i, n in enumerate(ast.walk(tree))}
  for fn in funcs:
    for node in ast.walk(fn):
      if node is fn:
        continue
      # Decorators and default values are module-level code: mutate them
      # too only inside the body.
      for desc, apply in _changes(node, skip):
        t = copy.deepcopy(tree)
        twin = list(ast.walk(t))[order[id(node)]]
        apply(twin)
        yield node.lineno, lines[node.lineno - 1].strip(), desc, t
  inside = {id(n) for fn in funcs for n in ast.walk(fn)} - skip
  for node in ast.walk(tree):
    if isinstance(node, ast.UnaryOp) and id(node) in inside:
      t = _drop(copy.deepcopy(tree), order[id(node)])
      yield (node.lineno, lines[node.lineno - 1].strip(),
             f'drop {type(node.op).__name__}', t)


# -- the worker -----------------------------------------------------------------
def _worker(name, jobs, results):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             ' --xla_force_host_platform_device_count=8')
  os.environ.setdefault('JAX_PLATFORMS', 'cpu')
  os.environ['CI'] = '1'  # Derandomized hypothesis: the same examples.
  os.chdir(REPO)
  sys.path[:0] = [REPO, os.path.join(REPO, 'tests')]
  import jax  # pylint: disable=g-import-not-at-top
  import pytest  # pylint: disable=g-import-not-at-top
  target = TARGETS[name]
  module = importlib.import_module(target.module)
  path = module.__file__
  original = ast.parse(open(path).read())
  all_mutants = list(mutants(target))

  def run_tests():
    out = io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = out
    try:
      code = pytest.main(['-x', '-q', '-p', 'no:cacheprovider',
                          '--no-header', '-W', 'ignore', *target.tests])
    finally:
      sys.stdout, sys.stderr = saved
    return int(code)

  def load(tree):
    exec(compile(tree, path, 'exec'), module.__dict__)  # pylint: disable=exec-used
    jax.clear_caches()

  while True:
    try:
      k = jobs.get_nowait()
    except queue.Empty:
      return
    if k < 0:  # The baseline: the unmutated tests must pass.
      load(original)
      results.put((k, run_tests()))
      continue
    try:
      load(all_mutants[k][3])
    except Exception:  # pylint: disable=broad-except
      results.put((k, 'import'))  # The mutant does not even import.
    else:
      results.put((k, run_tests()))
    load(original)


def _supervise(procs, results, status, found, start, limit, log, t_start,
               deadline):
  """Collects results, restarts workers past the timeout, honours the
  deadline; `procs` and `status` are updated in place."""
  while procs:
    if deadline is not None and time.time() - t_start > deadline:
      log(f'  deadline: stopped after {len(status)}/{len(found)} mutants')
      break
    try:
      k, code = results.get(timeout=5)
      for w, st in procs.items():
        if st[0] and st[0][st[1]] == k:
          st[1] += 1
          st[2] = time.time()
          break
      status[k] = code
      done = len(status)
      if done % 10 == 0:
        log(f'  {done}/{len(found)} run, {sum(1 for c in status.values() if c)}'
            ' killed')
    except queue.Empty:
      pass
    for w in list(procs):
      todo, pos, since, _ = procs[w]
      if pos >= len(todo):
        w.join(timeout=30)
        del procs[w]
      else:
        hung = time.time() - since > limit
        if hung or not w.is_alive():
          # Past the timeout, or crashed mid-mutant (a segfault): killed;
          # a new worker takes the rest of the chunk.
          if hung:
            w.kill()
          w.join()
          status[todo[pos]] = 'timeout' if hung else 'crash'
          del procs[w]
          rest = todo[pos + 1:]
          if rest:
            nw, nq = start(rest)
            procs[nw] = [rest, 0, time.time(), nq]


def run_target(name: str, workers: int, timeout: float, log=print,
               deadline: float | None = None, skip_equivalent: bool = True):
  """Returns (killed, total, survivors [(line, text, change)], equivalent,
  run): `run` mutants were tested (fewer than `total` when `deadline`, in
  seconds from the start, stopped the workers)."""
  t_start = time.time()
  target = TARGETS[name]
  found = [(line, text, desc) for line, text, desc, _ in mutants(target)]
  ctx = mp.get_context('spawn')
  results = ctx.Queue()
  # Baseline first (and its time sets the per-mutant timeout).
  jobs = ctx.Queue()
  jobs.put(-1)
  t0 = time.time()
  p = ctx.Process(target=_worker, args=(name, jobs, results), daemon=True)
  p.start()
  k, code = results.get()
  p.join()
  base = time.time() - t0
  if code != 0:
    raise SystemExit(f'{name}: the unmutated tests fail (pytest exit {code});'
                     ' fix them first.')
  limit = max(timeout, 3 * base)
  log(f'{name}: {len(found)} mutants; tests pass unmutated in {base:.0f}s')
  status = {}
  if skip_equivalent:
    # A reviewed equivalent need not run again (it would survive, running
    # every test); keys shared by several mutants still run, since the
    # review covers only one of them.
    keys = [(name, text, desc) for _, text, desc in found]
    for k, key in enumerate(keys):
      if key in EQUIVALENT and keys.count(key) == 1:
        status[k] = 0
  pending = [k for k in range(len(found)) if k not in status]
  if status:
    log(f'{name}: {len(status)} reviewed equivalents not run '
        '(--run-equivalent runs them)')
  running = {}  # worker process -> (jobs queue, current index, start time)

  def start(indices):
    q = ctx.Queue()
    for i in indices:
      q.put(i)
    w = ctx.Process(target=_worker, args=(name, q, results), daemon=True)
    w.start()
    return w, q

  chunks = [pending[i::workers] for i in range(workers)]
  procs = {}
  for c in chunks:
    if c:
      w, q = start(c)
      procs[w] = [c, 0, time.time(), q]  # The queue lives while w does.
  try:
    _supervise(procs, results, status, found, start, limit, log, t_start,
               deadline)
  finally:  # Interrupted (Ctrl-C, SIGTERM) too: no worker outlives us.
    for w in procs:
      if w.is_alive():
        w.kill()
      w.join()
  survivors = [found[k] for k in range(len(found)) if status.get(k) == 0]
  equivalent = [s for s in survivors if (name, s[1], s[2]) in EQUIVALENT]
  killed = len(status) - len(survivors)
  how = {}
  for v in status.values():
    kind = v if isinstance(v, str) else 'survived' if v == 0 else 'tests'
    how[kind] = how.get(kind, 0) + 1
  log(f'{name}: killed by ' + ', '.join(f'{k} {n}' for k, n in
                                       sorted(how.items())))
  return killed, len(found), survivors, equivalent, len(status)


def rescore(path: str, targets: list[str]) -> None:
  """Prints the scores of a saved report with the current EQUIVALENT."""
  with open(path) as f:
    report = json.load(f)
  for name in targets:
    if name not in report:
      continue
    r = report[name]
    left = [s for s in r['survivors'] if (name, s[1], s[2]) not in EQUIVALENT]
    equivalent = r['equivalent'] + len(r['survivors']) - len(left)
    score = 100 * (r['killed'] + equivalent) / max(r['run'], 1)
    print(f'{name}: {r["killed"]}/{r["run"]} killed, {equivalent} '
          f'equivalent: {score:.1f}% (run of {r["minutes"]} min, {path})')
    for line, text, desc in left:
      print(f'  SURVIVED line {line}: {desc}: {text}')


def _exit_on_term(signum, frame):  # pylint: disable=unused-argument
  raise SystemExit(128 + signum)  # Runs the finally that kills workers.


def main():
  signal.signal(signal.SIGTERM, _exit_on_term)
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('targets', nargs='*', default=sorted(TARGETS),
                      help=f'some of: {", ".join(sorted(TARGETS))}')
  parser.add_argument('-j', '--workers', type=int, default=2)
  parser.add_argument('--timeout', type=float, default=120,
                      help='seconds per mutant at least (else 3x baseline)')
  parser.add_argument('--json', help='write the scores here')
  parser.add_argument('--list', action='store_true',
                      help='print every mutant of the targets (line, '
                      'change, text; * marks reviewed equivalents); run none')
  parser.add_argument('--rescore', metavar='JSON',
                      help='score a saved --json report again against the '
                      'current EQUIVALENT table (after reviewing its '
                      'survivors); runs nothing')
  parser.add_argument('--run-equivalent', action='store_true',
                      help='also run the reviewed equivalents (to check '
                      'that none is killed now); by default they are '
                      'counted as survivors without running')
  parser.add_argument('--deadline', type=float, default=None,
                      help='minutes per target; then stop and score the '
                      'mutants run so far (reported as partial)')
  args = parser.parse_args()
  bad = [t for t in args.targets if t not in TARGETS]
  if bad:
    parser.error(f'unknown target(s) {bad}; allowed: '
                 f'{", ".join(sorted(TARGETS))}')
  if args.rescore:
    rescore(args.rescore, args.targets)
    return
  if args.list:
    for name in args.targets:
      for line, text, desc, _ in mutants(TARGETS[name]):
        mark = '*' if (name, text, desc) in EQUIVALENT else ' '
        print(f'{name}:{line} {mark} {desc}: {text}')
    return
  report = {}
  for name in args.targets:
    t0 = time.time()
    killed, total, survivors, equivalent, run = run_target(
        name, args.workers, args.timeout,
        deadline=None if args.deadline is None else 60 * args.deadline,
        skip_equivalent=not args.run_equivalent)
    score = 100 * (killed + len(equivalent)) / max(run, 1)
    report[name] = {'mutants': total, 'run': run, 'killed': killed,
                    'equivalent': len(equivalent), 'score': round(score, 1),
                    'minutes': round((time.time() - t0) / 60, 1),
                    'survivors': [list(s) for s in survivors
                                  if s not in equivalent]}
    part = '' if run == total else f' (partial: {run} of {total} run)'
    print(f'{name}: {killed}/{run} killed, {len(equivalent)} equivalent: '
          f'{score:.1f}%{part} ({report[name]["minutes"]} min)')
    for line, text, desc in survivors:
      tag = 'equivalent' if (line, text, desc) in equivalent else 'SURVIVED'
      print(f'  {tag} line {line}: {desc}: {text}')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(report, f, indent=1)


if __name__ == '__main__':
  main()
