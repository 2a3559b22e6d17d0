"""Image transforms of metric-learning pipelines (Yu et al., CVPR 2019): crops and the cross-quality views.

They follow mmcv's :class:`~mmcv.transforms.BaseTransform` and read / write ``results['img']`` (H, W, C) and
``results['img_shape']`` (h, w) like mmcv's own; they work beside mmcv's ``LoadImageFromFile``, ``Resize``,
``RandomFlip`` and ``CenterCrop``. ``results['bbox']`` stays in the coordinates of the image as loaded:
:class:`CropToBBox` uses it on the loaded image, nothing else moves it.
"""
import copy
from typing import Callable, List, Optional, Sequence, Tuple, Union

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.dataset import Compose

from mmkd.registry import TRANSFORMS


def _pair(size: Union[int, Sequence[int]], owner: str, name: str) -> Tuple[int, int]:
    """``size`` as (w, h) of positive ints (an int means a square)."""
    pair = (size, size) if not isinstance(size, (list, tuple)) else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in pair):
        raise ValueError(f'{owner}: {name}={size!r}, expected a positive int or a (w, h) pair of positive ints')
    return int(pair[0]), int(pair[1])


@TRANSFORMS.register_module()
class RandomCrop(BaseTransform):
    """Crop a window of ``crop_size`` at a uniformly random position (the paper's training crop, 224).

    An image smaller than the crop on a side is first padded on the bottom / right with ``pad_val`` (every channel)
    up to the crop size, so the output is always ``crop_size``; resize first (e.g. to 256) to avoid
    padding. The position is drawn with numpy's global random state, which mmengine seeds per worker.

    Required keys: ``img``. Modified keys: ``img``, ``img_shape``.

    Args:
        crop_size: (w, h) of the crop, or an int for a square.
        pad_val: value of the padded pixels.
    """

    def __init__(self, crop_size: Union[int, Sequence[int]], pad_val: Union[int, float] = 0):
        self.crop_size = _pair(crop_size, 'RandomCrop', 'crop_size')
        self.pad_val = pad_val

    def transform(self, results: dict) -> dict:
        img = results['img']
        crop_w, crop_h = self.crop_size
        h, w = img.shape[:2]
        if h < crop_h or w < crop_w:
            # a canvas, not mmcv.impad: cv2's border fill puts a scalar pad value in the first channel only
            canvas = np.full((max(h, crop_h), max(w, crop_w)) + img.shape[2:], self.pad_val, dtype=img.dtype)
            canvas[:h, :w] = img
            img = canvas
            h, w = img.shape[:2]
        y = np.random.randint(0, h - crop_h + 1)
        x = np.random.randint(0, w - crop_w + 1)
        img = img[y:y + crop_h, x:x + crop_w]
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(crop_size={self.crop_size}, pad_val={self.pad_val})'


@TRANSFORMS.register_module()
class CropToBBox(BaseTransform):
    """Crop ``img`` to ``results['bbox']``: the localized view of the unlocalized cross-quality setting.

    The box ``[x1, y1, x2, y2]`` is in pixels of the image as loaded, so this must come right after
    ``LoadImageFromFile`` (an image whose shape differs from ``ori_shape`` is refused). The crop is the
    smallest pixel window holding the box (``floor(x1), floor(y1)`` to ``ceil(x2), ceil(y2)``), clipped to the
    image.

    Required keys: ``img``, ``bbox``, ``ori_shape``. Modified keys: ``img``, ``img_shape``.
    """

    def transform(self, results: dict) -> dict:
        if results.get('bbox') is None:
            raise KeyError(f'CropToBBox: results of {results.get("img_path")!r} have no \'bbox\' (the dataset has '
                           'no boxes?)')
        img = results['img']
        h, w = img.shape[:2]
        if 'ori_shape' in results and tuple(results['ori_shape'][:2]) != (h, w):
            raise ValueError(f'CropToBBox: image {results.get("img_path")!r} is {h}x{w} but was loaded as '
                             f'{results["ori_shape"][0]}x{results["ori_shape"][1]}: the bbox is in the loaded '
                             'image\'s pixels, put CropToBBox before any resize or crop')
        x1, y1, x2, y2 = results['bbox']
        left, top = max(int(np.floor(x1)), 0), max(int(np.floor(y1)), 0)
        right, bottom = min(int(np.ceil(x2)), w), min(int(np.ceil(y2)), h)
        if right <= left or bottom <= top:
            raise ValueError(f'CropToBBox: bbox {results["bbox"]} of {results.get("img_path")!r} has no pixel '
                             f'inside the {h}x{w} image')
        img = img[top:bottom, left:right]
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        return results


