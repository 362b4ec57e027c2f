"""Starting from pretrained weights (`config.init_from`), from local files.

Nothing is downloaded. Three sources:

* a jaxprune workdir: its newest checkpoint (`checkpoints/`, else the
  last `state_NN/checkpoints/` of a multi-phase run);
* a `.npz` file: one array per name;
* a `.safetensors` file (read here with numpy; no extra package).

With `init_from_format='timm_vit'` the file holds a timm ViT
(`vit_small_patch16_224` and the like): its names are converted to ours by
`convert_timm_vit` (the fused qkv split into query/key/value `[D, H, Dh]`,
the projection reshaped to `[H, Dh, D]`, Linear weights transposed), so the
shape-matching blocks, norms and cls token load, while a patch embedding,
position table or head of another size stay at their initial values.

Names are matched against ours, the '/'-joined variable paths such as
`params/Block_0/Dense_0/kernel` or `batch_stats/bn/mean`, after the
`name_map` rules rewrite the file's names (`'regex=>replacement'`, applied
in order with `re.sub`; e.g. timm's `blocks\\.(\\d+)\\.norm1\\.weight=>
params/block\\1/ln1/scale`). A name that matches loads when the shapes agree,
or when the file holds PyTorch's layout (a Linear `[out, in]` for our
`[in, out]`, a conv `[out, in, kh, kw]` for our `[kh, kw, in, out]`), which
is converted. Everything else stays at its initial value; the log lists
both sides, and a source that matches nothing is an error.
"""
import glob
import json
import os
import re
from typing import Any, Callable

import jax
import numpy as np

from jaxprune.errors import JaxpruneError

FORMATS = ('a jaxprune workdir', '.npz', '.safetensors')
NAMINGS = ('', 'timm_vit')  # `init_from_format`: ours (with a map) | timm's ViT.

_ST_DTYPES = {'F64': np.float64, 'F32': np.float32, 'F16': np.float16,
              'I64': np.int64, 'I32': np.int32, 'I16': np.int16,
              'I8': np.int8, 'U8': np.uint8, 'BOOL': np.bool_}


def read_safetensors(path: str) -> dict[str, np.ndarray]:
  """Every tensor of a .safetensors file (bf16 widened to float32)."""
  with open(path, 'rb') as f:
    data = f.read()
  if len(data) < 8:
    raise JaxpruneError(f'{path}: not a safetensors file (too short).')
  n = int.from_bytes(data[:8], 'little')
  try:
    header = json.loads(data[8:8 + n])
  except ValueError as e:
    raise JaxpruneError(f'{path}: not a safetensors file ({e}).') from e
  body = data[8 + n:]
  out = {}
  for name, info in header.items():
    if name == '__metadata__':
      continue
    a, b = info['data_offsets']
    raw = body[a:b]
    if info['dtype'] == 'BF16':
      bits = np.frombuffer(raw, np.uint16).astype(np.uint32) << 16
      arr = bits.view(np.float32)
    elif info['dtype'] in _ST_DTYPES:
      arr = np.frombuffer(raw, _ST_DTYPES[info['dtype']])
    else:
      raise JaxpruneError(f'{path}: tensor {name!r} has dtype '
                          f'{info["dtype"]}; allowed: BF16, '
                          f'{", ".join(_ST_DTYPES)}.')
    out[name] = arr.reshape(info['shape']).copy()
  return out


def write_safetensors(path: str, arrays: dict[str, np.ndarray]) -> None:
  """Writes arrays as a .safetensors file (for tests and exports)."""
  names = {v: k for k, v in _ST_DTYPES.items()}
  header, chunks, pos = {}, [], 0
  for name, arr in arrays.items():
    arr = np.ascontiguousarray(arr)
    raw = arr.tobytes()
    header[name] = {'dtype': names[arr.dtype.type], 'shape': list(arr.shape),
                    'data_offsets': [pos, pos + len(raw)]}
    chunks.append(raw)
    pos += len(raw)
  head = json.dumps(header).encode()
  head += b' ' * (-len(head) % 8)
  with open(path, 'wb') as f:
    f.write(len(head).to_bytes(8, 'little') + head + b''.join(chunks))


def _flatten(tree: Any, prefix: str = '') -> dict[str, np.ndarray]:
  out = {}
  for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    name = '/'.join(str(getattr(k, 'key', getattr(k, 'name', k)))
                    for k in p)
    out[prefix + name] = np.asarray(leaf)
  return out


