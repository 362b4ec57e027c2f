"""The detection task: loss, SSD300's structure, the offline dataset, runs."""
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ONE_DEVICE, REPO, results_of
from jaxprune import coco_metrics, models
from jaxprune.tasks import detection


def test_multibox_loss_on_a_hand_made_case():
  # Image 0: six default boxes, box 0 positive (class 1), five negatives;
  # image 1: no positives at all (adds 0, but counts in the batch mean).
  a = np.array([0, 3, -1, 0, 2, -2], np.float32)  # Negatives' background logit.
  logits = np.zeros((2, 6, 3), np.float32)
  logits[0, :, 0] = a
  logits[0, 0] = [0, 1, 0]
  labels = np.zeros((2, 6), np.int32)
  labels[0, 0] = 1
  loc = np.full((2, 6, 4), 9.0, np.float32)  # Negatives' offsets: ignored.
  loc[0, 0] = [0.5, -2, 0, 0.2]
  target = np.zeros((2, 6, 4), np.float32)
  # Smooth L1 of the positive: 0.5 * 0.25 + (2 - 0.5) + 0 + 0.5 * 0.04.
  sl1 = 0.125 + 1.5 + 0.02
  ce_pos = math.log(2 + math.e) - 1
  # A negative's CE is log(1 + 2 e^-a): the three hardest of the five
  # negatives are a = -2, -1, 0 (boxes 5, 2, 3).
  ce_neg = sum(math.log(1 + 2 * math.exp(-v)) for v in (-2, -1, 0))
  want = (sl1 + ce_pos + ce_neg) / 1 / 2
  got = jax.jit(detection.multibox_loss)(loc, logits, target, labels)
  assert float(got) == pytest.approx(want, rel=1e-5)
  # neg_pos = 1: only the hardest negative (a = -2).
  one = detection.multibox_loss(loc, logits, target, labels, neg_pos=1)
  assert float(one) == pytest.approx(
      (sl1 + ce_pos + math.log(1 + 2 * math.e ** 2)) / 2, rel=1e-5)
  # Two positives: the per-image sum divides by 2, and 6 negatives are
  # wanted where 4 exist, so all are taken.
  labels2 = labels.copy()
  labels2[0, 1] = 2
  logits2 = logits.copy()
  logits2[0, 1] = [0, 0, 2]
  loc2 = loc.copy()
  loc2[0, 1] = 0
  two = detection.multibox_loss(loc2, logits2, target, labels2)
  ce2 = math.log(2 + math.e ** 2) - 2
  negs = sum(math.log(1 + 2 * math.exp(-v)) for v in (-1, 0, 2, -2))
  assert float(two) == pytest.approx((sl1 + ce_pos + ce2 + negs) / 2 / 2,
                                     rel=1e-5)
  g = jax.grad(lambda l: detection.multibox_loss(l, logits, target,
                                                 labels))(loc)
  assert np.all(np.isfinite(g)) and np.all(np.asarray(g)[1] == 0)


