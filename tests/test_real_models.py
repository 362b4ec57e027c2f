"""The channel graph on real-world model code: one test per failure users hit
(unused variables, train-mode state updates, nnx parameter counts, gather /
scatter / stack / tile / random_clone, shared constants, boxed and nnx
export, slim kwargs, mask validation, reasons), GQA heads with RoPE, and
Hugging Face Flax models built from small configs (no download)."""
import functools

import flax.linen as nn
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxprune import flops, masks as masks_lib, slim, structure
from jaxprune import optax as jp_optax
from jaxprune.methods import units as units_lib


def _slim_matches(fn, v, g, cm, *args, tol=1e-5, state=False):
  """slim(...) equals the masked model, and its MACs/params are the graph's
  (`state`: fn returns (outputs, updated variables); outputs compared)."""
  ref = fn(masks_lib.apply(v, g.param_masks(cm)), *args)
  sv, sf = slim.slim(fn, v, g, cm, *args)
  out = sf(sv, *args)
  if state:
    out, ref = out[0], ref[0]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=tol), out,
               ref)
  counts = flops.count(sf, sv, *args)
  assert counts.macs == g.macs(cm)
  assert counts.params == g.num_params(cm)
  return sv, sf


def _names(g):
  return sorted((gr.name, gr.size) for gr in g.prunable)


# -- 1. unused variables --------------------------------------------------------
class WithUnused(nn.Module):

  @nn.compact
  def __call__(self, x):
    self.param('unused', nn.initializers.ones, (5, 7))
    h = nn.relu(nn.Dense(6, name='a')(x))
    return nn.Dense(2, name='b')(h)


def test_unused_variable_is_no_member_and_listed():
  m, x = WithUnused(), jnp.ones((2, 3))
  v = m.init(jax.random.key(0), x)
  g = structure.trace(m.apply, v, x)
  assert g.unused == [('params', ('unused',))]
  assert _names(g) == [('a', 6)]
  assert all(mb.path != ('unused',) for gr in g.groups for mb in gr.members)
  _slim_matches(m.apply, v, g, {'a': np.arange(6) % 2 == 0}, x)


# -- 2. train mode: state updates follow their variables ------------------------
class CachedAttention(nn.Module):
  """Heads [B, T, H, Dh] whose keys are written to (and returned in) a cache."""

  @nn.compact
  def __call__(self, x):
    q = nn.DenseGeneral((3, 4), name='q')(x)
    k = nn.DenseGeneral((3, 4), name='k')(x)
    val = nn.DenseGeneral((3, 4), name='v')(x)
    cache = self.variable('cache', 'key', jnp.zeros, k.shape, k.dtype)
    cache.value = cache.value + k
    w = jax.nn.softmax(jnp.einsum('bthd,bshd->bhts', q, cache.value), -1)
    o = jnp.einsum('bhts,bshd->bthd', w, val)
    return nn.DenseGeneral(5, axis=(-2, -1), name='o')(o)


def test_returned_cache_keeps_heads_prunable():
  m, x = CachedAttention(), jnp.ones((1, 6, 5))
  v = m.init(jax.random.key(0), x)
  fn = lambda v, x: m.apply(v, x, mutable=['cache'])
  g = structure.trace(fn, v, x)
  # Heads (3) and the q/k head_dim (4), the v head_dim (4).
  assert _names(g) == [('q', 3), ('q:2', 4), ('v', 4)]
  heads = g.group('q')
  assert structure.Member('cache', ('key',), 2) in heads.members
  cm = {'q': np.array([True, False, True])}
  sv, sf = _slim_matches(fn, v, g, cm, x, state=True)
  assert sf(sv, x)[1]['cache']['key'].shape == (1, 6, 2, 4)


def test_train_mode_batchnorm_groups_stay_prunable():
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x, train):
      x = nn.Conv(8, (3, 3), name='c1')(x)
      x = nn.relu(nn.BatchNorm(use_running_average=not train, name='bn')(x))
      return nn.Dense(3, name='head')(x.mean((1, 2)))

  m, x = Net(), jax.random.normal(jax.random.key(1), (4, 5, 5, 2))
  v = m.init(jax.random.key(0), x, train=False)
  fn = lambda v, x: m.apply(v, x, train=True, mutable=['batch_stats'])
  g = structure.trace(fn, v, x)
  assert _names(g) == [('c1', 8)]
  sv, sf = _slim_matches(fn, v, g, {'c1': np.arange(8) < 5}, x, tol=1e-4,
                         state=True)
  assert sf(sv, x)[1]['batch_stats']['bn']['mean'].shape == (5,)