def _workdir_checkpoints(path: str) -> str:
  if os.path.isdir(os.path.join(path, 'checkpoints')):
    return path
  states = sorted(glob.glob(os.path.join(path, 'state_*', 'checkpoints')))
  if states:
    return os.path.dirname(states[-1])
  raise JaxpruneError(f'init_from={path!r}: a directory without '
                      'checkpoints/ or state_NN/checkpoints/; allowed: '
                      f'{", ".join(FORMATS)}.')


def read(path: str, naming: str = '', variables: Any = None
         ) -> dict[str, np.ndarray]:
  """The named arrays of a source (module docstring), by flat name.

  Args:
    path: a workdir, .npz or .safetensors file.
    naming: '' (the file's names) or 'timm_vit' (`convert_timm_vit`, which
      needs `variables`).
    variables: our model's variables (for 'timm_vit').
  """
  if naming not in NAMINGS:
    raise JaxpruneError(f'init_from_format={naming!r}; allowed: '
                        f'{", ".join(repr(n) for n in NAMINGS)}.')
  out = _read(path)
  if naming == 'timm_vit':
    out = convert_timm_vit(out, variables)
  return out


def _read(path: str) -> dict[str, np.ndarray]:
  if not os.path.exists(path):
    raise JaxpruneError(f'init_from={path!r} does not exist (only local '
                        'files are read).')
  if os.path.isdir(path):
    from jaxprune import checkpoint  # pylint: disable=g-import-not-at-top
    _, state = checkpoint.load(_workdir_checkpoints(path))
    out = {}
    for coll in ('params', 'batch_stats'):
      if coll in state and state[coll] is not None:
        out.update(_flatten(state[coll], coll + '/'))
    return out
  if path.endswith('.npz'):
    with np.load(path) as z:
      return {k: z[k] for k in z.files}
  if path.endswith('.safetensors'):
    return read_safetensors(path)
  raise JaxpruneError(f'init_from={path!r}; allowed: {", ".join(FORMATS)}.')


def _rules(name_map) -> list[tuple[re.Pattern, str]]:
  out = []
  for rule in name_map:
    if '=>' not in rule:
      raise JaxpruneError(f"init_from_map rule {rule!r}; allowed: "
                          "'regex=>replacement'.")
    pat, rep = rule.split('=>', 1)
    out.append((re.compile(pat), rep))
  return out


