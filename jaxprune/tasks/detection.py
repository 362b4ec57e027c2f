"""Single-shot detection: MultiBox loss, per-class NMS and COCO mAP.

Data: `config.dataset` in `jaxprune.data.detection` (COCO-2017 or the
offline `digits_detection`), images as uint8, ground truth padded to a
fixed count. Targets are matched and encoded on the device inside the
jitted step (`jaxprune.boxes.match`, vmapped over the batch), so the
host pipeline only augments.

Loss (SSD, Liu et al. 2016, as NVIDIA's SSD300 v1.1): per image, smooth
L1 over the positives' four offsets plus cross-entropy over the positives
and the 3 x #positives hardest negatives, divided by #positives; images
without positives add 0; the batch mean.

Evaluation: `eval_metrics` decodes and suppresses on the device
(`jaxprune.boxes.detect`, fixed size), `combine` gathers the detections
and ground truth on the host, `finalize` runs pycocotools
(`jaxprune.coco_metrics`): `map`, `ap50`, `ap75`, `ap_small`,
`ap_medium`, `ap_large`, in percent.

The engine and the methods learn nothing about boxes: the model's output
pair and the batch's extra fields stay inside this task.
"""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxprune import boxes, coco_metrics
from jaxprune.data import detection as data
from jaxprune.errors import JaxpruneError
from jaxprune.tasks import base


def defaults() -> ml_collections.ConfigDict:
  """The detection task's settings (`config.detection`), SSD300's."""
  c = ml_collections.ConfigDict()
  c.feat_sizes = (38, 19, 10, 5, 3, 1)  # Side of each detection feature map.
  c.steps = (8, 16, 32, 64, 100, 300)  # Pixels between default-box centres per map.
  c.scales = (21, 45, 99, 153, 207, 261, 315)  # Default-box scales in pixels (one more than maps).
  c.aspect_ratios = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))  # Extra box ratios per map.
  c.variances = (0.1, 0.2)  # Target encoding's centre and size scales.
  c.match_iou = 0.5  # IoU of a positive default box.
  c.neg_pos = 3  # Hard negatives per positive in the class loss.
  c.score_threshold = 0.05  # Lowest score a detection keeps.
  c.nms_iou = 0.5  # Per-class NMS IoU.
  c.candidates = 200  # Boxes per class into NMS.
  c.max_detections = 200  # Detections per image.
  return c


def multibox_loss(locations, logits, target_offsets, target_labels,
                  neg_pos: int = 3):
  """SSD's loss, averaged over the batch.

  Args:
    locations: float [B, N, 4] predicted offsets.
    logits: float [B, N, C] class logits (class 0 the background).
    target_offsets: float [B, N, 4] encoded matched boxes.
    target_labels: int [B, N], 0 on negatives.
    neg_pos: hard negatives per positive.

  Returns:
    The scalar loss.
  """
  pos = target_labels > 0
  n_pos = pos.sum(axis=1)
  sl1 = optax.huber_loss(locations.astype(jnp.float32),
                         target_offsets).sum(-1)  # delta 1 = smooth L1.
  loc = jnp.sum(jnp.where(pos, sl1, 0.0), axis=1)
  ce = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), target_labels)
  # Hard negative mining: rank the negatives' losses (positives never
  # ranked), keep the 3 n_pos highest.
  neg_loss = jnp.where(pos, -jnp.inf, ce)
  order = jnp.argsort(-neg_loss, axis=1, stable=True)
  rank = jnp.argsort(order, axis=1)
  neg = (rank < jnp.minimum(neg_pos * n_pos, pos.shape[1])[:, None]) & ~pos
  conf = jnp.sum(jnp.where(pos | neg, ce, 0.0), axis=1)
  per_image = jnp.where(n_pos > 0, (loc + conf) / jnp.maximum(n_pos, 1), 0.0)
  return per_image.mean()


