"""Detection input pipelines: TFDS `coco/2017` and the offline
`digits_detection`, read with `tfds` ArrayRecord sources and grain, with
SSD's augmentation.

Both datasets share COCO's TFDS features: `image`, `image/id` and
`objects` = {`bbox` (ymin, xmin, ymax, xmax, relative), `label` (0-based
class), `area` (pixels), `is_crowd`, `id`}. Batches are dicts of host
numpy arrays with ground truth padded to `spec.max_boxes`:

- `image` uint8 [B, S, S, 3];
- `boxes` float32 [B, G, 4] (left, top, right, bottom), relative to the
  (cropped) image; `labels` int32 [B, G], classes 1..C-1 (0: background);
  `valid` bool [B, G];
- evaluation also: `crowd` bool [B, G], `area` float32 [B, G] (COCO's
  annotation area), `image_id` int64 [B], `index` int32 [B] (the position
  in the split, which keys the COCO evaluation), `size` int32 [B, 2]
  (original height, width) and `mask` bool [B] (False on padding).

Training drops crowd boxes (COCO marks them to be ignored); evaluation
keeps them, flagged, for pycocotools. Targets are matched and encoded on
the device, in the loss (`jaxprune.tasks.detection`).

Determinism: as for classification, example i of epoch e depends only on
(seed, e, i).
"""
import dataclasses
import glob
import math
import os
from typing import Iterator

import grain
import jax
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from jaxprune.data import offline, pipeline
from jaxprune.errors import DatasetNotPreparedError, JaxpruneError


@dataclasses.dataclass(frozen=True)
class DetectionSpec:
  """What the detection task needs to know about a dataset."""
  tfds_name: str
  num_classes: int  # Including the background, class 0.
  image_size: int  # Square network input.
  train_split: str
  eval_split: str
  mean: tuple[float, ...]
  std: tuple[float, ...]
  max_boxes: int  # Ground-truth boxes per image kept (padding to it).
  offline: bool = False