def test_ssd300_resnet50_shapes_and_parameter_count():
  model = models.create('ssd300_resnet50', 81)
  x = jnp.zeros((2, 300, 300, 3))
  v = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
  locs, confs = jax.eval_shape(lambda v: model.apply(v, x), v)
  assert locs.shape == (2, 8732, 4) and confs.shape == (2, 8732, 81)
  count = lambda t: sum(int(np.prod(a.shape)) for a in jax.tree.leaves(t))
  # By hand, as NVIDIA's SSD300 v1.1 (torchvision ResNet-50 layers):
  # backbone = conv1 9,408 + bn1 128 + layer1 215,808 + layer2 1,219,584
  #   + layer3 7,098,368 (torchvision's per-stage counts) = 8,543,296;
  backbone = 9408 + 128 + 215808 + 1219584 + 7098368
  assert count(v['params']['backbone']) == backbone == 8543296
  # extras: 1x1 (no bias) + BN + 3x3 (no bias) + BN per block.
  extras = sum(cin * mid + 2 * mid + 9 * mid * out + 2 * out
               for cin, mid, out in [(1024, 256, 512), (512, 256, 512),
                                     (512, 128, 256), (256, 128, 256),
                                     (256, 128, 256)])
  # heads: 3x3 convs with bias to nd * 4 and nd * 81 channels.
  heads = sum(9 * c * nd * k + nd * k
              for c, nd in zip((1024, 512, 512, 256, 256, 256),
                               (4, 6, 6, 6, 4, 4)) for k in (4, 81))
  assert extras == 3773696 and heads == 10577910
  assert count(v['params']) == backbone + extras + heads == 22894902
  # 38x38x1024 out of the backbone at 300x300.
  feats = jax.eval_shape(lambda v: models.ssd.ResNetBackbone().apply(
      {'params': v['params']['backbone'],
       'batch_stats': v['batch_stats']['backbone']}, x), v)
  assert feats.shape == (2, 38, 38, 1024)
  # MACs per 300x300 image, as the REPrune COCO config states them.
  from configs.detection import reprune_ssd300_resnet50_coco as cfg  # pylint: disable=g-import-not-at-top
  from jaxprune import flops  # pylint: disable=g-import-not-at-top
  assert flops.count(model.apply, v, x[:1]).macs == cfg.DENSE_MACS
  bb = {k: v[k]['backbone'] for k in v}
  assert flops.count(models.ssd.ResNetBackbone().apply, bb,
                     x[:1]).macs == cfg.BACKBONE_MACS


# -- the offline dataset ------------------------------------------------------
def test_offline_detection_dataset_builds_and_reads_back(tmp_path):
  from jaxprune.data import detection as data  # pylint: disable=g-import-not-at-top
  from jaxprune.data import offline  # pylint: disable=g-import-not-at-top
  spec = data.get_spec('digits_detection')
  train, val, test = data.split_source(spec, str(tmp_path), 0)
  assert val is None
  assert (len(train), len(test)) == (offline.DETECTION_SIZES['train'],
                                     offline.DETECTION_SIZES['test'])
  counts, empty = [], 0
  for i in range(0, len(test), 7):
    ex = data.read(test[i])
    assert ex['image'].shape == (64, 64, 3) and ex['image'].dtype == np.uint8
    b = ex['boxes']
    assert np.all((b >= 0) & (b <= 1)) and np.all(b[:, 2:] > b[:, :2])
    # Digits are square, 12..28 px, labels 1..10 (0 is the background).
    side = (b[:, 2:] - b[:, :2]) * 64
    assert np.allclose(side[:, 0], side[:, 1], atol=1e-4)
    assert np.all((side >= 12 - 1e-4) & (side <= 28 + 1e-4))
    assert np.all((ex['labels'] >= 1) & (ex['labels'] <= 10))
    # The pixels inside a box are brighter than the canvas noise (< 24).
    for l, t, r, btm in (b * 64).round().astype(int):
      assert ex['image'][t:btm, l:r].max() > 100
    counts.append(len(b))
    empty += not len(b)
  assert max(counts) <= offline.MAX_DIGITS and sum(counts) > len(counts)
  # Deterministic: a second build elsewhere holds the same canvases.
  again = data.split_source(spec, str(tmp_path / 'again'), 0)[2]
  for i in (0, 17, 299):
    a, b = data.read(test[i]), data.read(again[i])
    assert np.array_equal(a['image'], b['image'])
    assert np.array_equal(a['boxes'], b['boxes'])