# -- 3. parameter counts for nnx ------------------------------------------------
class NnxNet(nnx.Module):

  def __init__(self, rngs):
    self.conv = nnx.Conv(3, 8, (3, 3), rngs=rngs)
    self.bn = nnx.BatchNorm(8, rngs=rngs)
    self.drop = nnx.Dropout(0.5, rngs=rngs)
    self.fc = nnx.Linear(8, 4, rngs=rngs)

  def __call__(self, x):
    x = self.drop(nnx.relu(self.bn(self.conv(x))))
    return self.fc(x.mean((1, 2)))


def test_nnx_params_count_only_param_variables():
  model = NnxNet(nnx.Rngs(0))
  model.eval()
  graphdef, state = nnx.split(model)
  x = jnp.ones((1, 6, 6, 3))
  fn = lambda s, x: nnx.merge(graphdef, s)(x)
  g = structure.trace(fn, state, x)
  # conv 3*3*3*8 + 8, bn scale + bias 2*8, fc 8*4 + 4 (not bn mean/var, rng).
  dense = 3 * 3 * 3 * 8 + 8 + 2 * 8 + 8 * 4 + 4
  assert g.num_params({}) == dense == flops.count(fn, state, x).params
  cm = {'conv': np.arange(8) < 3}
  assert g.num_params(cm) == 3 * 3 * 3 * 3 + 3 + 2 * 3 + 3 * 4 + 4
  _slim_matches(fn, state, g, cm, x)


# -- 4. gather, scatter, stack, tile, random_clone ------------------------------
class EmbedStream(nn.Module):
  """Embedding lookup into a residual stream, as in every Transformer."""

  @nn.compact
  def __call__(self, ids):
    h = nn.Embed(11, 8, name='emb')(ids)
    h = h + nn.Dense(8, name='proj')(nn.relu(nn.Dense(6, name='fc')(h)))
    return nn.Dense(3, name='head')(h).mean(1)


def test_embedding_gather_keeps_the_stream_prunable():
  m, ids = EmbedStream(), jnp.array([[1, 4, 9], [0, 2, 2]])
  v = m.init(jax.random.key(0), ids)
  g = structure.trace(m.apply, v, ids)
  assert _names(g) == [('fc', 6), ('proj', 8)]
  stream = g.group('proj')  # Named after the layer that writes the stream.
  assert stream.residual and structure.Member('params', ('emb', 'embedding'),
                                              1) in stream.members
  vocab = [gr for gr in g.groups if gr.size == 11][0]
  assert not vocab.prunable and 'gather' in vocab.reason
  _slim_matches(m.apply, v, g, {'proj': np.arange(8) % 3 != 0,
                                'fc': np.arange(6) < 4}, ids)


def test_scatter_maps_the_window_axis():
  def fn(v, x, idx):
    h = x @ v['params']['w']  # [5, 6]
    table = jnp.zeros((4, 6)).at[idx].add(h)  # scatter-add rows.
    return table @ v['params']['u']

  v = {'params': {'w': jnp.ones((3, 6)), 'u': jnp.ones((6, 2))}}
  x, idx = jnp.ones((5, 3)), jnp.array([0, 1, 1, 3, 2])
  g = structure.trace(fn, v, x, idx)
  assert _names(g) == [('w', 6)]
  _slim_matches(fn, v, g, {'w': np.arange(6) < 2}, x, idx)


