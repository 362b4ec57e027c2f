"""Input pipelines under tfds mock data, and the offline dataset."""
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxprune import data
from jaxprune.errors import DatasetNotPreparedError, JaxpruneError


@pytest.mark.parametrize('name,size', [('cifar10', 32), ('cifar100', 32),
                                       ('imagenet2012', 224)])
def test_mock_pipelines(name, size):
  with tfds.testing.mock_data(num_examples=24):
    train, val, test = data.split_source(name, None, 8)
    spec = data.get_spec(name)
    assert (len(train), len(val), len(test)) == (16, 8, 24)
    batches = list(data.train_batches(train, spec, 8, seed=3, epoch=0,
                                      threads=2))
    assert len(batches) == 2
    b = batches[0]
    assert b['image'].shape == (8, size, size, 3)
    assert b['image'].dtype == np.uint8 and b['label'].dtype == np.int32
    again = next(data.train_batches(train, spec, 8, seed=3, epoch=0, threads=1))
    np.testing.assert_array_equal(again['image'], b['image'])
    other = next(data.train_batches(train, spec, 8, seed=3, epoch=1))
    assert not np.array_equal(other['image'], b['image'])
    evals = list(data.eval_batches(test, spec, 16, threads=2))
    assert [e['image'].shape[0] for e in evals] == [16, 16]
    assert sum(int(e['mask'].sum()) for e in evals) == 24
    assert not evals[-1]['mask'][-8:].any()


def test_eval_is_unaugmented_and_ordered():
  with tfds.testing.mock_data(num_examples=10):
    _, _, test = data.split_source('cifar10', None, 0)
    spec = data.get_spec('cifar10')
    batch = next(data.eval_batches(test, spec, 10, threads=1))
    for i in range(10):
      np.testing.assert_array_equal(batch['image'][i], test[i]['image'])
      assert batch['label'][i] == test[i]['label']


def test_cifar_augmentation_is_crop_and_flip():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
  from jaxprune.data import augment
  out = augment.pad_crop_flip(image, np.random.default_rng(1), 4, True)
  padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
  matches = [(t, l, f) for t in range(9) for l in range(9) for f in (0, 1)
             if np.array_equal(out, (padded[t:t + 32, l:l + 32][:, ::-1] if f
                                     else padded[t:t + 32, l:l + 32]))]
  assert matches


def test_imagenet_eval_transform_is_center_crop():
  from jaxprune.data import augment
  image = np.zeros((300, 400, 3), np.uint8)
  image[140:160, 100:120] = 255  # A marker left of centre.
  image[:20, :20] = 255  # A corner block that the crop must cut away.
  out = augment.resize_center_crop(image, 256, 224)
  assert out.shape == (224, 224, 3)
  # By hand: 300x400 -> 256x341 (scale 256/300 rows, 341/400 columns), then
  # rows 16..239 and columns 58..281. The marker's centre (149.5, 109.5)
  # lands at (150 * 256/300 - 0.5 - 16, 110 * 341/400 - 0.5 - 58).
  w = out[..., 0].astype(float)
  rows, cols = np.indices(w.shape)
  centre = ((rows * w).sum() / w.sum(), (cols * w).sum() / w.sum())
  np.testing.assert_allclose(centre, (111.5, 35.275), atol=0.3)
  assert w[:40, :].max() == 0 and w[:, 60:].max() == 0


def test_offline_digits_build_and_read(data_dir):
  train = tfds.data_source('sklearn_digits', split='train', data_dir=data_dir)
  test = tfds.data_source('sklearn_digits', split='test', data_dir=data_dir)
  assert (len(train), len(test)) == (1437, 360)
  from sklearn.datasets import load_digits
  raw = load_digits()
  # Every image is one of scikit-learn's, rescaled to 0..255.
  ex = test[0]
  scaled = np.round(raw.images * (255 / 16)).astype(np.uint8)
  idx = np.flatnonzero((scaled == ex['image'][..., 0]).all(axis=(1, 2)))
  assert idx.size >= 1 and ex['label'] in raw.target[idx]
  labels = [test[i]['label'] for i in range(len(test))]
  assert set(labels) == set(range(10))
  # Through the same pipeline as cifar10.
  tr, val, te = data.split_source('digits', data_dir, 100)
  assert (len(tr), len(val), len(te)) == (1337, 100, 360)
  b = next(data.train_batches(tr, data.get_spec('digits'), 32, 0, 0))
  assert b['image'].shape == (32, 8, 8, 1)


def test_digits32_is_digits_upsampled_to_32(data_dir):
  from PIL import Image
  _, _, te8 = data.split_source('digits', data_dir, 0)
  _, _, te32 = data.split_source('digits32', data_dir, 0)
  b8 = next(data.eval_batches(te8, data.get_spec('digits'), 4, threads=1))
  b32 = next(data.eval_batches(te32, data.get_spec('digits32'), 4, threads=1))
  assert b32['image'].shape == (4, 32, 32, 1) and b32['image'].dtype == np.uint8
  np.testing.assert_array_equal(b32['label'], b8['label'])
  for small, big in zip(b8['image'], b32['image']):  # PIL's bilinear, by hand.
    want = np.asarray(Image.fromarray(small[..., 0]).resize((32, 32),
                                                            Image.BILINEAR))
    np.testing.assert_array_equal(big[..., 0], want)
  train = next(data.train_batches(
      data.split_source('digits32', data_dir, 0)[0],
      data.get_spec('digits32'), 8, 0, 0))
  assert train['image'].shape == (8, 32, 32, 1)


def test_unprepared_dataset_says_how_to_prepare(tmp_path):
  with pytest.raises(DatasetNotPreparedError) as e:
    data.split_source('cifar10', str(tmp_path), 0)
  msg = str(e.value)
  assert "'cifar10'" in msg and 'tfds build cifar10' in msg
  assert str(tmp_path) in msg and 'array_record' in msg


def test_unknown_dataset_and_bad_split():
  with pytest.raises(JaxpruneError, match="Unknown dataset 'cifar11'.*cifar10"):
    data.get_spec('cifar11')
  with tfds.testing.mock_data(num_examples=4):
    with pytest.raises(JaxpruneError, match='validation_size=9'):
      data.split_source('cifar10', None, 9)
