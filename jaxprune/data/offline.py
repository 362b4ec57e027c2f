"""Real datasets that ship inside installed packages, registered with TFDS.

`sklearn_digits` is scikit-learn's copy of the UCI handwritten digits
(1,797 8x8 grey images, 10 classes, inside the scikit-learn wheel). It is
built once into the TFDS data dir as ArrayRecord, with no network, and then
read through exactly the same `tfds.data_source` path as cifar10.

`digits_detection` pastes 1 to `MAX_DIGITS` of those digits (none on about
1 canvas in 20) at random
positions and sizes (12 to 28 pixels, overlapping little) on a dark,
slightly noisy `CANVAS`-pixel canvas, with their boxes and labels, in
COCO's TFDS features (`objects/bbox` as ymin, xmin, ymax, xmax, ...), so
it is read by the same detection pipeline as `coco/2017`. Train canvases
use the digits' train split, test canvases the test split.
"""
import contextlib
import fcntl
import logging
import os

import numpy as np
import tensorflow_datasets as tfds

DIGITS_TEST = 360  # Images held out as the test split (20%).


class SklearnDigits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's digits: 8x8x1 uint8 images scaled from 0..16 to 0..255."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Built from sklearn.datasets.load_digits().'}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description='UCI handwritten digits as shipped by scikit-learn.',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
            'label': tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=('image', 'label'),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    from sklearn import datasets  # pylint: disable=g-import-not-at-top
    digits = datasets.load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]
    # A fixed permutation so that both splits hold every class.
    order = np.random.default_rng(0).permutation(len(images))
    test, train = order[:DIGITS_TEST], order[DIGITS_TEST:]
    return {
        'train': self._generate_examples(images[train], digits.target[train]),
        'test': self._generate_examples(images[test], digits.target[test]),
    }

  def _generate_examples(self, images, labels):
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {'image': image, 'label': int(label)}


CANVAS = 64
MAX_DIGITS = 4
DETECTION_SIZES = {'train': 1500, 'test': 300}  # Canvases per split.


def _digit_splits():
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  digits = datasets.load_digits()
  images = np.round(digits.images * (255 / 16)).astype(np.uint8)
  order = np.random.default_rng(0).permutation(len(images))
  test, train = order[:DIGITS_TEST], order[DIGITS_TEST:]
  return {'train': (images[train], digits.target[train]),
          'test': (images[test], digits.target[test])}


def digit_canvas(rng: np.random.Generator, images, labels,
                 size: int = CANVAS, max_digits: int = MAX_DIGITS):
  """One canvas: (image uint8 [size, size, 3], boxes ltrb pixels [n, 4],
  labels [n]). Digits overlap another by IoU <= 0.1."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  canvas = rng.integers(0, 24, (size, size)).astype(np.uint8)
  boxes, classes = [], []
  # About 1 canvas in 20 is empty (no boxes), the rest hold 1..max_digits.
  count = 0 if rng.random() < 0.05 else int(rng.integers(1, max_digits + 1))
  for _ in range(count):
    for _ in range(20):
      s = int(rng.integers(12, 29))
      x, y = (int(v) for v in rng.integers(0, size - s + 1, size=2))
      box = np.array([x, y, x + s, y + s], np.float32)
      if all(_iou(box, b) <= 0.1 for b in boxes):
        break
    else:
      continue
    k = int(rng.integers(len(images)))
    digit = np.asarray(Image.fromarray(images[k]).resize((s, s),
                                                         Image.BILINEAR))
    canvas[y:y + s, x:x + s] = np.maximum(canvas[y:y + s, x:x + s], digit)
    boxes.append(box)
    classes.append(int(labels[k]))
  image = np.repeat(canvas[..., None], 3, axis=-1)
  return (image, np.asarray(boxes, np.float32).reshape(-1, 4),
          np.asarray(classes, np.int64))


def _iou(a, b):
  w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  inter = w * h
  union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
  return inter / union


class DigitsDetection(tfds.core.GeneratorBasedBuilder):
  """Digits on a canvas, with boxes: a detection set in COCO's features."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'sklearn digits pasted on 64x64 canvases.'}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description='sklearn digits pasted on canvases, with boxes.',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(CANVAS, CANVAS, 3),
                                          dtype=np.uint8),
            'image/id': np.int64,
            'objects': tfds.features.Sequence({
                'id': np.int64,
                'area': np.int64,
                'bbox': tfds.features.BBoxFeature(),
                'label': tfds.features.ClassLabel(num_classes=10),
                'is_crowd': np.bool_,
            }),
        }),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    splits = _digit_splits()
    return {name: self._generate_examples(name, *splits[name])
            for name in DETECTION_SIZES}

  def _generate_examples(self, split, images, labels):
    rng = np.random.default_rng(1 if split == 'train' else 2)
    for i in range(DETECTION_SIZES[split]):
      image, boxes, classes = digit_canvas(rng, images, labels)
      yx = boxes[:, [1, 0, 3, 2]] / CANVAS  # ymin, xmin, ymax, xmax.
      yield i, {'image': image, 'image/id': i, 'objects': {
          'id': np.arange(len(boxes), dtype=np.int64) + 1000 * i,
          'area': np.prod(boxes[:, 2:] - boxes[:, :2], axis=1).astype(
              np.int64),
          'bbox': yx.astype(np.float32), 'label': classes,
          'is_crowd': np.zeros(len(boxes), bool)}}


BUILDERS = {'sklearn_digits': SklearnDigits,
            'digits_detection': DigitsDetection}


@contextlib.contextmanager
def _quiet():
  """No progress bars (raw escape codes in logs) and no warning about the
  not yet written dataset_info.json while a dataset is built."""
  loggers = [logging.getLogger(n) for n in ('absl', 'tensorflow_datasets')]
  levels = [l.level for l in loggers]
  for l in loggers:
    l.setLevel(logging.ERROR)
  tfds.disable_progress_bar()
  try:
    yield
  finally:
    for l, level in zip(loggers, levels):
      l.setLevel(level)


def prepare(tfds_name: str, data_dir: str | None) -> None:
  """Builds an offline dataset into `data_dir` once (no-op when present).

  Several processes may call this at once (tests, multi-process runs): the
  build holds a file lock next to the dataset, and the others wait for it.
  """
  with _quiet():
    builder = BUILDERS[tfds_name](data_dir=data_dir,
                                  file_format='array_record')
    if builder.is_prepared():
      return
    root = os.path.dirname(os.path.dirname(builder.data_dir))
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, f'.{tfds_name}.lock'), 'w') as lock:
      fcntl.flock(lock, fcntl.LOCK_EX)
      builder = BUILDERS[tfds_name](data_dir=data_dir,
                                    file_format='array_record')
      if not builder.is_prepared():
        logging.getLogger('jaxprune').warning(
            'Building the offline dataset %s into %s (once; nothing is '
            'downloaded).', tfds_name, root)
        with open(os.devnull, 'w') as null, contextlib.redirect_stdout(null):
          builder.download_and_prepare()