SPECS = {
    # NVIDIA's SSD300 evaluates with up to 200 boxes per image.
    'coco': DetectionSpec('coco/2017', 81, 300, 'train', 'validation',
                          (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 200),
    'digits_detection': DetectionSpec(
        'digits_detection', 11, offline.CANVAS, 'train', 'test',
        (0.1, 0.1, 0.1), (0.25, 0.25, 0.25), offline.MAX_DIGITS,
        offline=True),
}
NAMES = tuple(sorted(SPECS))


def get_spec(name: str) -> DetectionSpec:
  if name not in SPECS:
    raise JaxpruneError(f'Unknown detection dataset {name!r}; allowed: '
                        f'{", ".join(NAMES)}.')
  return SPECS[name]


def builder_dir(spec: DetectionSpec, data_dir: str | None) -> str | None:
  """The prepared `<data_dir>/<name>/<config>/<version>` (the newest), or
  None."""
  root = data_dir or os.environ.get('TFDS_DATA_DIR') or os.path.expanduser(
      '~/tensorflow_datasets')
  found = [d for d in glob.glob(os.path.join(root, spec.tfds_name, '*'))
           if os.path.exists(os.path.join(d, 'dataset_info.json'))]
  key = lambda d: tuple(int(p) if p.isdigit() else -1
                        for p in os.path.basename(d).split('.'))
  return max(found, key=key) if found else None


def load_source(spec: DetectionSpec, split: str, data_dir: str | None):
  """A random-access source of one split.

  The prepared directory is read with `tfds.builder_from_directory`, which
  needs no TensorFlow (TFDS's COCO builder code imports it).
  """
  data_dir = data_dir or None  # '' (the config default): TFDS's own.
  if spec.offline:
    offline.prepare(spec.tfds_name, data_dir)
  path = builder_dir(spec, data_dir)
  if path is None:
    where = data_dir or '~/tensorflow_datasets (or $TFDS_DATA_DIR)'
    raise DatasetNotPreparedError(
        f'Dataset {spec.tfds_name!r} is not prepared in {where}. On a '
        'machine with internet run `pip install "jaxprune[tf]" && tfds '
        f'build {spec.tfds_name} --file_format=array_record --data_dir='
        f'{data_dir or "<dir>"}` (COCO-2017 is about 25 GB), copy the '
        'directory here and pass --config.data_dir=<dir>.')
  builder = tfds.builder_from_directory(path)
  if split not in builder.info.splits:
    raise JaxpruneError(f'Dataset {spec.tfds_name!r} has no split {split!r}; '
                        f'allowed: {", ".join(builder.info.splits)}.')
  return builder.as_data_source(split)


def split_source(spec: DetectionSpec, data_dir: str | None,
                 validation_size: int):
  """(train, validation or None, test) grain MapDatasets."""
  train = grain.MapDataset.source(load_source(spec, spec.train_split,
                                              data_dir))
  test = grain.MapDataset.source(load_source(spec, spec.eval_split, data_dir))
  return pipeline.hold_out(train, test, validation_size, spec.tfds_name)


# -- records ------------------------------------------------------------------
def read(record) -> dict[str, np.ndarray]:
  """A TFDS record as image uint8 [H, W, 3], boxes ltrb [n, 4] (relative,
  clipped, degenerate ones dropped), labels int32 [n] (1-based), crowd,
  area and image_id."""
  image = np.asarray(record['image'], np.uint8)
  if image.ndim == 2:
    image = image[..., None]
  if image.shape[-1] != 3:
    image = np.broadcast_to(image[..., :1], image.shape[:2] + (3,))
  obj = record.get('objects', {})
  fields = ('bbox', 'label', 'is_crowd', 'area')
  n = min(len(np.asarray(obj.get(f, ()))) for f in fields) if obj else 0
  bbox = np.asarray(obj['bbox'], np.float32).reshape(-1, 4)[:n] if n else (
      np.zeros((0, 4), np.float32))
  y0, x0, y1, x1 = np.clip(bbox, 0, 1).T
  ltrb = np.stack([np.minimum(x0, x1), np.minimum(y0, y1),
                   np.maximum(x0, x1), np.maximum(y0, y1)], -1)
  ok = (ltrb[:, 2] > ltrb[:, 0]) & (ltrb[:, 3] > ltrb[:, 1])
  take = lambda f, dtype: np.asarray(obj[f], dtype).reshape(-1)[:n][ok] if n \
      else np.zeros((0,), dtype)
  return {'image': image, 'boxes': ltrb[ok].astype(np.float32),
          'labels': take('label', np.int32) + 1,
          'crowd': take('is_crowd', bool), 'area': take('area', np.float32),
          'image_id': np.int64(record.get('image/id', -1))}


# -- SSD augmentation (Liu et al. 2016, as NVIDIA's SSD300 recipe) ------------
_CROP_MODES = (None, 0.1, 0.3, 0.5, 0.7, 0.9, -1.0)  # min IoU; -1: any crop.


def _iou_one(boxes, crop):
  lt = np.maximum(boxes[:, :2], crop[:2])
  rb = np.minimum(boxes[:, 2:], crop[2:])
  inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
  area = lambda b: np.prod(b[..., 2:] - b[..., :2], axis=-1)
  return inter / (area(boxes) + area(crop) - inter)


def ssd_crop(ex, rng: np.random.Generator, tries: int = 50):
  """The IoU-constrained random crop: a mode is drawn from {keep, min IoU
  0.1, 0.3, 0.5, 0.7, 0.9, any}; a crop of sides 0.3..1 (aspect 1/2..2)
  must overlap every box with more than the min IoU and contain at least
  one box centre; boxes whose centre falls outside are dropped, the rest
  clipped. Images with no boxes are kept whole."""
  if not len(ex['boxes']):
    return ex
  boxes = ex['boxes']
  for _ in range(tries):
    mode = _CROP_MODES[int(rng.integers(len(_CROP_MODES)))]
    if mode is None:
      return ex
    w, h = rng.uniform(0.3, 1.0, size=2)
    if not 0.5 <= w / h <= 2:
      continue
    left, top = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
    crop = np.array([left, top, left + w, top + h], np.float32)
    if not np.all(_iou_one(boxes, crop) > mode):
      continue
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    inside = np.all((centre > crop[:2]) & (centre < crop[2:]), axis=1)
    if not inside.any():
      continue
    hh, ww = ex['image'].shape[:2]
    l, t = int(left * ww), int(top * hh)
    r, b = max(int((left + w) * ww), l + 1), max(int((top + h) * hh), t + 1)
    # Boxes relative to the pixels actually cut (whole pixels), in [0, 1].
    px = np.array([l / ww, t / hh, r / ww, b / hh], np.float32)
    kept = np.clip(boxes[inside], px[[0, 1, 0, 1]], px[[2, 3, 2, 3]])
    kept = np.clip((kept - px[[0, 1, 0, 1]]) / (px[[2, 3, 2, 3]] - px[
        [0, 1, 0, 1]]), 0, 1)
    keep = np.all(kept[:, 2:] > kept[:, :2], axis=1)
    if not keep.any():
      continue
    inside[inside] = keep
    return {**ex, 'image': ex['image'][t:b, l:r],
            'boxes': kept[keep].astype(np.float32),
            **{k: ex[k][inside] for k in ('labels', 'crowd', 'area')}}
  return ex


def flip(ex, rng: np.random.Generator):
  """A horizontal flip with probability 1/2."""
  if rng.random() >= 0.5:
    return ex
  b = ex['boxes']
  return {**ex, 'image': ex['image'][:, ::-1],
          'boxes': np.stack([1 - b[:, 2], b[:, 1], 1 - b[:, 0], b[:, 3]],
                            -1).astype(np.float32)}


def color_jitter(image: np.ndarray, rng: np.random.Generator,
                 brightness=0.125, contrast=0.5, saturation=0.5,
                 hue=0.05) -> np.ndarray:
  """torchvision-style ColorJitter with NVIDIA's strengths, in a random
  order; hue turns the chroma in YIQ space by up to hue * 360 degrees."""
  x = image.astype(np.float32) / 255.0
  grey = lambda y: (y @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
  ops = []
  ops.append(lambda y: y * rng.uniform(1 - brightness, 1 + brightness))
  ops.append(lambda y: (y - grey(y).mean()) * rng.uniform(
      1 - contrast, 1 + contrast) + grey(y).mean())
  ops.append(lambda y: (y - grey(y)) * rng.uniform(
      1 - saturation, 1 + saturation) + grey(y))

  def turn(y):
    a = 2 * math.pi * rng.uniform(-hue, hue)
    to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                       [0.211, -0.523, 0.312]], np.float32)
    rot = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)],
                    [0, math.sin(a), math.cos(a)]], np.float32)
    m = np.linalg.inv(to_yiq) @ rot @ to_yiq
    return y @ m.T.astype(np.float32)
  ops.append(turn)
  for i in rng.permutation(len(ops)):
    x = np.clip(ops[i](x), 0, 1)
  return np.round(x * 255).astype(np.uint8)


