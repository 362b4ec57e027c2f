"""Boxes for single-shot detection: default boxes, IoU, matching, encoding,
decoding and non-maximum suppression.

Conventions: boxes are relative to the image (0..1); `ltrb` is (left, top,
right, bottom) and `xywh` is (centre x, centre y, width, height). Every
function is a pure jnp function of fixed shapes (ground truth is padded
to a fixed count with a `valid` mask), so it jits, vmaps over a batch and
runs on the host (numpy inputs) or in a train step alike.

The default boxes and the target encoding follow SSD (Liu et al., ECCV
2016) as set up for COCO in NVIDIA DeepLearningExamples' PyTorch SSD300
v1.1 (`dboxes300_coco`): 8732 boxes at scales 21...315 on maps of 38, 19,
10, 5, 3 and 1 with steps 8...300, ordered map by map, then box size, then
row, then column.
"""
import dataclasses
import itertools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune.errors import JaxpruneError


@dataclasses.dataclass(frozen=True)
class DefaultBoxes:
  """The default (anchor) boxes of an SSD.

  Attributes:
    fig_size: input image size in pixels (square).
    feat_sizes: the side of each feature map.
    steps: pixels between box centres on each map.
    scales: len(feat_sizes) + 1 box scales in pixels; map k's boxes have
      sides scales[k] and sqrt(scales[k] * scales[k + 1]).
    aspect_ratios: per map, the ratios a; each adds a box of sides
      (s sqrt(a), s / sqrt(a)) and its transpose, s = scales[k].
    variances: (centre, size) scales of the target encoding.
  """
  fig_size: int = 300
  feat_sizes: Sequence[int] = (38, 19, 10, 5, 3, 1)
  steps: Sequence[int] = (8, 16, 32, 64, 100, 300)
  scales: Sequence[float] = (21, 45, 99, 153, 207, 261, 315)
  aspect_ratios: Sequence[Sequence[float]] = ((2,), (2, 3), (2, 3), (2, 3),
                                              (2,), (2,))
  variances: tuple[float, float] = (0.1, 0.2)

  def __post_init__(self):
    n = len(self.feat_sizes)
    if (len(self.steps), len(self.aspect_ratios), len(self.scales)) != (
        n, n, n + 1):
      raise JaxpruneError(
          f'DefaultBoxes: {n} feature maps need {n} steps, {n} aspect-ratio '
          f'lists and {n + 1} scales; got {len(self.steps)}, '
          f'{len(self.aspect_ratios)} and {len(self.scales)}.')

  @property
  def per_location(self) -> tuple[int, ...]:
    """Boxes per location of each map (4, 6, 6, 6, 4, 4 for SSD300)."""
    return tuple(2 + 2 * len(a) for a in self.aspect_ratios)

  def __len__(self) -> int:
    return sum(f * f * n for f, n in zip(self.feat_sizes, self.per_location))

  def xywh(self) -> np.ndarray:
    """float32 [len(self), 4] (centre x, centre y, w, h), clipped to 0..1."""
    out = []
    for k, f in enumerate(self.feat_sizes):
      s1 = self.scales[k] / self.fig_size
      s2 = self.scales[k + 1] / self.fig_size
      sizes = [(s1, s1), (math.sqrt(s1 * s2),) * 2]
      for a in self.aspect_ratios[k]:
        w, h = s1 * math.sqrt(a), s1 / math.sqrt(a)
        sizes += [(w, h), (h, w)]
      fk = self.fig_size / self.steps[k]
      for w, h in sizes:  # Box size, then row i, then column j.
        for i, j in itertools.product(range(f), repeat=2):
          out.append(((j + 0.5) / fk, (i + 0.5) / fk, w, h))
    return np.clip(np.asarray(out, np.float32), 0.0, 1.0)

  def ltrb(self) -> np.ndarray:
    """float32 [len(self), 4] (left, top, right, bottom) of `xywh()`."""
    return xywh_to_ltrb(self.xywh())


def ssd300() -> DefaultBoxes:
  """The 8732 default boxes of SSD300 on COCO (`dboxes300_coco`)."""
  return DefaultBoxes()


def xywh_to_ltrb(b):
  xp = jnp if isinstance(b, jax.Array) else np
  return xp.concatenate([b[..., :2] - b[..., 2:] / 2,
                         b[..., :2] + b[..., 2:] / 2], axis=-1)


def ltrb_to_xywh(b):
  xp = jnp if isinstance(b, jax.Array) else np
  return xp.concatenate([(b[..., :2] + b[..., 2:]) / 2,
                         b[..., 2:] - b[..., :2]], axis=-1)