def test_detection_batches_are_padded_and_deterministic(tmp_path):
  from jaxprune.data import detection as data  # pylint: disable=g-import-not-at-top
  spec = data.get_spec('digits_detection')
  train, _, test = data.split_source(spec, str(tmp_path), 0)
  one = next(data.train_batches(train, spec, 8, seed=3, epoch=1, threads=1))
  two = next(data.train_batches(train, spec, 8, seed=3, epoch=1, threads=2))
  for k in one:
    assert np.array_equal(one[k], two[k]), k
  assert one['image'].shape == (8, 64, 64, 3)
  assert one['boxes'].shape == (8, spec.max_boxes, 4)
  v = one['valid']
  assert np.all(one['labels'][~v] == 0) and np.all(one['labels'][v] >= 1)
  # The last eval batch is padded with masked-out blank images.
  batches = list(data.eval_batches(test, spec, 96, threads=1))
  mask = np.concatenate([b['mask'] for b in batches])
  assert len(mask) == 384 and mask.sum() == 300 and not mask[300:].any()
  index = np.concatenate([b['index'] for b in batches])
  assert np.array_equal(index[:300], np.arange(300))


def test_dataset_not_prepared_names_the_command(tmp_path):
  from jaxprune.data import detection as data  # pylint: disable=g-import-not-at-top
  from jaxprune.errors import DatasetNotPreparedError  # pylint: disable=g-import-not-at-top
  with pytest.raises(DatasetNotPreparedError,
                     match=r"'coco/2017' is not prepared.*tfds build coco/2017"):
    data.split_source(data.get_spec('coco'), str(tmp_path), 0)


# -- the COCO configs under mock data -------------------------------------------
def _fake_coco_metadata(root):
  """COCO-2017's TFDS metadata (features and splits, no records) in
  `root/coco/2017/1.1.0`, for `tfds.testing.mock_data` (USE_FILES) to
  generate examples from. The features are TFDS's `coco/2017` ones."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  class Coco(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    name = 'coco'
    VERSION = tfds.core.Version('1.1.0')
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name='2017')]

    def _info(self):
      return tfds.core.DatasetInfo(
          builder=self, features=tfds.features.FeaturesDict({
              'image': tfds.features.Image(encoding_format='jpeg'),
              'image/filename': tfds.features.Text(),
              'image/id': np.int64,
              'objects': tfds.features.Sequence({
                  'id': np.int64, 'area': np.int64,
                  'bbox': tfds.features.BBoxFeature(),
                  'label': tfds.features.ClassLabel(num_classes=80),
                  'is_crowd': np.bool_})}))

    def _split_generators(self, dl_manager):
      raise NotImplementedError

    def _generate_examples(self):
      raise NotImplementedError

  b = Coco(data_dir=str(root), file_format='array_record')
  template = lambda s: tfds.core.ShardedFileTemplate(
      data_dir=b.data_dir, template='{DATASET}-{SPLIT}.{FILEFORMAT}-'
      '{SHARD_X_OF_Y}', dataset_name='coco', split=s,
      filetype_suffix='array_record')
  b.info.set_splits(tfds.core.SplitDict([
      tfds.core.SplitInfo(name=s, shard_lengths=[n], num_bytes=0,
                          filename_template=template(s))
      for s, n in (('train', 118287), ('validation', 5000))]))
  os.makedirs(b.data_dir, exist_ok=True)
  b.info.write_to_directory(b.data_dir)
  return b.data_dir


MOCKED_COCO_MAIN = """
import sys
import tensorflow_datasets as tfds
from absl import app
from jaxprune import main
n, where = int(sys.argv.pop(1)), sys.argv.pop(1)
with tfds.testing.mock_data(num_examples=n, data_dir=where,
                            policy=tfds.testing.MockPolicy.USE_FILES):
  app.run(main.main, flags_parser=main.parse_flags)