@base.register
class Detection(base.Task):
  """SSD-style detection on `config.dataset`."""

  name = 'detection'
  selection = 'map'
  config_name = 'detection'

  @classmethod
  def defaults(cls):
    return defaults()

  def __init__(self, config):
    super().__init__(config)
    self.spec = data.get_spec(config.dataset)
    d = config.detection
    self.default = boxes.DefaultBoxes(
        self.spec.image_size, tuple(d.feat_sizes), tuple(d.steps),
        tuple(d.scales), tuple(tuple(a) for a in d.aspect_ratios),
        tuple(d.variances))
    self.default_xywh = self.default.xywh()
    self.default_ltrb = self.default.ltrb()
    if not 0 < d.match_iou <= 1 or d.neg_pos < 0:
      raise JaxpruneError(f'detection.match_iou={d.match_iou}, '
                          f'detection.neg_pos={d.neg_pos}; allowed: 0 < '
                          'match_iou <= 1 and neg_pos >= 0.')

  # -- data -----------------------------------------------------------------
  def splits(self):
    return data.split_source(self.spec, self.config.data_dir,
                             self.config.validation_size)

  def input_shape(self):
    return (1, self.spec.image_size, self.spec.image_size, 3)

  def num_outputs(self):
    return self.spec.num_classes

  def train_batches(self, source, batch_size, seed, epoch):
    return data.train_batches(source, self.spec, batch_size, seed, epoch,
                              self.config.data_threads)

  def eval_batches(self, source, batch_size):
    return data.eval_batches(source, self.spec, batch_size,
                             self.config.data_threads)

  def inputs(self, batch, dtype):
    x = batch['image'].astype(jnp.float32) / 255.0
    x = (x - jnp.asarray(self.spec.mean)) / jnp.asarray(self.spec.std)
    return x.astype(dtype)

  # -- on device ------------------------------------------------------------
  def _check(self, locations):
    if locations.shape[1] != len(self.default):
      raise JaxpruneError(
          f'The model predicts {locations.shape[1]} boxes per image but the '
          f'default boxes (config.detection) number {len(self.default)}; '
          'set feat_sizes, steps, scales and aspect_ratios to the model\'s '
          'feature maps.')

  def targets(self, batch):
    """(offsets [B, N, 4], labels [B, N]) of a batch's ground truth."""
    d = self.config.detection
    match = jax.vmap(lambda b, l, v: boxes.match(
        b, l, v, self.default_ltrb, d.match_iou))
    matched, labels = match(batch['boxes'], batch['labels'], batch['valid'])
    return boxes.encode(matched, self.default_xywh, self.default.variances), \
        labels

  def loss(self, outputs, batch, train=True):
    del train
    locations, logits = outputs
    self._check(locations)
    offsets, labels = self.targets(batch)
    return multibox_loss(locations, logits, offsets, labels,
                         self.config.detection.neg_pos)

  def train_metrics(self, outputs, batch):
    _, labels = self.targets(batch)
    return {'positives': jnp.sum(labels > 0)}

  def train_log(self, sums, examples):
    return {'positives_per_image': float(sums['positives']) / max(examples, 1)}

  def eval_metrics(self, outputs, batch):
    locations, logits = outputs
    self._check(locations)
    d = self.config.detection
    det = jax.vmap(lambda l, c: boxes.detect(
        l, c, self.default_xywh, self.default.variances, d.score_threshold,
        d.nms_iou, d.candidates, d.max_detections))(locations, logits)
    keys = ('boxes', 'labels', 'valid', 'crowd', 'area', 'index', 'size',
            'mask')
    return {'det': det, 'gt': {k: batch[k] for k in keys}}

  def combine(self, a, b):
    """Host lists of every batch's detections and ground truth."""
    first = a if isinstance(a, list) else [_host(a)]
    return first + [_host(b)]

  def finalize(self, total):
    parts = total if isinstance(total, list) else [_host(total)]
    cat = lambda get: np.concatenate([get(p) for p in parts])
    det = {k: cat(lambda p, k=k: p['det'][k]) for k in parts[0]['det']}
    gt = {k: cat(lambda p, k=k: p['gt'][k]) for k in parts[0]['gt']}
    images, ground_truth, detections = [], [], []
    for i in np.flatnonzero(gt['mask']):
      h, w = (float(v) for v in gt['size'][i])
      scale = np.array([w, h, w, h], np.float64)
      image_id = int(gt['index'][i])
      images.append({'id': image_id, 'width': w, 'height': h})
      for j in np.flatnonzero(gt['valid'][i]):
        ground_truth.append({
            'image_id': image_id, 'bbox': gt['boxes'][i, j] * scale,
            'category_id': int(gt['labels'][i, j]),
            'area': float(gt['area'][i, j]),
            'iscrowd': int(gt['crowd'][i, j])})
      for j in np.flatnonzero(det['valid'][i]):
        detections.append({
            'image_id': image_id,
            'bbox': np.clip(det['boxes'][i, j], 0, 1) * scale,
            'category_id': int(det['labels'][i, j]),
            'score': float(det['scores'][i, j])})
    return coco_metrics.evaluate(images, ground_truth, detections)


def _host(tree):
  """Numpy copies of (possibly multi-process sharded) arrays."""
  if all(getattr(x, 'is_fully_addressable', True)
         for x in jax.tree.leaves(tree)):
    return jax.device_get(tree)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return multihost_utils.process_allgather(tree, tiled=True)
