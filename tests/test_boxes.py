"""Default boxes, IoU, matching, encoding and NMS (jaxprune.boxes)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import boxes
from jaxprune.errors import JaxpruneError


def test_ssd300_has_8732_default_boxes_at_the_reference_scales():
  d = boxes.ssd300()
  xywh = d.xywh()
  assert len(d) == xywh.shape[0] == 8732
  assert d.per_location == (4, 6, 6, 6, 4, 4)
  # Map by map: 38^2*4, 19^2*6, 10^2*6, 5^2*6, 3^2*4, 1*4.
  sizes = [5776, 2166, 600, 150, 36, 4]
  starts = np.cumsum([0] + sizes)
  assert starts[-1] == 8732
  # The first map: box sizes 21/300, sqrt(21*45)/300, then a=2 and its
  # transpose; 38*38 centres each, row-major, at (j + .5) * 8 / 300.
  m0 = xywh[:5776].reshape(4, 38, 38, 4)
  s1, s2 = 21 / 300, math.sqrt(21 * 45) / 300
  np.testing.assert_allclose(m0[:, 5, 7, 2:], [
      [s1, s1], [s2, s2], [s1 * math.sqrt(2), s1 / math.sqrt(2)],
      [s1 / math.sqrt(2), s1 * math.sqrt(2)]], rtol=1e-6)
  np.testing.assert_allclose(m0[0, 5, 7, :2], [7.5 * 8 / 300, 5.5 * 8 / 300],
                             rtol=1e-6)
  # The last map: one location at the centre; its a=2 box is
  # 261 sqrt(2) / 300 > 1 wide, so clipped to 1.
  np.testing.assert_allclose(xywh[-4:, :2], 0.5)
  np.testing.assert_allclose(xywh[-4, 2:], 261 / 300, rtol=1e-6)
  np.testing.assert_allclose(xywh[-3, 2:], math.sqrt(261 * 315) / 300,
                             rtol=1e-6)
  np.testing.assert_allclose(xywh[-2, 2:], [1.0, 261 / 300 / math.sqrt(2)],
                             rtol=1e-6)
  # The third map's a=3 boxes: s * sqrt(3) wide.
  m2 = xywh[starts[2]:starts[3]].reshape(6, 10, 10, 4)
  np.testing.assert_allclose(m2[4, 0, 0, 2:], [99 / 300 * math.sqrt(3),
                                               99 / 300 / math.sqrt(3)],
                             rtol=1e-6)
  np.testing.assert_allclose(d.ltrb(), boxes.xywh_to_ltrb(xywh))
  assert xywh.min() >= 0 and xywh.max() <= 1


def test_bad_default_box_spec_is_refused():
  with pytest.raises(JaxpruneError, match='need 2 steps'):
    boxes.DefaultBoxes(feat_sizes=(4, 2), steps=(8,), scales=(1, 2, 3),
                       aspect_ratios=((2,), (2,)))


def test_encode_then_decode_returns_the_boxes():
  d = boxes.ssd300().xywh()
  rng = np.random.default_rng(0)
  lt = rng.uniform(0, 0.7, (8732, 2))
  ltrb = np.concatenate([lt, lt + rng.uniform(0.01, 0.3, (8732, 2))], -1)
  enc = boxes.encode(ltrb, d)
  np.testing.assert_allclose(boxes.decode(enc, d), ltrb, atol=1e-5)
  # A default box encodes to zero offsets.
  np.testing.assert_allclose(boxes.encode(boxes.xywh_to_ltrb(d), d), 0,
                             atol=1e-4)
  # By hand: centre 0.1 right of a 0.2-wide default box, twice its width.
  one = boxes.encode(np.array([[0.3, 0.4, 0.7, 0.6]]),
                     np.array([[0.4, 0.5, 0.2, 0.2]]))
  np.testing.assert_allclose(one, [[0.1 / 0.2 / 0.1, 0.0,
                                    math.log(2) / 0.2, 0.0]], atol=1e-6)


def test_iou_by_hand():
  a = np.array([[0, 0, 2, 2], [0, 0, 1, 1]], np.float32)
  b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 5, 5]], np.float32)
  np.testing.assert_allclose(boxes.iou(a, b), [[1 / 7, 1, 0],
                                               [0, 0.25, 0]], rtol=1e-6)


def test_matching_on_a_hand_made_case():
  # Four default boxes, two ground-truth boxes and one padding row.
  default = np.array([[0.0, 0.0, 0.5, 0.5],    # IoU .64 with gt 0.
                      [0.1, 0.1, 0.5, 0.5],    # IoU 1 with gt 0.
                      [0.5, 0.5, 1.0, 1.0],    # IoU 0.36 with gt 1 only.
                      [0.0, 0.6, 0.2, 0.8]],   # No overlap.
                     np.float32)
  gt = np.array([[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9],
                 [0.0, 0.6, 0.2, 0.8]], np.float32)
  labels = np.array([3, 7, 9])
  valid = np.array([True, True, False])  # The padding would match box 3.
  out_boxes, out_labels = boxes.match(gt, labels, valid, default)
  # Box 0: IoU 0.64 >= 0.5 -> gt 0; box 1: gt 0's best; box 2: IoU 0.36
  # < 0.5 but it is gt 1's best, so forced; box 3: background.
  np.testing.assert_array_equal(out_labels, [3, 3, 7, 0])
  np.testing.assert_allclose(out_boxes, [gt[0], gt[0], gt[1], default[3]])
  # Threshold 0.7: box 0 drops to background, the forced ones stay.
  np.testing.assert_array_equal(
      boxes.match(gt, labels, valid, default, threshold=0.7)[1], [0, 3, 7, 0])
  # Two gts whose best default box is the same: the later one wins it.
  twin = np.array([[0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.52]], np.float32)
  np.testing.assert_array_equal(
      boxes.match(twin, np.array([1, 2]), np.array([True, True]),
                  default)[1][1], 2)
  # No valid ground truth: all background.
  np.testing.assert_array_equal(
      boxes.match(gt, labels, np.zeros(3, bool), default)[1], 0)


@pytest.mark.parametrize('seed', range(4))
def test_host_matching_equals_device_matching(seed):
  rng = np.random.default_rng(seed)
  default = boxes.ssd300().ltrb()
  g = int(rng.integers(0, 12))
  lt = rng.uniform(0, 0.8, (g, 2))
  gt = np.concatenate([lt, lt + rng.uniform(0.02, 0.5, (g, 2))], 1).astype(
      np.float32)
  if g > 2:
    gt[2] = gt[1] + np.float32(0.001)  # Near twins share a best default box.
  labels = rng.integers(1, 81, g)
  host_boxes, host_labels = boxes.match_host(gt, labels, default)
  pad = 16 - g  # The device version sees padded ground truth.
  padded = np.concatenate([gt, rng.uniform(0, 1, (pad, 4)).astype(np.float32)])
  valid = np.arange(16) < g
  dev_boxes, dev_labels = jax.jit(boxes.match)(
      padded, np.concatenate([labels, np.ones(pad, int)]), valid, default)
  np.testing.assert_array_equal(host_labels, dev_labels)
  np.testing.assert_allclose(host_boxes, dev_boxes, atol=1e-6)
  # Every gt claims a default box (a near twin may lose its own to the other).
  assert (host_labels > 0).sum() >= g - (g > 2)
  np.testing.assert_allclose(
      boxes.encode(host_boxes, boxes.ssd300().xywh()),
      boxes.encode(jnp.asarray(dev_boxes), boxes.ssd300().xywh()), atol=1e-5)


def _nms_reference(b, s, valid, thr):
  """Straightforward greedy NMS in numpy."""
  order = sorted((i for i in range(len(s)) if valid[i]),
                 key=lambda i: (-s[i], i))
  kept = []
  for i in order:
    if all(_iou_np(b[i], b[j]) < thr for j in kept):
      kept.append(i)
  return sorted(kept)


def _iou_np(p, q):
  w = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
  h = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
  inter = w * h
  union = ((p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1])
           - inter)
  return inter / union if union > 0 else 0.0


@pytest.mark.parametrize('seed', range(6))
def test_nms_matches_a_numpy_reference(seed):
  rng = np.random.default_rng(seed)
  k = 60
  lt = rng.uniform(0, 0.6, (k, 2))
  b = np.concatenate([lt, lt + rng.uniform(0.05, 0.4, (k, 2))],
                     -1).astype(np.float32)
  s = rng.uniform(size=k).astype(np.float32)
  s[:5] = s[5]  # Ties: the lower index goes first.
  valid = rng.uniform(size=k) > 0.2
  for thr in (0.3, 0.5):
    kept = jax.jit(boxes.nms, static_argnums=3)(b, s, valid, thr)
    assert list(np.flatnonzero(kept)) == _nms_reference(b, s, valid, thr)


def test_detect_is_fixed_size_and_suppresses_per_class():
  d = np.array([[0.5, 0.5, 0.2, 0.2], [0.52, 0.5, 0.2, 0.2],
                [0.2, 0.2, 0.1, 0.1]], np.float32)
  # Boxes 0 and 1 overlap (IoU ~0.82); all offsets zero.
  logits = np.log(np.array([[0.1, 0.8, 0.1], [0.2, 0.7, 0.1],
                            [0.1, 0.1, 0.8]], np.float32))
  out = jax.jit(boxes.detect, static_argnames='max_detections')(
      jnp.zeros((3, 4)), logits, d, max_detections=5)
  assert out['boxes'].shape == (5, 4) and out['valid'].shape == (5,)
  got = sorted((int(l), round(float(s), 4)) for l, s, v in zip(
      out['labels'], out['scores'], out['valid']) if v)
  # Class 1: box 0 (0.8) kept, box 1 (0.7) suppressed by it, box 2 (0.1)
  # kept (no overlap). Class 2: box 2 (0.8) kept; boxes 0 and 1 tie at
  # 0.1, so box 0 goes first and suppresses box 1.
  assert (1, 0.8) in got and (2, 0.8) in got and (1, 0.7) not in got
  assert got == [(1, 0.1), (1, 0.8), (2, 0.1), (2, 0.8)]
  assert np.all(np.diff(np.asarray(out['scores'])) <= 0)


def test_coco_map_by_hand():
  from jaxprune import coco_metrics  # pylint: disable=g-import-not-at-top
  images = [{'id': 1, 'width': 200, 'height': 200},
            {'id': 2, 'width': 200, 'height': 200}]
  gt = [{'image_id': i, 'bbox': (0, 0, 100, 100), 'category_id': 1,
         'area': 10000.0, 'iscrowd': 0} for i in (1, 2)]
  miss = {'image_id': 2, 'bbox': (150, 150, 190, 190), 'category_id': 1,
          'score': 0.8}
  # An exact hit (0.9) and a miss (0.8): precision 1 up to recall 0.5 and
  # then none, so each IoU threshold's 101-point AP is 51/101.
  hit = {'image_id': 1, 'bbox': (0, 0, 100, 100), 'category_id': 1,
         'score': 0.9}
  r = coco_metrics.evaluate(images, gt, [hit, miss])
  assert r['map'] == pytest.approx(100 * 51 / 101, abs=1e-6)
  assert r['ap50'] == r['ap75'] == pytest.approx(100 * 51 / 101, abs=1e-6)
  # Areas of 10000 > 96^2 are large; no small or medium ground truth.
  assert r['ap_large'] == pytest.approx(r['map'])
  assert r['ap_small'] == r['ap_medium'] == -1
  # The hit at IoU 0.62 counts at thresholds .5, .55 and .6 only.
  near = dict(hit, bbox=(0, 0, 100, 62))
  r = coco_metrics.evaluate(images, gt, [near, miss])
  assert r['map'] == pytest.approx(100 * 0.3 * 51 / 101, abs=1e-6)
  assert r['ap50'] == pytest.approx(100 * 51 / 101, abs=1e-6)
  assert r['ap75'] == 0
  assert coco_metrics.evaluate(images, gt, [])['map'] == 0
  with pytest.raises(JaxpruneError, match='no ground truth'):
    coco_metrics.evaluate(images, [], [hit])