"""


@pytest.mark.parametrize('name', ['ssd300_resnet50_coco.py',
                                  'reprune_ssd300_resnet50_coco.py'])
def test_coco_config_runs_two_steps_under_mock_data(name, tmp_path):
  where = _fake_coco_metadata(tmp_path / 'tfds')
  workdir = str(tmp_path / 'run')
  env = {**os.environ, 'XLA_FLAGS': ONE_DEVICE, 'JAX_PLATFORMS': 'cpu'}
  p = subprocess.run(
      [sys.executable, '-c', MOCKED_COCO_MAIN, '4', where,
       f'--config=configs/detection/{name}', f'--workdir={workdir}',
       f'--config.data_dir={tmp_path / "tfds"}', '--config.batch_size=2',
       '--config.eval_batch_size=2', '--config.num_epochs=1',
       '--config.data_threads=2', '--config.log_every_steps=1',
       '--config.export=False'], cwd=REPO, env=env, capture_output=True,
      text=True, timeout=1500)
  out = p.stdout + p.stderr
  assert p.returncode == 0, out[-3000:]
  assert 'epoch 1/1 step 2/2' in out, out[-3000:]
  r = results_of(workdir)
  assert r['steps'] == 2 and r['model'] == 'ssd300_resnet50'
  for key in coco_metrics.NAMES:
    assert -1 <= r[key] <= 100, (key, r[key])
  if name.startswith('reprune'):
    assert 'REPrune event at epoch 0' in out, out[-3000:]
    from configs.detection import reprune_ssd300_resnet50_coco as cfg  # pylint: disable=g-import-not-at-top
    assert r['dense_macs'] == cfg.DENSE_MACS
    # Extras and heads stay dense: only backbone MACs go, half of them.
    backbone = r['pruned_macs'] - (cfg.DENSE_MACS - cfg.BACKBONE_MACS)
    assert abs(backbone / (cfg.BACKBONE_MACS / 2) - 1) < 0.01, backbone
    assert all(not k.startswith(('extra', 'loc', 'conf')) or kept == n
               for k, (kept, n) in r['widths'].items())
  else:
    assert r['macs'] == 20_150_906_112 and r['params'] == 22_894_902


# -- REPrune on the backbone -----------------------------------------------------
def test_reprune_prunes_the_backbone_to_target_and_slims_to_the_same_detections():
  from configs.detection import default_offline, reprune_offline  # pylint: disable=g-import-not-at-top
  from jaxprune import boxes, masks as masks_lib, slim, structure  # pylint: disable=g-import-not-at-top
  from jaxprune.methods import reprune  # pylint: disable=g-import-not-at-top
  from conftest import make_method  # pylint: disable=g-import-not-at-top
  model = models.create('ssd300_resnet50', 11, **default_offline.SMALL_SSD)
  x = jax.random.uniform(jax.random.key(1), (4, 64, 64, 3))
  v = jax.jit(lambda: model.init(jax.random.key(0), x, train=False))()
  k = iter(jax.random.split(jax.random.key(2), 1000))
  # Spread BN scales (REPrune's allocation reads them) and decisive class
  # logits (well-separated scores: no near-ties in top-k or NMS).
  v = jax.tree.map(lambda a: a * jax.random.uniform(next(k), a.shape, minval=0.5,
                                                  maxval=1.5), v)
  v['params'] = {**v['params'], **{
      n: {**p, 'kernel': p['kernel'] * 30} for n, p in v['params'].items()
      if n.startswith('conf')}}
  g = structure.trace(model.apply, v, x[:1], train=False)  # Per image.
  assert g.macs({}) == reprune_offline.DENSE_MACS
  cfg = reprune_offline.get_config().reprune
  pruner = make_method('reprune', g, v['params'],
                       target_macs=cfg.target_macs, exclude=cfg.exclude)
  _, counts, _, _ = pruner._sparsity(v['params'], 'bn_gamma')
  cm, _ = reprune.select(v['params'], pruner.lays, counts, jax.random.key(3))
  cm = {n: m for n, m in cm.items()}
  pruned = [n for n, m in cm.items() if not bool(np.all(m))]
  assert pruned and all(n.startswith('backbone/') for n in pruned), pruned
  head = reprune_offline.DENSE_MACS - reprune_offline.BACKBONE_MACS
  backbone = g.macs(cm) - head
  assert abs(backbone / (reprune_offline.BACKBONE_MACS / 2) - 1) < 0.01
  masked = masks_lib.apply(v, g.param_masks(cm))
  ref = jax.jit(lambda v: model.apply(v, x, train=False))(masked)
  sv, sf = slim.slim(model.apply, v, g, cm, x[:1], train=False)
  out = jax.jit(sf)(sv, x)
  assert sum(a.size for a in jax.tree.leaves(sv)) < sum(
      a.size for a in jax.tree.leaves(v))
  for a, b in zip(out, ref):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  task_cfg = default_offline.get_config().detection
  default = boxes.DefaultBoxes(64, tuple(task_cfg.feat_sizes),
                               tuple(task_cfg.steps), tuple(task_cfg.scales),
                               tuple(task_cfg.aspect_ratios))
  detect = jax.jit(jax.vmap(lambda l, c: boxes.detect(
      l, c, default.xywh(), default.variances, 0.05, 0.5, 50, 50)))
  got, want = detect(*out), detect(*ref)
  assert int(want['valid'].sum()) > 20
  np.testing.assert_array_equal(got['valid'], want['valid'])
  np.testing.assert_array_equal(got['labels'], want['labels'])
  np.testing.assert_allclose(got['boxes'], want['boxes'], atol=1e-4)
  np.testing.assert_allclose(got['scores'], want['scores'], atol=1e-4)


def test_task_evaluation_of_perfect_outputs_is_100_map():
  """Outputs that encode the ground truth exactly score mAP 100 through
  the task's eval_metrics, combine (two batches) and finalize, with boxes
  scaled back to each image's original size; padding images are ignored."""
  from configs.detection import default_offline  # pylint: disable=g-import-not-at-top
  task = detection.Detection(default_offline.get_config())
  n, g = len(task.default), task.spec.max_boxes
  batches = []
  for b in range(2):
    gt = np.zeros((2, g, 4), np.float32)
    gt[0, :2] = [[0.1, 0.1, 0.4, 0.4], [0.5, 0.55, 0.9, 0.95]]
    gt[1, :1] = [[0.3, 0.2, 0.7, 0.6]]
    valid = np.zeros((2, g), bool)
    valid[0, :2] = valid[1, :1] = True
    labels = np.where(valid, [[1, 4] + [0] * (g - 2), [7] + [0] * (g - 1)],
                      0).astype(np.int32)
    size = np.array([[480, 640], [100, 200]], np.int32)
    area = ((gt[..., 2] - gt[..., 0]) * (gt[..., 3] - gt[..., 1]) *
            (size[:, 1] * size[:, 0])[:, None]).astype(np.float32)
    batch = {'boxes': gt, 'labels': labels, 'valid': valid,
             'crowd': np.zeros((2, g), bool), 'area': area,
             'index': np.array([2 * b, 2 * b + 1], np.int32), 'size': size,
             'mask': np.array([True, b == 0])}  # The last image: padding.
    offsets, target = task.targets(batch)
    logits = 10.0 * jax.nn.one_hot(target, task.spec.num_classes)
    batches.append(task.eval_metrics((offsets, logits), batch))
  total = task.combine(batches[0], batches[1])
  got = task.finalize(total)
  assert got['map'] == pytest.approx(100.0) and got['ap50'] == 100.0
  # A wrong class on every box: AP 0.
  offsets, target = task.targets(batch)
  wrong = 10.0 * jax.nn.one_hot(jnp.where(target > 0, 9, 0), 11)
  bad = task.finalize(task.eval_metrics((offsets, wrong), batch))
  assert bad['map'] == 0.0


