"""Per-example image augmentations in numpy (run on grain's host threads)."""
import math

import numpy as np
from PIL import Image


def pad_crop_flip(image: np.ndarray, rng: np.random.Generator, pad: int,
                  flip: bool) -> np.ndarray:
  """Zero-pads by `pad`, takes a random crop of the original size, flips."""
  h, w = image.shape[:2]
  if pad:
    image = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    top, left = rng.integers(0, 2 * pad + 1, size=2)
    image = image[top:top + h, left:left + w]
  if flip and rng.random() < 0.5:
    image = image[:, ::-1]
  return np.ascontiguousarray(image)


def _resize(image: np.ndarray, w: int, h: int) -> np.ndarray:
  """Bilinear resize of [H, W] or [H, W, C] uint8 (PIL takes no [H, W, 1])."""
  one = image.ndim == 3 and image.shape[-1] == 1
  out = np.asarray(Image.fromarray(np.ascontiguousarray(
      image[..., 0] if one else image)).resize((w, h), Image.BILINEAR))
  return out[..., None] if one else out


def random_resized_crop(image: np.ndarray, rng: np.random.Generator,
                        size: int, scale=(0.08, 1.0),
                        ratio=(3 / 4, 4 / 3)) -> np.ndarray:
  """Inception-style crop (torchvision's RandomResizedCrop) plus a flip."""
  h, w = image.shape[:2]
  area = h * w
  for _ in range(10):
    target = area * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
    cw = int(round(math.sqrt(target * aspect)))
    ch = int(round(math.sqrt(target / aspect)))
    if 0 < cw <= w and 0 < ch <= h:
      top = int(rng.integers(0, h - ch + 1))
      left = int(rng.integers(0, w - cw + 1))
      break
  else:  # Fall back to a central crop at the clamped aspect ratio.
    in_ratio = w / h
    if in_ratio < ratio[0]:
      cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
      ch, cw = h, int(round(h * ratio[1]))
    else:
      cw, ch = w, h
    top, left = (h - ch) // 2, (w - cw) // 2
  out = _resize(image[top:top + ch, left:left + cw], size, size)
  if rng.random() < 0.5:
    out = out[:, ::-1]
  return np.ascontiguousarray(out)


def resize_center_crop(image: np.ndarray, resize: int, size: int) -> np.ndarray:
  """Resizes the shorter side to `resize`, then takes the central `size`."""
  h, w = image.shape[:2]
  s = resize / min(h, w)
  nh, nw = max(size, round(h * s)), max(size, round(w * s))
  out = _resize(image, nw, nh)
  top, left = (nh - size) // 2, (nw - size) // 2
  return np.ascontiguousarray(out[top:top + size, left:left + size])