def test_stack_tile_and_random_clone_have_rules():
  def fn(v, x):
    key = jax.random.clone(jax.random.key(0))
    a = x @ v['params']['a']  # [2, 4]
    s = jnp.stack([a, 2 * a], axis=1).sum(1)  # Stack axis summed away.
    t = jnp.tile(s, (1, 2))  # [2, 8]: channel c at c and c + 4.
    noise = jax.random.normal(key, t.shape) * 0.0
    return (t + noise) @ v['params']['b']

  v = {'params': {'a': jnp.arange(12.).reshape(3, 4) / 7,
                  'b': jnp.arange(16.).reshape(8, 2) / 5}}
  x = jnp.ones((2, 3))
  import warnings  # pylint: disable=g-import-not-at-top
  with warnings.catch_warnings():
    warnings.simplefilter('error')  # No unknown-primitive warning.
    g = structure.trace(fn, v, x)
  assert _names(g) == [('a', 4)]
  idx = g.group('a').index[structure.Member('params', ('b',), 0)]
  np.testing.assert_array_equal(idx, [[0, 4], [1, 5], [2, 6], [3, 7]])
  _slim_matches(fn, v, g, {'a': np.array([True, False, True, False])}, x)


# -- 5. a constant read by several layers couples nothing ------------------------
class HeadMasked(nn.Module):

  @nn.compact
  def __call__(self, x):
    head_mask = jnp.ones((2, 3))  # [layers, heads], as Hugging Face BERT.
    for i in range(2):
      q = nn.DenseGeneral((3, 4), name=f'q{i}')(x)
      k = nn.DenseGeneral((3, 4), name=f'k{i}')(x)
      val = nn.DenseGeneral((3, 4), name=f'v{i}')(x)
      w = jax.nn.softmax(jnp.einsum('bthd,bshd->bhts', q, k), -1)
      w = w * head_mask[i][None, :, None, None]
      x = x + nn.DenseGeneral(5, axis=(-2, -1), name=f'o{i}')(
          jnp.einsum('bhts,bshd->bthd', w, val))
    return x


def test_shared_constant_does_not_couple_layers():
  m, x = HeadMasked(), jax.random.normal(jax.random.key(1), (1, 4, 5))
  v = m.init(jax.random.key(0), x)
  g = structure.trace(m.apply, v, x)
  heads = [gr for gr in g.prunable if gr.size == 3]
  assert sorted(gr.name for gr in heads) == ['q0', 'q1']
  assert all(len({mb.path[0][1] for mb in gr.members if mb.path[0][0] in
                  'qkvo'}) == 1 for gr in heads)
  _slim_matches(m.apply, v, g, {'q0': np.array([True, False, True]),
                                'q1': np.array([False, True, True])}, x)


class Recurrent(nn.Module):

  @nn.compact
  def __call__(self, x):
    h = nn.RNN(nn.OptimizedLSTMCell(12), name='rnn')(x)
    return nn.Dense(3, name='head')(h[:, -1])


def test_lstm_hidden_units_prunable_through_a_constant_initial_carry():
  # The zero initial carry is a constant: it no longer ties the hidden units
  # to the concatenated gate split.
  m, x = Recurrent(), jax.random.normal(jax.random.key(0), (2, 5, 4))
  v = m.init(jax.random.key(1), x)
  g = structure.trace(m.apply, v, x)
  assert _names(g) == [('OptimizedLSTMCell_0/hf', 12)]
  _slim_matches(m.apply, v, g, {'OptimizedLSTMCell_0/hf': np.arange(12) < 7},
                x)


# -- 6. export of boxed and nnx variables ---------------------------------------
class Partitioned(nn.Module):

  @nn.compact
  def __call__(self, x):
    init = nn.with_logical_partitioning(nn.initializers.lecun_normal(),
                                        ('embed', 'mlp'))
    h = nn.relu(nn.Dense(6, kernel_init=init, name='a')(x))
    return nn.Dense(2, name='b')(h)


def test_export_round_trips_boxed_linen_variables(tmp_path):
  m, x = Partitioned(), jax.random.normal(jax.random.key(1), (2, 3))
  v = m.init(jax.random.key(0), x)
  assert isinstance(v['params']['a']['kernel'], nn.LogicallyPartitioned)
  g = structure.trace(m.apply, v, x)
  sv, sf = slim.slim(m.apply, v, g, {'a': np.arange(6) < 4}, x)
  call, loaded = slim.load_export(slim.export(sf, sv, x, path=str(tmp_path)))
  assert loaded['params']['a']['kernel'].shape == (3, 4)
  np.testing.assert_allclose(call(loaded, x), sf(sv, x), atol=1e-6)