def iou(a: jax.Array, b: jax.Array) -> jax.Array:
  """Pairwise IoU of ltrb boxes: a [..., N, 4], b [..., M, 4] -> [..., N, M].

  Empty or inverted boxes have area 0; a pair of zero union gets IoU 0.
  """
  a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  lt = jnp.maximum(a[..., :, None, :2], b[..., None, :, :2])
  rb = jnp.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
  inter = jnp.prod(jnp.clip(rb - lt, 0), axis=-1)
  area = lambda x: jnp.prod(jnp.clip(x[..., 2:] - x[..., :2], 0), axis=-1)
  union = area(a)[..., :, None] + area(b)[..., None, :] - inter
  return jnp.where(union > 0, inter / jnp.where(union > 0, union, 1), 0.0)


def match(gt_ltrb: jax.Array, gt_labels: jax.Array, gt_valid: jax.Array,
          default_ltrb: jax.Array, threshold: float = 0.5
          ) -> tuple[jax.Array, jax.Array]:
  """Assigns ground truth to default boxes (SSD's matching, one image).

  Each default box takes the ground-truth box it overlaps most; it is a
  positive when that IoU is >= `threshold`. Each valid ground-truth box
  also claims its own best default box whatever the IoU (when two claim
  the same one, the later wins, as in the reference).

  Args:
    gt_ltrb: float [G, 4], padded.
    gt_labels: int [G], classes 1..C-1 (0 is the background).
    gt_valid: bool [G], False on padding.
    default_ltrb: float [N, 4].
    threshold: the IoU of a positive.

  Returns:
    (boxes [N, 4] ltrb: the matched ground truth, or the default box itself
    on negatives; labels int32 [N]: the matched class, 0 on negatives).
  """
  g = gt_ltrb.shape[0]
  if g == 0:  # No ground truth at all: every default box is background.
    return (jnp.asarray(default_ltrb, jnp.float32),
            jnp.zeros(default_ltrb.shape[0], jnp.int32))
  ious = jnp.where(gt_valid[:, None], iou(gt_ltrb, default_ltrb), -1.0)
  best_gt = jnp.argmax(ious, axis=0)  # [N]
  best_iou = jnp.max(ious, axis=0)
  best_default = jnp.argmax(ious, axis=1)  # [G]
  # Forced matches: a scatter-max of the gt index gives "the later wins".
  n = default_ltrb.shape[0]
  claim = jnp.full((n,), -1, jnp.int32).at[best_default].max(
      jnp.where(gt_valid, jnp.arange(g, dtype=jnp.int32), -1))
  forced = claim >= 0
  best_gt = jnp.where(forced, claim, best_gt)
  positive = forced | (best_iou >= threshold)
  labels = jnp.where(positive, jnp.asarray(gt_labels, jnp.int32)[best_gt], 0)
  boxes = jnp.where(positive[:, None], jnp.asarray(gt_ltrb, jnp.float32)[
      best_gt], jnp.asarray(default_ltrb, jnp.float32))
  return boxes, labels


def match_host(gt_ltrb: np.ndarray, gt_labels: np.ndarray,
               default_ltrb: np.ndarray, threshold: float = 0.5
               ) -> tuple[np.ndarray, np.ndarray]:
  """`match` in numpy on one image's unpadded ground truth, for encoding
  on the host in an input pipeline (`benchmarks/detection_encoding.py`
  measures it against matching on the device, which the detection task
  does). Same rule and result as `match` with every box valid."""
  gt_ltrb = np.asarray(gt_ltrb, np.float32).reshape(-1, 4)
  default_ltrb = np.asarray(default_ltrb, np.float32)
  n, g = default_ltrb.shape[0], gt_ltrb.shape[0]
  if g == 0:
    return default_ltrb.copy(), np.zeros(n, np.int32)
  lt = np.maximum(gt_ltrb[:, None, :2], default_ltrb[None, :, :2])
  rb = np.minimum(gt_ltrb[:, None, 2:], default_ltrb[None, :, 2:])
  inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
  area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=-1)
  union = area(gt_ltrb)[:, None] + area(default_ltrb)[None, :] - inter
  ious = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
  best_gt, best_iou = ious.argmax(0), ious.max(0)
  best_default = ious.argmax(1)
  best_gt[best_default] = np.arange(g)  # Later ground truth wins.
  positive = best_iou >= threshold
  positive[best_default] = True
  labels = np.where(positive, np.asarray(gt_labels, np.int32)[best_gt], 0)
  boxes = np.where(positive[:, None], gt_ltrb[best_gt], default_ltrb)
  return boxes.astype(np.float32), labels.astype(np.int32)