@TRANSFORMS.register_module()
class LowResolution(BaseTransform):
    """Resize ``img`` down to ``size`` and back to its current size: the paper's low-resolution degradation
    (Table 6: 50 x 50, upsampled to the 224 input).

    Down with ``interpolation_down`` ('area' = cv2 ``INTER_AREA`` by default, which averages the pixels it
    merges, so no aliasing), up with ``interpolation_up`` ('bilinear' by default), both through
    :func:`mmcv.imresize` (cv2). The output has the input's shape and dtype.

    Required keys: ``img``. Modified keys: ``img``.

    Args:
        size: (w, h) of the low-resolution image, or an int for a square.
        interpolation_down: mmcv interpolation of the downsampling.
        interpolation_up: mmcv interpolation of the upsampling.
    """

    def __init__(self,
                 size: Union[int, Sequence[int]] = 50,
                 interpolation_down: str = 'area',
                 interpolation_up: str = 'bilinear'):
        self.size = _pair(size, 'LowResolution', 'size')
        self.interpolation_down = interpolation_down
        self.interpolation_up = interpolation_up

    def transform(self, results: dict) -> dict:
        img = results['img']
        h, w = img.shape[:2]
        small = mmcv.imresize(img, self.size, interpolation=self.interpolation_down)
        results['img'] = mmcv.imresize(small, (w, h), interpolation=self.interpolation_up)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(size={self.size}, interpolation_down={self.interpolation_down!r}, '
                f'interpolation_up={self.interpolation_up!r})')


@TRANSFORMS.register_module()
class TeacherView(BaseTransform):
    """Run ``pipeline`` on a deep copy of the results and keep its image as ``results['teacher_img']``.

    The teacher's view in cross-quality distillation (Table 6 of the paper): the main pipeline continues with
    the student's image, untouched. Low resolution (same geometry for both)::

        ..., RandomCrop, RandomFlip, TeacherView(pipeline=[]), LowResolution(50), PackEmbeddingInputs

    unlocalized (the teacher sees the bird's box, the student the whole image)::

        LoadImageFromFile, TeacherView(pipeline=[CropToBBox, Resize, RandomCrop, RandomFlip]),
        Resize, RandomCrop, RandomFlip, PackEmbeddingInputs

    The sub-pipeline's transforms are built from mmkd's TRANSFORMS, which also finds mmcv's (``Resize``,
    ``RandomFlip``, ...). Required keys: ``img``. Added keys: ``teacher_img``.

    Args:
        pipeline: transform configs (or callables) of the teacher's view; empty = the current image.
    """

    def __init__(self, pipeline: Optional[List[Union[dict, Callable]]] = None):
        transforms = [TRANSFORMS.build(t) if isinstance(t, dict) else t for t in (pipeline or [])]
        self.pipeline = Compose(transforms)

    def transform(self, results: dict) -> Optional[dict]:
        view = self.pipeline(copy.deepcopy(results))
        if view is None:
            raise RuntimeError(f'TeacherView: the teacher pipeline {self.pipeline} dropped the sample '
                               f'{results.get("img_path")!r} (a transform returned None)')
        results['teacher_img'] = view['img']
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(pipeline={self.pipeline})'
