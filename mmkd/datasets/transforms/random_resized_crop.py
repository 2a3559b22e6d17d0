"""Random resized crop: the training augmentation of the S2SD setup (Roth et al., ICML 2021, supplementary A.2)."""
import math
from typing import Sequence, Tuple, Union

import mmcv
import numpy as np
from mmcv.image.geometric import cv2_interp_codes
from mmcv.transforms import BaseTransform

from mmkd.registry import TRANSFORMS
from .embedding_transforms import _pair


def _range(value: Sequence[float], owner: str, name: str, upper: float) -> Tuple[float, float]:
    """``value`` as an ordered (low, high) pair of finite numbers with ``0 < low <= high <= upper``."""
    pair = tuple(value) if isinstance(value, (list, tuple)) else ()
    if len(pair) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair) or \
            not all(math.isfinite(v) for v in pair) or not 0 < pair[0] <= pair[1] <= upper:
        bound = f' <= {upper}' if math.isfinite(upper) else ''
        raise ValueError(f'{owner}: {name}={value!r}, expected finite (low, high) with 0 < low <= high{bound}')
    return float(pair[0]), float(pair[1])


@TRANSFORMS.register_module()
class RandomResizedCrop(BaseTransform):
    """Crop a random window of random area and aspect ratio, then resize it to ``size``: torchvision's
    ``RandomResizedCrop`` (Szegedy et al., "Going Deeper with Convolutions", 2015), which mmcv 2.1 lacks.

    Up to ``max_attempts`` times, draw a target area ``A * U(scale)`` (A = the image's area) and an aspect ratio
    (w / h) log-uniformly in ``ratio``; the window ``w = round(sqrt(area * ratio))``, ``h = round(sqrt(area /
    ratio))`` is taken at a uniformly random position if it fits in the image. If no attempt fits, the window is
    the largest centred one whose aspect ratio is clipped to ``ratio`` (the whole image when its own ratio is inside),
    at least 1 pixel on each side (an extreme ``ratio`` on a small image would round a side to 0).
    The window is resized to ``size`` with :func:`mmcv.imresize` (cv2, ``interpolation``; no antialiasing, unlike
    torchvision's PIL path). Every draw uses numpy's global random state, which mmengine seeds per worker.

    ``results['bbox']`` is left as it is: mmkd keeps it in the coordinates of the image as loaded (see
    :mod:`mmkd.datasets.transforms.embedding_transforms`; :class:`CropToBBox` goes before any crop).

    An (H, W, 1) image stays (h, w, 1) (cv2 drops a single channel axis; it is put back); an empty image is refused.

    Required keys: ``img``. Modified keys: ``img``, ``img_shape``.

    Args:
        size: (w, h) of the output, or an int for a square (224).
        scale: range of the window's area as a fraction of the image's, in (0, 1].
        ratio: range of the window's aspect ratio w / h.
        max_attempts: draws before the centred fallback.
        interpolation: mmcv interpolation of the resize: one of ``'nearest'``, ``'bilinear'``, ``'bicubic'``,
            ``'area'``, ``'lanczos'``.
    """

    def __init__(self,
                 size: Union[int, Sequence[int]],
                 scale: Sequence[float] = (0.08, 1.0),
                 ratio: Sequence[float] = (3. / 4., 4. / 3.),
                 max_attempts: int = 10,
                 interpolation: str = 'bilinear'):
        self.size = _pair(size, 'RandomResizedCrop', 'size')
        self.scale = _range(scale, 'RandomResizedCrop', 'scale', 1.0)
        self.ratio = _range(ratio, 'RandomResizedCrop', 'ratio', math.inf)
        if not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or max_attempts < 0:
            raise ValueError(f'RandomResizedCrop: max_attempts={max_attempts!r}, expected an int >= 0')
        self.max_attempts = max_attempts
        if interpolation not in cv2_interp_codes:
            raise ValueError(f'RandomResizedCrop: interpolation={interpolation!r}, expected one of '
                             f'{tuple(cv2_interp_codes)}')
        self.interpolation = interpolation

    def crop_window(self, h: int, w: int) -> Tuple[int, int, int, int]:
        """The window (top, left, height, width) of an ``h`` x ``w`` image, drawn as described above."""
        area = h * w
        log_low, log_high = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(self.max_attempts):
            target_area = area * np.random.uniform(*self.scale)
            aspect = math.exp(np.random.uniform(log_low, log_high))
            crop_w = int(round(math.sqrt(target_area * aspect)))
            crop_h = int(round(math.sqrt(target_area / aspect)))
            if 0 < crop_w <= w and 0 < crop_h <= h:
                top = np.random.randint(0, h - crop_h + 1)
                left = np.random.randint(0, w - crop_w + 1)
                return int(top), int(left), crop_h, crop_w
        image_ratio = w / h
        if image_ratio < self.ratio[0]:
            crop_w, crop_h = w, int(round(w / self.ratio[0]))
        elif image_ratio > self.ratio[1]:
            crop_w, crop_h = int(round(h * self.ratio[1])), h
        else:
            crop_w, crop_h = w, h
        crop_w, crop_h = max(crop_w, 1), max(crop_h, 1)
        return (h - crop_h) // 2, (w - crop_w) // 2, crop_h, crop_w

    def transform(self, results: dict) -> dict:
        img = results['img']
        if img.ndim < 2 or img.shape[0] == 0 or img.shape[1] == 0:
            raise ValueError(f'RandomResizedCrop: results[\'img\'] has shape {img.shape}, expected a non-empty '
                             '(H, W) or (H, W, C) image')
        top, left, crop_h, crop_w = self.crop_window(*img.shape[:2])
        resized = mmcv.imresize(img[top:top + crop_h, left:left + crop_w], self.size, interpolation=self.interpolation)
        img = resized[..., None] if img.ndim == 3 and resized.ndim == 2 else resized
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(size={self.size}, scale={self.scale}, ratio={self.ratio}, '
                f'max_attempts={self.max_attempts}, interpolation={self.interpolation!r})')