def _fit(src: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
  """`src` in our layout `shape`, or None."""
  if src.shape == shape:
    return src
  if src.ndim == 2 and src.T.shape == shape:
    return src.T  # PyTorch Linear [out, in].
  if src.ndim == 4 and np.transpose(src, (2, 3, 1, 0)).shape == shape:
    return np.transpose(src, (2, 3, 1, 0))  # PyTorch conv [o, i, kh, kw].
  return None


def load_into(variables: Any, source: dict[str, np.ndarray],
              name_map=(), log: Callable[..., None] | None = None
              ) -> tuple[Any, list[str], list[str]]:
  """Copies the matching arrays of `source` into `variables`.

  Args:
    variables: the model's variables ({'params': ..., 'batch_stats': ...}).
    source: flat name -> array (`read`).
    name_map: 'regex=>replacement' rules for the source's names.
    log: printf-style logger.

  Returns:
    (variables, names loaded, names left at their initial value).

  Raises:
    JaxpruneError: when nothing matches (naming a few names of each side).
  """
  rules = _rules(name_map)
  mapped = {}
  for name, arr in source.items():
    new = name
    for pat, rep in rules:
      new = pat.sub(rep, new)
    mapped[new] = (name, np.asarray(arr))
  leaves, treedef = jax.tree_util.tree_flatten_with_path(variables)
  out, loaded, left, misfit = [], [], [], []
  for p, leaf in leaves:
    name = '/'.join(str(getattr(k, 'key', getattr(k, 'name', k))) for k in p)
    got = mapped.get(name)
    fit = None if got is None else _fit(got[1], tuple(np.shape(leaf)))
    if fit is None:
      if got is not None:
        misfit.append(f'{name} {tuple(got[1].shape)} vs '
                      f'{tuple(np.shape(leaf))}')
      left.append(name)
      out.append(leaf)
    else:
      loaded.append(name)
      out.append(np.asarray(fit, np.asarray(leaf).dtype))
  if not loaded:
    raise JaxpruneError(
        'init_from: no array matches this model (by name and shape). File '
        f'names (after init_from_map): {sorted(mapped)[:5]}; model names: '
        f'{[n for n in left[:5]]}'
        + (f'; shape mismatches: {misfit[:3]}' if misfit else '') + '.')
  if log is not None:
    log('init_from: loaded %d arrays (%s%s); %d left at init (%s%s)%s.',
        len(loaded), ', '.join(loaded[:8]), ', ...' if len(loaded) > 8 else
        '', len(left), ', '.join(left[:8]), ', ...' if len(left) > 8 else '',
        f'; shape mismatches: {", ".join(misfit[:4])}' if misfit else '')
  return jax.tree_util.tree_unflatten(treedef, out), loaded, left


def convert_timm_vit(source: dict[str, np.ndarray],
                     variables: Any) -> dict[str, np.ndarray]:
  """timm ViT arrays renamed (and reshaped) to `jaxprune.models.vit` ones.

  Args:
    source: timm names -> arrays (PyTorch layouts).
    variables: our model's variables (for the head count H and Dh).

  Returns:
    Our flat names -> arrays in our layouts; names timm has and we do not
    (e.g. `fc_norm`) are kept under their timm names (they match nothing).
  """
  params = variables['params']
  out, blocks = {}, {}
  for name, arr in source.items():
    arr = np.asarray(arr)
    parts = name.split('.')
    if parts[0] == 'blocks' and len(parts) > 2 and parts[1].isdigit():
      blocks.setdefault(int(parts[1]), {})['.'.join(parts[2:])] = arr
      continue
    leaf = {'weight': 'kernel', 'bias': 'bias'}.get(parts[-1], parts[-1])
    if name in ('cls_token', 'pos_embed'):
      out[f'params/{name}'] = arr
    elif name.startswith('patch_embed.proj.'):
      # A conv (_fit converts it); its bias only with a kernel that fits
      # (a 16x16 embedding is not a 4x4 one, whatever the bias shape).
      ours = params.get('patch_embed', {}).get('kernel')
      kernel = source.get('patch_embed.proj.weight')
      if ours is not None and kernel is not None and _fit(
          np.asarray(kernel), tuple(np.shape(ours))) is not None:
        out[f'params/patch_embed/{leaf}'] = arr
      else:
        out[name] = arr
    elif name.startswith('norm.'):
      out[f'params/norm/{"scale" if leaf == "kernel" else "bias"}'] = arr
    elif name.startswith('head.'):
      out[f'params/head/{leaf}'] = arr
    else:
      out[name] = arr
  for i, b in blocks.items():
    pre = f'params/block{i}'
    q = params.get(f'block{i}', {}).get('attn', {}).get('query', {}).get(
        'kernel')
    heads, dh = (np.shape(q)[1:] if q is not None else (None, None))
    for ln, ours in (('norm1', 'ln1'), ('norm2', 'ln2')):
      if f'{ln}.weight' in b:
        out[f'{pre}/{ours}/scale'] = b.pop(f'{ln}.weight')
      if f'{ln}.bias' in b:
        out[f'{pre}/{ours}/bias'] = b.pop(f'{ln}.bias')
    for fc in ('fc1', 'fc2'):
      if f'mlp.{fc}.weight' in b:
        out[f'{pre}/{fc}/kernel'] = b.pop(f'mlp.{fc}.weight').T
      if f'mlp.{fc}.bias' in b:
        out[f'{pre}/{fc}/bias'] = b.pop(f'mlp.{fc}.bias')
    if heads is not None and 'attn.qkv.weight' in b:
      w = b.pop('attn.qkv.weight')  # [3 H Dh, D]
      d = w.shape[1]
      if w.shape[0] == 3 * heads * dh:
        for j, part in enumerate(('query', 'key', 'value')):
          out[f'{pre}/attn/{part}/kernel'] = w[j * heads * dh:(j + 1) * heads *
                                               dh].T.reshape(d, heads, dh)
        bias = b.pop('attn.qkv.bias', None)
        if bias is not None:
          for j, part in enumerate(('query', 'key', 'value')):
            out[f'{pre}/attn/{part}/bias'] = bias[j * heads * dh:(j + 1) *
                                                  heads * dh].reshape(heads,
                                                                      dh)
      else:
        b['attn.qkv.weight'] = w
    if heads is not None and 'attn.proj.weight' in b:
      w = b.pop('attn.proj.weight')  # [D, H Dh]
      if w.shape[1] == heads * dh:
        out[f'{pre}/attn/out/kernel'] = w.T.reshape(heads, dh, w.shape[0])
      else:
        b['attn.proj.weight'] = w
    if 'attn.proj.bias' in b:
      out[f'{pre}/attn/out/bias'] = b.pop('attn.proj.bias')
    for rest, arr in b.items():  # Unknown or misfit: kept, matching nothing.
      out[f'blocks.{i}.{rest}'] = arr
  return out
