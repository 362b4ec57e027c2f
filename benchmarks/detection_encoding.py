"""SSD target encoding: on the device in the train step, or on the host.

    python benchmarks/detection_encoding.py [--batch=32] [--boxes=7]

SSD300's 8732 default boxes, a batch of images with `--boxes` ground-truth
boxes each (COCO-2017 train averages 7.3), padded to 200 for the device.
Two ways to make the targets (offsets [B, 8732, 4], labels [B, 8732]):

* device: `jax.vmap(jaxprune.boxes.match)` + `encode`, jitted, on padded
  ground truth, as `jaxprune.tasks.detection` does inside the step;
* host: `jaxprune.boxes.match_host` + `encode` in numpy, one image at a
  time on the real boxes, as an input pipeline's worker would.

Host targets also cost a transfer of 8732 x 5 values per image where the
device path moves 200 x 6. The last line is `device_over_host: <x>`
(device seconds per batch / host seconds per batch, one core each on a
CPU backend; below 1: the device path is cheaper).
"""
import time

from absl import app, flags
import jax
import numpy as np

from jaxprune import boxes

flags.DEFINE_integer('batch', 32, 'Images per batch.')
flags.DEFINE_integer('boxes', 7, 'Ground-truth boxes per image.')
flags.DEFINE_integer('reps', 20, 'Timed batches per variant.')
FLAGS = flags.FLAGS


def _batch(rng, b, g, pad):
  lt = rng.uniform(0, 0.8, (b, g, 2))
  gt = np.concatenate([lt, lt + rng.uniform(0.02, 0.4, (b, g, 2))], -1)
  out = np.zeros((b, pad, 4), np.float32)
  out[:, :g] = gt
  labels = np.zeros((b, pad), np.int32)
  labels[:, :g] = rng.integers(1, 81, (b, g))
  return out, labels, np.arange(pad)[None].repeat(b, 0) < g


def main(_):
  d = boxes.ssd300()
  ltrb, xywh = d.ltrb(), d.xywh()
  gt, labels, valid = _batch(np.random.default_rng(0), FLAGS.batch,
                             FLAGS.boxes, 200)

  @jax.jit
  def device(gt, labels, valid):
    m, l = jax.vmap(lambda b, c, v: boxes.match(b, c, v, ltrb))(gt, labels,
                                                                 valid)
    return boxes.encode(m, xywh), l

  def host(gt, labels, valid):
    out = [boxes.match_host(b[v], c[v], ltrb) for b, c, v in zip(
        gt, labels, valid)]
    return (np.stack([boxes.encode(m, xywh) for m, _ in out]),
            np.stack([l for _, l in out]))

  jax.block_until_ready(device(gt, labels, valid))  # Compile.
  want = host(gt, labels, valid)
  got = jax.device_get(device(gt, labels, valid))
  np.testing.assert_array_equal(got[1], want[1])  # Same targets.
  times = {'device': [], 'host': []}
  for _ in range(FLAGS.reps):  # Interleaved, so drift hits both alike.
    t = time.perf_counter()
    jax.block_until_ready(device(gt, labels, valid))
    times['device'].append(time.perf_counter() - t)
    t = time.perf_counter()
    host(gt, labels, valid)
    times['host'].append(time.perf_counter() - t)
  med = {k: float(np.median(v)) for k, v in times.items()}
  print(f'backend {jax.default_backend()}, batch {FLAGS.batch}, '
        f'{FLAGS.boxes} boxes per image, 8732 default boxes')
  for k, v in med.items():
    print(f'{k:7s} {v * 1e3:8.2f} ms per batch '
          f'({v / FLAGS.batch * 1e3:.3f} ms per image)')
  print(f'device_over_host: {med["device"] / med["host"]:.3f}')


if __name__ == '__main__':
  app.run(main)