def encode(ltrb: jax.Array, default_xywh: jax.Array,
           variances: tuple[float, float] = (0.1, 0.2)) -> jax.Array:
  """Regression targets of ltrb boxes against their default boxes:
  ((c - c_d) / w_d / v0, log(w / w_d) / v1), [..., N, 4]."""
  xp = np if isinstance(ltrb, np.ndarray) else jnp  # numpy stays on host.
  b = ltrb_to_xywh(xp.asarray(ltrb, xp.float32))
  d = xp.asarray(default_xywh, xp.float32)
  return xp.concatenate(
      [(b[..., :2] - d[..., :2]) / d[..., 2:] / variances[0],
       xp.log(xp.maximum(b[..., 2:], 1e-12) / d[..., 2:]) / variances[1]],
      axis=-1)


def decode(offsets: jax.Array, default_xywh: jax.Array,
           variances: tuple[float, float] = (0.1, 0.2)) -> jax.Array:
  """The ltrb boxes of regression offsets (the inverse of `encode`)."""
  o = jnp.asarray(offsets, jnp.float32)
  d = jnp.asarray(default_xywh, jnp.float32)
  xy = o[..., :2] * variances[0] * d[..., 2:] + d[..., :2]
  wh = jnp.exp(o[..., 2:] * variances[1]) * d[..., 2:]
  return xywh_to_ltrb(jnp.concatenate([xy, wh], axis=-1))


def nms(boxes: jax.Array, scores: jax.Array, valid: jax.Array,
        iou_threshold: float = 0.5) -> jax.Array:
  """Greedy non-maximum suppression with a fixed size.

  Candidates are visited by falling score (ties: lower index first); one
  is kept unless a kept candidate overlaps it with IoU >= `iou_threshold`.

  Args:
    boxes: float [K, 4] ltrb.
    scores: float [K].
    valid: bool [K]; invalid candidates are never kept.
    iou_threshold: the suppression IoU.

  Returns:
    bool [K]: the kept candidates, in the input order.
  """
  k = boxes.shape[0]
  order = jnp.argsort(-scores, stable=True)
  overlap = iou(boxes[order], boxes[order]) >= iou_threshold
  ok = valid[order]

  def visit(i, keep):
    suppressed = jnp.any(keep & overlap[i] & (jnp.arange(k) < i))
    return keep.at[i].set(ok[i] & ~suppressed)

  keep = jax.lax.fori_loop(0, k, visit, jnp.zeros(k, bool))
  return jnp.zeros(k, bool).at[order].set(keep)


def detect(locations: jax.Array, logits: jax.Array, default_xywh: jax.Array,
           variances: tuple[float, float] = (0.1, 0.2),
           score_threshold: float = 0.05, iou_threshold: float = 0.5,
           candidates: int = 200, max_detections: int = 200
           ) -> dict[str, jax.Array]:
  """Decodes one image's outputs and runs per-class NMS, fixed size.

  As SSD's inference: softmax scores; per foreground class, the
  `candidates` highest-scoring boxes above `score_threshold`, suppressed
  by `nms`; then the `max_detections` best over all classes.

  Args:
    locations: float [N, 4] regression offsets.
    logits: float [N, C] class logits, class 0 the background.
    default_xywh: float [N, 4].
    variances: the encoding's variances.
    score_threshold: the lowest score kept.
    iou_threshold: NMS's IoU.
    candidates: boxes per class going into NMS.
    max_detections: detections returned.

  Returns:
    {'boxes': [D, 4] ltrb, 'scores': [D], 'labels': int32 [D], 'valid':
    bool [D]}, D = max_detections, by falling score; padding has valid
    False and score 0.
  """
  boxes = decode(locations, default_xywh, variances)
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)[:, 1:].T
  k = min(candidates, boxes.shape[0])

  def one_class(p):
    s, i = jax.lax.top_k(p, k)
    ok = s > score_threshold
    kept = nms(boxes[i], s, ok, iou_threshold)
    return boxes[i], jnp.where(kept, s, -1.0)

  cls_boxes, cls_scores = jax.vmap(one_class)(probs)  # [C-1, k, ...]
  labels = jnp.broadcast_to(jnp.arange(1, probs.shape[0] + 1)[:, None],
                            cls_scores.shape)
  flat = cls_scores.reshape(-1)
  d = min(max_detections, flat.shape[0])
  s, i = jax.lax.top_k(flat, d)
  valid = s > 0
  out = {'boxes': jnp.where(valid[:, None], cls_boxes.reshape(-1, 4)[i], 0.0),
         'scores': jnp.where(valid, s, 0.0),
         'labels': jnp.where(valid, labels.reshape(-1)[i], 0).astype(jnp.int32),
         'valid': valid}
  if d < max_detections:
    out = jax.tree.map(lambda a: jnp.pad(
        a, [(0, max_detections - d)] + [(0, 0)] * (a.ndim - 1)), out)
  return out