def test_export_round_trips_nnx_state(tmp_path):
  model = NnxNet(nnx.Rngs(0))
  model.eval()
  graphdef, state = nnx.split(model)
  x = jax.random.normal(jax.random.key(1), (2, 6, 6, 3))
  fn = lambda s, x: nnx.merge(graphdef, s)(x)
  g = structure.trace(fn, state, x)
  sv, sf = slim.slim(fn, state, g, {'conv': np.arange(8) < 5}, x)
  call, loaded = slim.load_export(slim.export(sf, sv, x, path=str(tmp_path)))
  assert loaded['conv']['kernel'].shape == (3, 3, 3, 5)
  np.testing.assert_allclose(call(loaded, x), sf(sv, x), atol=1e-5)


# -- 7. slim replays the trace's kwargs -----------------------------------------
def test_slim_uses_the_trace_kwargs_and_rejects_others():
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x, train):
      h = nn.relu(nn.Dense(6, name='a')(x))
      h = nn.Dropout(0.5, deterministic=not train)(h)
      return nn.Dense(2, name='b')(h)

  m, x = Net(), jax.random.normal(jax.random.key(1), (2, 3))
  v = m.init(jax.random.key(0), x, train=False)
  g = structure.trace(m.apply, v, x, train=False)
  assert g.kwargs == {'train': False}
  cm = {'a': np.arange(6) < 3}
  with pytest.raises(ValueError, match=r'train=True \(traced with False\)'):
    slim.slim(m.apply, v, g, cm, x, train=True)
  sv, sf = slim.slim(m.apply, v, g, cm, x)  # kwargs left out: the trace's.
  x5 = jax.random.normal(jax.random.key(2), (5, 3))  # Another batch size.
  ref = m.apply(masks_lib.apply(v, g.param_masks(cm)), x5, train=False)
  np.testing.assert_allclose(sf(sv, x5), ref, atol=1e-6)


# -- 8. one validation of user masks --------------------------------------------
def test_masks_are_validated_alike_everywhere():
  m, x = WithUnused(), jnp.ones((2, 3))
  v = m.init(jax.random.key(0), x)
  g = structure.trace(m.apply, v, x)
  out = [gr for gr in g.groups if not gr.prunable][0]
  calls = [g.param_masks, g.macs, g.num_params,
           lambda cm: slim.slim(m.apply, v, g, cm, x)]
  one_off = np.arange(out.size) > 0  # Pruning a single channel is refused too.
  bad = [({out.name: np.zeros(out.size, bool)}, 'not prunable'),
         ({out.name: one_off}, 'not prunable'),
         ({'a': np.ones(6, np.int32)}, 'dtype int32; expected bool'),
         ({'a': np.full(6, 0.5)}, 'dtype float'),
         ({'a': np.ones(5, bool)}, r'shape \(5,\); expected \(6,\)'),
         ({'nope': np.ones(6, bool)}, 'Unknown group')]
  for cm, msg in bad:
    for call in calls:
      with pytest.raises(ValueError, match=msg):
        call(cm)
  # All-kept masks on an unprunable group are fine.
  assert g.num_params({out.name: np.ones(out.size, bool)}) == g.num_params({})
  with pytest.raises(ValueError, match="pass masks\\['params'\\]"):
    jp_optax.masked(optax.sgd(0.1), g.param_masks({})).init(v['params'])


# -- 9. reasons name the primitive and the layer --------------------------------
def test_reasons_name_the_primitive_and_the_layer():
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
      h = nn.Dense(12, name='split_two_ways')(x)
      a = h.reshape(h.shape[:-1] + (3, 4)).sum(-1)
      b = h.reshape(h.shape[:-1] + (4, 3)).sum(-1)
      return nn.Dense(2, name='out')(jnp.concatenate([a, b], -1))

  m, x = Net(), jnp.ones((1, 3))
  v = m.init(jax.random.key(0), x)
  g = structure.trace(m.apply, v, x)
  kernel_out = structure.Member('params', ('split_two_ways', 'kernel'), 1)
  reasons = {gr.reason for gr in g.groups if kernel_out in gr.members}
  assert reasons
  for r in reasons:
    assert 'split_two_ways' in r and ('reshape' in r or 'reduce_sum' in r), r


