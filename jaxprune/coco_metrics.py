"""COCO detection metrics through pycocotools (the standard evaluator).

`evaluate` takes ground truth and detections in pixels, builds the two
COCO objects in memory and runs `COCOeval` (bbox): mAP@[.5:.95], AP50,
AP75 and AP for small, medium and large objects, in percent, as in
seed 000's Table 4.
"""
import contextlib
import io
from typing import Sequence

import numpy as np

from jaxprune.errors import JaxpruneError

NAMES = ('map', 'ap50', 'ap75', 'ap_small', 'ap_medium', 'ap_large')


def evaluate(images: Sequence[dict], ground_truth: Sequence[dict],
             detections: Sequence[dict]) -> dict[str, float]:
  """COCO box AP of `detections` against `ground_truth`.

  Args:
    images: {'id': int, 'width': float, 'height': float} per image.
    ground_truth: {'image_id', 'bbox': (left, top, right, bottom) pixels,
      'category_id': int, 'area': float (COCO's annotation area; it sets
      the small/medium/large range), 'iscrowd': 0 or 1}.
    detections: {'image_id', 'bbox': ltrb pixels, 'category_id', 'score'}.

  Returns:
    {name: percent} for `NAMES`; a size range with no ground truth gives
    -1, as pycocotools does.

  Raises:
    JaxpruneError: when there is no ground truth at all (AP is undefined).
  """
  from pycocotools import coco, cocoeval  # pylint: disable=g-import-not-at-top
  if not ground_truth:
    raise JaxpruneError('COCO evaluation: the evaluation set has no ground '
                        'truth boxes, so AP is undefined.')
  xywh = lambda b: [float(b[0]), float(b[1]), float(b[2] - b[0]),
                    float(b[3] - b[1])]
  cats = sorted({int(g['category_id']) for g in ground_truth} |
                {int(d['category_id']) for d in detections})
  gt = coco.COCO()
  gt.dataset = {
      'images': [dict(i) for i in images],
      'categories': [{'id': c} for c in cats],
      'annotations': [{'id': k + 1, 'image_id': int(g['image_id']),
                       'bbox': xywh(g['bbox']),
                       'category_id': int(g['category_id']),
                       'area': float(g['area']),
                       'iscrowd': int(g['iscrowd'])}
                      for k, g in enumerate(ground_truth)]}
  quiet = contextlib.redirect_stdout(io.StringIO())
  with quiet:
    gt.createIndex()
  if not detections:
    return {n: 0.0 for n in NAMES}
  dt = coco.COCO()
  dt.dataset = {
      'images': gt.dataset['images'], 'categories': gt.dataset['categories'],
      'annotations': [{'id': k + 1, 'image_id': int(d['image_id']),
                       'bbox': xywh(d['bbox']),
                       'area': float((d['bbox'][2] - d['bbox'][0]) *
                                     (d['bbox'][3] - d['bbox'][1])),
                       'category_id': int(d['category_id']),
                       'score': float(d['score']), 'iscrowd': 0}
                      for k, d in enumerate(detections)]}
  with contextlib.redirect_stdout(io.StringIO()):
    dt.createIndex()
    ev = cocoeval.COCOeval(gt, dt, 'bbox')
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
  stats = np.asarray(ev.stats[:6], np.float64)
  return {n: (100.0 * float(s) if s >= 0 else -1.0)
          for n, s in zip(NAMES, stats)}
