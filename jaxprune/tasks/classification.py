"""Image classification: cross-entropy, top-1 and top-5 accuracy.

Data: `config.dataset` through `jaxprune.data` (TFDS ArrayRecord + grain,
augmentation by the dataset's spec); images travel as uint8 and are
normalised on the device.
"""
import jax
import jax.numpy as jnp
import optax

from jaxprune import data
from jaxprune.tasks import base


def cross_entropy(logits, labels, num_classes: int, smoothing: float):
  """Mean softmax cross-entropy with optional label smoothing."""
  onehot = jax.nn.one_hot(labels, num_classes)
  if smoothing:
    onehot = optax.smooth_labels(onehot, smoothing)
  return optax.softmax_cross_entropy(logits, onehot).mean()


@base.register
class Classification(base.Task):
  """Top-1/top-5 classification of `config.dataset`."""

  name = 'classification'
  selection = 'top1'

  def __init__(self, config):
    super().__init__(config)
    self.spec = data.get_spec(config.dataset)

  def splits(self):
    c = self.config
    return data.split_source(c.dataset, c.data_dir, c.validation_size)

  def input_shape(self):
    s = self.spec
    return (1, s.image_size, s.image_size, s.channels)

  def num_outputs(self):
    return self.spec.num_classes

  def train_batches(self, source, batch_size, seed, epoch):
    return data.train_batches(source, self.spec, batch_size, seed, epoch,
                              self.config.data_threads)

  def eval_batches(self, source, batch_size):
    return data.eval_batches(source, self.spec, batch_size,
                             self.config.data_threads)

  def inputs(self, batch, dtype):
    return data.normalize(batch['image'], self.spec, dtype)

  def loss(self, outputs, batch, train=True):
    smooth = self.config.label_smoothing if train else 0.0
    ce = cross_entropy(outputs, batch['label'], self.spec.num_classes, smooth)
    if train and 'mix_label' in batch:  # Mixup: lam CE(y) + (1 - lam) CE(y').
      lam = batch['mix_lambda']
      ce = lam * ce + (1 - lam) * cross_entropy(
          outputs, batch['mix_label'], self.spec.num_classes, smooth)
    return ce

  def mix(self, x, batch, rng):
    """Mixup (Zhang et al., ICLR 2018) with `config.mixup` = alpha: one
    lambda ~ Beta(alpha, alpha) per batch, each image mixed with the batch
    rolled by one, the loss mixed alike. alpha 0: off."""
    alpha = float(self.config.get('mixup', 0.0))
    if not alpha:
      return x, batch
    lam = jax.random.beta(rng, alpha, alpha).astype(jnp.float32)
    mixed = lam * x.astype(jnp.float32) + (1 - lam) * jnp.roll(
        x, 1, axis=0).astype(jnp.float32)
    return mixed.astype(x.dtype), dict(batch, mix_label=jnp.roll(
        batch['label'], 1, axis=0), mix_lambda=lam)

  def train_metrics(self, outputs, batch):
    return {'correct': jnp.sum(jnp.argmax(outputs, -1) == batch['label'])}

  def train_log(self, sums, examples):
    return {'accuracy': 100.0 * int(sums['correct']) / max(examples, 1)}

  def eval_metrics(self, outputs, batch):
    k = min(5, outputs.shape[-1])
    topk = jax.lax.top_k(outputs, k)[1]
    hit = topk == batch['label'][:, None]
    m = batch['mask']
    return {'top1': jnp.sum(hit[:, 0] & m), 'top5': jnp.sum(hit.any(-1) & m),
            'count': jnp.sum(m)}

  def finalize(self, total):
    n = max(int(total['count']), 1)
    return {'top1': 100.0 * int(total['top1']) / n,
            'top5': 100.0 * int(total['top5']) / n}