# -- GQA attention with RoPE ------------------------------------------------------
def _rope(x, positions):
  d = x.shape[-1]
  inv = 1.0 / 10000 ** (jnp.arange(0, d, 2) / d)
  ang = positions[:, None] * inv[None, :]
  cos = jnp.concatenate([jnp.cos(ang), jnp.cos(ang)], -1)[None, :, None]
  sin = jnp.concatenate([jnp.sin(ang), jnp.sin(ang)], -1)[None, :, None]
  x1, x2 = x[..., :d // 2], x[..., d // 2:]
  return x * cos + jnp.concatenate([-x2, x1], -1) * sin


class GQA(nn.Module):
  """Llama-style grouped-query attention: K key/value heads, G query heads
  per key/value head, RoPE on q and k, keys repeated to the query heads."""
  kv_heads: int = 2
  groups: int = 3
  head_dim: int = 4
  embed: int = 8

  @nn.compact
  def __call__(self, x):
    b, t, _ = x.shape
    n = self.kv_heads * self.groups
    q = nn.Dense(n * self.head_dim, use_bias=False, name='q')(x)
    k = nn.Dense(self.kv_heads * self.head_dim, use_bias=False, name='k')(x)
    val = nn.Dense(self.kv_heads * self.head_dim, use_bias=False, name='v')(x)
    q = q.reshape(b, t, n, self.head_dim)
    k = k.reshape(b, t, self.kv_heads, self.head_dim)
    val = val.reshape(b, t, self.kv_heads, self.head_dim)
    pos = jnp.arange(t, dtype=jnp.float32)
    q, k = _rope(q, pos), _rope(k, pos)
    k = jnp.repeat(k, self.groups, axis=2)
    val = jnp.repeat(val, self.groups, axis=2)
    w = jax.nn.softmax(jnp.einsum('bthd,bshd->bhts', q, k), -1)
    o = jnp.einsum('bhts,bshd->bthd', w, val).reshape(b, t, -1)
    return x + nn.Dense(self.embed, use_bias=False, name='o')(o)


def test_gqa_kv_groups_query_heads_and_rope_pairs_slim_exactly():
  m = GQA()
  x = jax.random.normal(jax.random.key(1), (2, 5, 8))
  v = m.init(jax.random.key(0), x)
  g = structure.trace(m.apply, v, x)
  found = {u.group: u for u in units_lib.views(g, v['params'])}
  by_kind = sorted((u.kind, u.size) for u in found.values())
  # 2 KV groups, 3 query heads per group, q/k head_dim in RoPE pairs (2),
  # the v head_dim (4).
  assert by_kind == [('head', 3), ('kv_group', 2), ('other', 2), ('other', 4)]
  kv = [u for u in found.values() if u.kind == 'kv_group'][0]
  qh = [u for u in found.values() if u.kind == 'head'][0]
  pairs = [u for u in found.values() if u.kind == 'other' and u.size == 2][0]
  # A RoPE pair is (i, i + d/2) of every head's q and k dims.
  idx = g.group(pairs.group).index[structure.Member('params', ('k', 'kernel'),
                                                    1)]
  np.testing.assert_array_equal(np.sort(idx[0]), [0, 2, 4, 6])
  # The default unit kinds include KV groups and heads (input_layer: here
  # the projections read the model input directly).
  chosen = [u.group for u in units_lib.units(g, v['params'], input_layer=True)]
  assert kv.group in chosen and qh.group in chosen
  cm = {kv.group: np.array([False, True]),
        qh.group: np.array([True, False, True]),
        pairs.group: np.array([True, False])}
  sv, _ = _slim_matches(m.apply, v, g, cm, x)
  # Still GQA: 1 KV head of head_dim 2 (q/k) and 4 (v), 2 query heads each.
  p = sv['params']
  assert p['k']['kernel'].shape == (8, 1 * 2)
  assert p['v']['kernel'].shape == (8, 1 * 4)
  assert p['q']['kernel'].shape == (8, 1 * 2 * 2)
  assert p['o']['kernel'].shape == (1 * 2 * 4, 8)


class GroupedEinsumGQA(nn.Module):
  """Gemma-style GQA: queries reshaped to [B, T, K, G, Dh] and contracted
  with [B, S, K, Dh] keys by einsum (no repeat)."""

  @nn.compact
  def __call__(self, x):
    b, t, _ = x.shape
    q = nn.DenseGeneral((2, 3, 4), use_bias=False, name='q')(x)  # K, G, Dh.
    k = nn.DenseGeneral((2, 4), use_bias=False, name='k')(x)
    val = nn.DenseGeneral((2, 4), use_bias=False, name='v')(x)
    w = jax.nn.softmax(jnp.einsum('btkgh,bskh->bkgts', q, k), -1)
    o = jnp.einsum('bkgts,bskh->btkgh', w, val)
    return nn.DenseGeneral(8, axis=(-3, -2, -1), use_bias=False, name='o')(o)


def test_gqa_by_grouped_einsum():
  m = GroupedEinsumGQA()
  x = jax.random.normal(jax.random.key(1), (2, 5, 8))
  v = m.init(jax.random.key(0), x)
  g = structure.trace(m.apply, v, x)
  kinds = sorted((u.kind, u.size) for u in units_lib.views(g, v['params']))
  assert kinds == [('head', 3), ('kv_group', 2), ('other', 4), ('other', 4)]
  kv = [u for u in units_lib.views(g, v['params']) if u.kind == 'kv_group'][0]
  sv, _ = _slim_matches(m.apply, v, g, {kv.group: np.array([True, False])}, x)
  assert sv['params']['q']['kernel'].shape == (8, 1, 3, 4)
  assert sv['params']['k']['kernel'].shape == (8, 1, 4)


# -- Hugging Face Flax models (small configs, no download) -----------------------
def _hf(cls_name, cfg_name, **cfg):
  transformers = pytest.importorskip('transformers')
  try:
    cls = getattr(transformers, cls_name)
  except AttributeError:
    pytest.skip(f'transformers has no {cls_name} (Flax support removed)')
  return cls(getattr(transformers, cfg_name)(**cfg), seed=0)


HF = {
    'llama_gqa': ('FlaxLlamaModel', 'LlamaConfig', dict(
        vocab_size=50, hidden_size=32, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, intermediate_size=48,
        max_position_embeddings=16),
                  [('head', 2), ('kv_group', 2), ('neuron', 48),
                   ('other', 4), ('other', 8)]),
    'bert': ('FlaxBertModel', 'BertConfig', dict(
        vocab_size=50, hidden_size=16, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=32,
        max_position_embeddings=16),
             # The pooler feeds nothing traced here: its 16 neurons are free.
             [('head', 4), ('head', 4), ('neuron', 16), ('neuron', 32),
              ('neuron', 32), ('other', 4), ('other', 4), ('other', 4),
              ('other', 4)]),
    'gpt2': ('FlaxGPT2Model', 'GPT2Config', dict(
        vocab_size=50, n_embd=16, n_layer=2, n_head=4, n_positions=16),
             [('head', 4), ('head', 4), ('neuron', 64), ('neuron', 64),
              ('other', 4), ('other', 4), ('other', 4), ('other', 4)]),
}


@pytest.mark.parametrize('name', sorted(HF))
def test_hugging_face_flax_models_slim_exactly(name):
  cls, cfg, kw, kinds = HF[name]
  model = _hf(cls, cfg, **kw)
  ids = jax.random.randint(jax.random.key(0), (2, 8), 0, 50)
  v = {'params': model.params}
  fn = lambda v, ids: model(ids, params=v['params'])[0]
  import warnings  # pylint: disable=g-import-not-at-top
  with warnings.catch_warnings():
    warnings.filterwarnings('error', message='jaxprune.structure')
    g = structure.trace(fn, v, ids)
  assert sorted((u.kind, u.size) for u in units_lib.views(g, v['params'])) \
      == kinds
  cm = masks_lib.random(g, jax.random.key(3), 0.5)
  _slim_matches(fn, v, g, cm, ids, tol=1e-5)
