"""Input pipelines: `tfds.data_source` (ArrayRecord) + grain, no TensorFlow.

Batches are dicts of host numpy arrays: `image` uint8 `[B, H, W, C]`,
`label` int32 `[B]`, and for evaluation `mask` bool `[B]` (False on the
padding of the last batch). Normalisation happens on device in the trainer
(`normalize`), so only uint8 crosses to the accelerator.

Determinism: the order and the augmentation of example i in epoch e depend
only on (seed, e, i), so a resumed run reads exactly the same batches.
"""
import dataclasses
from typing import Iterator

import grain
import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

from jaxprune.data import augment, offline
from jaxprune.errors import DatasetNotPreparedError, JaxpruneError


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """What the trainer needs to know about a dataset."""
  tfds_name: str
  num_classes: int
  image_size: int
  channels: int
  train_split: str
  eval_split: str
  mean: tuple[float, ...]
  std: tuple[float, ...]
  augment: str  # 'cifar', 'imagenet' or 'small'.
  offline: bool = False


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
SPECS = {
    'cifar10': DatasetSpec('cifar10', 10, 32, 3, 'train', 'test',
                           (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                           'cifar'),
    'cifar100': DatasetSpec('cifar100', 100, 32, 3, 'train', 'test',
                            (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                            'cifar'),
    'imagenet2012': DatasetSpec('imagenet2012', 1000, 224, 3, 'train',
                                'validation', _IMAGENET_MEAN, _IMAGENET_STD,
                                'imagenet'),
    'digits': DatasetSpec('sklearn_digits', 10, 8, 1, 'train', 'test',
                          (0.305,), (0.376,), 'small', offline=True),
    # The same digits upsampled (bilinear) to CIFAR's 32x32, so CIFAR
    # networks run offline at their native resolution (16x the compute).
    'digits32': DatasetSpec('sklearn_digits', 10, 32, 1, 'train', 'test',
                            (0.305,), (0.376,), 'small', offline=True),
}
NAMES = tuple(sorted(SPECS))


def get_spec(name: str) -> DatasetSpec:
  """Returns the spec of a dataset name, or raises naming the allowed ones."""
  if name not in SPECS:
    raise JaxpruneError(f'Unknown dataset {name!r}; allowed: '
                        f'{", ".join(NAMES)}.')
  return SPECS[name]


def _prepare_hint(spec: DatasetSpec, data_dir: str | None) -> str:
  where = data_dir or '~/tensorflow_datasets (or $TFDS_DATA_DIR)'
  if spec.tfds_name == 'imagenet2012':
    how = ('download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar by '
           'hand into a manual dir, then run `pip install "jaxprune[tf]" && '
           'tfds build imagenet2012 --file_format=array_record --data_dir='
           f'{data_dir or "<dir>"} --manual_dir=<dir with the tars>`')
  else:
    how = ('on a machine with internet run `pip install "jaxprune[tf]" && '
           f'tfds build {spec.tfds_name} --file_format=array_record '
           f'--data_dir={data_dir or "<dir>"}`, then copy the directory here')
  return (f'Dataset {spec.tfds_name!r} is not prepared as ArrayRecord in '
          f'{where}. To prepare it, {how}; then pass --config.data_dir=<dir>.')


def load_source(name: str, split: str, data_dir: str | None = None):
  """Returns a random-access source for `split` of dataset `name`.

  Offline datasets are built on first use. Datasets that are not prepared
  raise `DatasetNotPreparedError`, which says how to prepare them; nothing
  is ever downloaded implicitly.
  """
  spec = get_spec(name)
  data_dir = data_dir or None
  if spec.offline:
    offline.prepare(spec.tfds_name, data_dir)
  try:
    return tfds.data_source(spec.tfds_name, split=split, data_dir=data_dir,
                            download=False)
  except (NotImplementedError, FileNotFoundError, AssertionError) as e:
    raise DatasetNotPreparedError(_prepare_hint(spec, data_dir)) from e
  except ValueError as e:
    if 'split' in str(e).lower():
      raise JaxpruneError(f'Dataset {name!r} has no split {split!r}: {e}') from e
    raise DatasetNotPreparedError(_prepare_hint(spec, data_dir)) from e


def split_source(name: str, data_dir: str | None, validation_size: int):
  """Returns (train, validation or None, test) grain MapDatasets.

  With `validation_size > 0`, the last `validation_size` examples of the
  train split are held out as validation (e.g. 45k/5k for CIFAR-10).
  """
  spec = get_spec(name)
  train = grain.MapDataset.source(load_source(name, spec.train_split, data_dir))
  test = grain.MapDataset.source(load_source(name, spec.eval_split, data_dir))
  return hold_out(train, test, validation_size, name)


def hold_out(train: grain.MapDataset, test: grain.MapDataset,
             validation_size: int, name: str):
  """(train, validation or None, test): the last `validation_size`
  examples of `train` held out; raises naming the allowed sizes."""
  if validation_size < 0 or validation_size >= len(train):
    raise JaxpruneError(
        f'validation_size={validation_size}; allowed: 0 <= size < '
        f'{len(train)} (the {name} train split).')
  if not validation_size:
    return train, None, test
  cut = len(train) - validation_size
  return train[:cut], train[cut:], test


def _rng(seed: int, epoch: int, index: int) -> np.random.Generator:
  return np.random.default_rng((seed, epoch, index))


def _example(record, spec: DatasetSpec, train: bool,
             rng: np.random.Generator | None):
  image = np.asarray(record['image'], np.uint8)
  if image.ndim == 2:
    image = image[..., None]
  if image.shape[-1] != spec.channels:
    image = np.broadcast_to(image[..., :1], image.shape[:2] + (spec.channels,))
  if spec.augment == 'imagenet':
    image = (augment.random_resized_crop(image, rng, spec.image_size) if train
             else augment.resize_center_crop(image, spec.image_size * 8 // 7,
                                             spec.image_size))
  elif image.shape[:2] != (spec.image_size,) * 2:
    image = augment.resize_center_crop(image, spec.image_size, spec.image_size)
  if train and spec.augment == 'cifar':
    image = augment.pad_crop_flip(image, rng, pad=4, flip=True)
  elif train and spec.augment == 'small':
    image = augment.pad_crop_flip(image, rng, pad=1, flip=False)
  return {'image': image, 'label': np.int32(record['label'])}


def host_batch_size(global_batch: int) -> int:
  """The per-process share of a global batch."""
  if global_batch % jax.process_count():
    raise JaxpruneError(f'batch_size={global_batch} is not divisible by the '
                        f'{jax.process_count()} processes.')
  return global_batch // jax.process_count()


def train_batches(ds: grain.MapDataset, spec: DatasetSpec, global_batch: int,
                  seed: int, epoch: int, threads: int = 8,
                  prefetch: int = 4) -> Iterator[dict]:
  """One epoch of shuffled, augmented, host-sharded training batches.

  Each process reads a disjoint 1/process_count of the same global
  permutation; the last incomplete batch is dropped.
  """
  local = host_batch_size(global_batch)
  steps = len(ds) // global_batch
  if not steps:
    raise JaxpruneError(f'batch_size={global_batch} is larger than the '
                        f'{len(ds)} training examples.')
  ds = ds.shuffle(seed=seed * 100_003 + epoch)[:steps * global_batch]
  # Augment by global position before sharding, so that the result does not
  # depend on the number of processes.
  ds = ds.map_with_index(
      lambda i, r: _example(r, spec, True, _rng(seed, epoch, i)))
  ds = ds[jax.process_index()::jax.process_count()]
  ds = ds.batch(local, drop_remainder=True)
  it = ds.to_iter_dataset(grain.ReadOptions(
      num_threads=threads, prefetch_buffer_size=max(prefetch, threads)))
  return iter(it)


def steps_per_epoch(ds: grain.MapDataset, global_batch: int) -> int:
  return len(ds) // global_batch


def eval_batches(ds: grain.MapDataset, spec: DatasetSpec, global_batch: int,
                 threads: int = 8) -> Iterator[dict]:
  """All examples once, in order, host-sharded, last batch zero-padded."""
  local = host_batch_size(global_batch)
  n = len(ds)
  padded = -(-n // global_batch) * global_batch
  idx = grain.MapDataset.range(padded)[jax.process_index()::jax.process_count()]

  def load(i):
    if i < n:
      ex = _example(ds[i], spec, False, None)
      return {**ex, 'mask': np.bool_(True)}
    return {'image': np.zeros((spec.image_size, spec.image_size,
                               spec.channels), np.uint8),
            'label': np.int32(0), 'mask': np.bool_(False)}

  it = idx.map(load).batch(local).to_iter_dataset(
      grain.ReadOptions(num_threads=threads, prefetch_buffer_size=threads))
  return iter(it)


def normalize(images: jax.Array, spec: DatasetSpec,
              dtype=jnp.float32) -> jax.Array:
  """uint8 -> (x / 255 - mean) / std, on device."""
  x = images.astype(jnp.float32) / 255.0
  x = (x - jnp.asarray(spec.mean)) / jnp.asarray(spec.std)
  return x.astype(dtype)