def resize(image: np.ndarray, size: int) -> np.ndarray:
  if image.shape[:2] == (size, size):
    return np.ascontiguousarray(image)
  return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(
      (size, size), Image.BILINEAR))


def _pad(ex, g: int, keys) -> dict[str, np.ndarray]:
  n = min(len(ex['boxes']), g)
  out = {'valid': np.arange(g) < n}
  for k in keys:
    v = ex[k][:n]
    out[k] = np.concatenate([v, np.zeros((g - n,) + v.shape[1:], v.dtype)])
  return out


def train_example(record, spec: DetectionSpec, rng: np.random.Generator):
  ex = read(record)
  ex = {**ex, **{k: ex[k][~ex['crowd']] for k in ('boxes', 'labels', 'crowd',
                                                   'area')}}
  ex = flip(ssd_crop(ex, rng), rng)
  image = color_jitter(resize(ex['image'], spec.image_size), rng)
  return {'image': image, **_pad(ex, spec.max_boxes, ('boxes', 'labels'))}


def eval_example(record, spec: DetectionSpec, index: int):
  ex = read(record)
  h, w = ex['image'].shape[:2]
  return {'image': resize(ex['image'], spec.image_size),
          **_pad(ex, spec.max_boxes, ('boxes', 'labels', 'crowd', 'area')),
          'image_id': ex['image_id'], 'index': np.int32(index),
          'size': np.array([h, w], np.int32), 'mask': np.bool_(True)}


def train_batches(ds: grain.MapDataset, spec: DetectionSpec,
                  global_batch: int, seed: int, epoch: int,
                  threads: int = 8) -> Iterator[dict]:
  """One epoch of shuffled, augmented, host-sharded training batches (the
  last incomplete batch dropped)."""
  local = pipeline.host_batch_size(global_batch)
  steps = len(ds) // global_batch
  if not steps:
    raise JaxpruneError(f'batch_size={global_batch} is larger than the '
                        f'{len(ds)} training examples.')
  ds = ds.shuffle(seed=seed * 100_003 + epoch)[:steps * global_batch]
  ds = ds.map_with_index(lambda i, r: train_example(
      r, spec, np.random.default_rng((seed, epoch, i))))
  ds = ds[jax.process_index()::jax.process_count()].batch(
      local, drop_remainder=True)
  return iter(ds.to_iter_dataset(grain.ReadOptions(
      num_threads=threads, prefetch_buffer_size=max(4, threads))))


def eval_batches(ds: grain.MapDataset, spec: DetectionSpec,
                 global_batch: int, threads: int = 8) -> Iterator[dict]:
  """All examples once, in order, host-sharded, the last batch padded."""
  local = pipeline.host_batch_size(global_batch)
  n = len(ds)
  padded = -(-n // global_batch) * global_batch
  idx = grain.MapDataset.range(padded)[
      jax.process_index()::jax.process_count()]
  g, s = spec.max_boxes, spec.image_size
  blank = {'image': np.zeros((s, s, 3), np.uint8),
           'boxes': np.zeros((g, 4), np.float32),
           'labels': np.zeros(g, np.int32), 'valid': np.zeros(g, bool),
           'crowd': np.zeros(g, bool), 'area': np.zeros(g, np.float32),
           'image_id': np.int64(-1), 'index': np.int32(-1),
           'size': np.ones(2, np.int32), 'mask': np.bool_(False)}
  load = lambda i: eval_example(ds[i], spec, i) if i < n else blank
  return iter(idx.map(load).batch(local).to_iter_dataset(
      grain.ReadOptions(num_threads=threads, prefetch_buffer_size=threads)))