@pytest.mark.parametrize('name', ['ssd300_resnet50_coco',
                                  'reprune_ssd300_resnet50_coco',
                                  'default_offline', 'reprune_offline'])
def test_detection_config_is_valid_and_its_boxes_fit_the_model(name):
  import importlib  # pylint: disable=g-import-not-at-top
  from jaxprune import config as config_lib  # pylint: disable=g-import-not-at-top
  module = importlib.import_module(f'configs.detection.{name}')
  assert 'python -m jaxprune.main' in module.__doc__
  config = module.get_config()
  config_lib.validate(config)
  task = detection.Detection(config)
  assert config.batch_size % 8 == 0 and config.eval_batch_size % 8 == 0
  model = models.create(config.model, task.num_outputs(),
                        **dict(config.model_overrides))
  x = jnp.zeros(task.input_shape())
  v = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
  locs, confs = jax.eval_shape(lambda v: model.apply(v, x), v)
  assert locs.shape == (1, len(task.default), 4)
  assert confs.shape == (1, len(task.default), task.num_outputs())
  if 'coco' in name:
    assert len(task.default) == 8732


def test_ssd_crop_keeps_boxes_consistent_with_the_pixels():
  from jaxprune.data import detection as data  # pylint: disable=g-import-not-at-top
  # A 100x200 image, black but for two white boxes.
  image = np.zeros((100, 200, 3), np.uint8)
  b = np.array([[0.1, 0.2, 0.3, 0.6], [0.6, 0.5, 0.9, 0.9]], np.float32)
  for l, t, r, btm in b:
    image[int(t * 100):int(btm * 100), int(l * 200):int(r * 200)] = 255
  ex = {'image': image, 'boxes': b, 'labels': np.array([3, 5]),
        'crowd': np.zeros(2, bool), 'area': np.ones(2, np.float32)}
  rng, cropped = np.random.default_rng(0), 0
  for _ in range(200):
    out = data.flip(data.ssd_crop(ex, rng), rng)
    bx, img = out['boxes'], out['image']
    assert len(bx) == len(out['labels']) and set(out['labels']) <= {3, 5}
    assert np.all((bx >= 0) & (bx <= 1)) and np.all(bx[:, 2:] > bx[:, :2])
    h, w = img.shape[:2]
    cropped += (h, w) != (100, 200)
    for l, t, r, btm in bx:  # Each box's centre pixel is still white.
      y, x = int((t + btm) / 2 * h), int((l + r) / 2 * w)
      assert img[min(y, h - 1), min(x, w - 1), 0] == 255
  assert cropped > 50
  empty = {**ex, 'boxes': np.zeros((0, 4), np.float32),
           'labels': np.zeros(0, int), 'crowd': np.zeros(0, bool),
           'area': np.zeros(0, np.float32)}
  assert data.ssd_crop(empty, rng)['image'].shape == (100, 200, 3)


