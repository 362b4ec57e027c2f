"""Real datasets that ship inside installed packages, registered with TFDS.

`sklearn_digits` is scikit-learn's copy of the UCI handwritten digits
(1,797 8x8 grey images, 10 classes, inside the scikit-learn wheel). It is
built once into the TFDS data dir as ArrayRecord, with no network, and then
read through exactly the same `tfds.data_source` path as cifar10.
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


BUILDERS = {'sklearn_digits': SklearnDigits}


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