def test_init_from_map_loads_an_imagenet_resnet50_into_the_backbone():
  """The COCO config's `init_from_map` puts every backbone array of a
  jaxprune ResNet-50 classifier (conv1..layer3) into `backbone/`; layer4
  and the classifier have no place and are not loaded."""
  from configs.detection import ssd300_resnet50_coco  # pylint: disable=g-import-not-at-top
  from jaxprune import pretrained  # pylint: disable=g-import-not-at-top
  widths = dict(stem_width=8, block_widths=((4, 4),) * 16)
  cls = models.create('resnet50', 10, stage_widths=(16, 24, 32, 40), **widths)
  det = models.create('ssd300_resnet50', 5, stage_widths=(16, 24, 32),
                      extra_widths=((8, 8),) * 5, **{
                          **widths, 'block_widths': ((4, 4),) * 13})
  x = jnp.zeros((1, 64, 64, 3))
  cv = cls.init(jax.random.key(0), x)
  dv = det.init(jax.random.key(1), jnp.zeros((1, 300, 300, 3)))
  k = iter(range(10 ** 6))
  source = {n: np.full(a.shape, next(k), np.float32) for n, a in
            pretrained._flatten(cv).items()}
  new, loaded, left = pretrained.load_into(
      dv, source, ssd300_resnet50_coco.get_config().init_from_map)
  backbone = [n for n in pretrained._flatten(dv) if '/backbone/' in n]
  assert sorted(loaded) == sorted(backbone) and len(backbone) > 100
  assert not any('/backbone/' in n for n in left)
  flat = pretrained._flatten(new)
  for n in backbone:  # The value of the classifier's array of that name.
    src = n.replace('backbone/', '')
    np.testing.assert_array_equal(flat[n], source[src])
