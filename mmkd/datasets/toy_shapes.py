"""Toy shapes: a small COCO-format detection dataset generated deterministically from a seed.

Images hold filled shapes of several classes on textured, cluttered backgrounds, from small to
large (so COCO's AP_S / AP_M / AP_L are all populated), some partly occluded by later shapes.
Boxes are those of the visible part of each shape; a shape that is more than 60 % hidden is
dropped from the annotations and painted over, so every annotation is recognisable.

The files are plain COCO (``annotations/instances_{train,val}.json`` + ``{train,val}/*.png``), read by
mmdet's stock ``CocoDataset`` and scored by ``CocoMetric``. :class:`ToyShapesDataset` generates them
on first use; ``python tools/make_toy_data.py`` does it ahead of time.
"""
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Dict, Optional

import cv2
import numpy as np
from mmdet.datasets import CocoDataset

from mmkd.registry import DET_DATASETS

CLASSES = ('circle', 'square', 'triangle', 'cross', 'ring')
PALETTE = [(220, 20, 60), (0, 130, 200), (60, 180, 75), (255, 225, 25), (145, 30, 180)]
# two supercategories, so that the COCO error breakdown's "Sim" (confusions within one forgiven) differs from "Oth"
SUPERCATEGORIES = dict(circle='round', ring='round', square='angular', triangle='angular', cross='angular')
FORMAT_VERSION = 1


def _draw(mask: np.ndarray, cls: str, cx: int, cy: int, r: int, angle: float) -> None:
    """Draw shape ``cls`` of radius ``r`` centred at (cx, cy) into the uint8 ``mask``."""
    if cls == 'circle':
        cv2.circle(mask, (cx, cy), r, 1, -1)
    elif cls == 'ring':
        cv2.circle(mask, (cx, cy), r, 1, max(2, r // 3))
    else:
        if cls == 'square':
            pts = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
        elif cls == 'triangle':
            pts = [(0, -1), (0.95, 0.8), (-0.95, 0.8)]
        else:  # cross
            w = 0.33
            pts = [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w),
                   (-w, -w)]
        c, s = np.cos(angle), np.sin(angle)
        poly = np.array([(cx + r * (c * x - s * y), cy + r * (s * x + c * y)) for x, y in pts], dtype=np.int32)
        cv2.fillPoly(mask, [poly], 1)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = rng.integers(40, 200, size=3)
    img = np.empty((h, w, 3), np.float32)
    img[:] = base
    # low-frequency shading plus noise
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img += (30 * np.sin(xx / rng.uniform(15, 60) + rng.uniform(0, 6)) * np.cos(yy / rng.uniform(15, 60)))[..., None]
    img += rng.normal(0, 8, size=img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    # clutter: thin lines and small blobs that are not objects
    for _ in range(int(rng.integers(3, 9))):
        p1 = tuple(int(v) for v in rng.integers(0, [w, h]))
        p2 = tuple(int(v) for v in rng.integers(0, [w, h]))
        cv2.line(img, p1, p2, tuple(int(v) for v in rng.integers(0, 255, 3)), int(rng.integers(1, 3)))
    for _ in range(int(rng.integers(2, 6))):
        c = tuple(int(v) for v in rng.integers(0, [w, h]))
        cv2.circle(img, c, int(rng.integers(1, 3)), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    return img


def _image(rng: np.random.Generator, size: int, max_objects: int) -> tuple:
    img = _background(rng, size, size)
    owner = np.full((size, size), -1, np.int32)  # which shape is visible at each pixel
    shapes = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        cls = int(rng.integers(len(CLASSES)))
        # radius from log-uniform: areas from ~8x8 (small) to ~160x160 (large)
        r = int(np.exp(rng.uniform(np.log(4), np.log(size * 0.32))))
        cx, cy = (int(v) for v in rng.integers(r // 2, size - r // 2, size=2))
        mask = np.zeros((size, size), np.uint8)
        _draw(mask, CLASSES[cls], cx, cy, r, rng.uniform(0, np.pi))
        if mask.sum() < 16:
            continue
        colour = np.array(PALETTE[cls], np.float32) + rng.normal(0, 25, 3)
        shade = np.clip(colour, 0, 255).astype(np.uint8)
        img[mask.astype(bool)] = shade
        owner[mask.astype(bool)] = len(shapes)
        shapes.append((cls, int(mask.sum())))
    annotations = []
    for idx, (cls, full_area) in enumerate(shapes):
        visible = owner == idx
        area = int(visible.sum())
        if area < 0.4 * full_area or area < 12:
            continue
        ys, xs = np.nonzero(visible)
        x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        annotations.append(dict(category_id=cls + 1, bbox=[x0, y0, x1 - x0, y1 - y0], area=area, iscrowd=0))
    return img, annotations


def generate_toy_shapes(root: str,
                        seed: int = 0,
                        num_train: int = 400,
                        num_val: int = 100,
                        image_size: int = 256,
                        max_objects: int = 6) -> Dict[str, str]:
    """Write the toy shapes dataset under ``root`` (atomically: a half-written folder never appears).

    Returns:
        dict: paths of the train / val annotation files.
    """
    out = {split: osp.join(root, 'annotations', f'instances_{split}.json') for split in ('train', 'val')}
    if all(osp.isfile(p) for p in out.values()):
        return out
    parent = osp.dirname(osp.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.toy_shapes.', dir=parent)
    try:
        os.makedirs(osp.join(tmp, 'annotations'))
        for split, count, split_seed in (('train', num_train, seed), ('val', num_val, seed + 10_000)):
            rng = np.random.default_rng(split_seed)
            os.makedirs(osp.join(tmp, split))
            images, annotations = [], []
            for i in range(count):
                img, anns = _image(rng, image_size, max_objects)
                name = f'{i:06d}.png'
                cv2.imwrite(osp.join(tmp, split, name), img)
                images.append(dict(id=i + 1, file_name=name, height=image_size, width=image_size))
                for ann in anns:
                    annotations.append(dict(ann, id=len(annotations) + 1, image_id=i + 1))
            coco = dict(
                info=dict(description='mmkd toy shapes', version=FORMAT_VERSION, seed=seed),
                images=images,
                annotations=annotations,
                categories=[dict(id=i + 1, name=n, supercategory=SUPERCATEGORIES[n]) for i, n in enumerate(CLASSES)])
            with open(osp.join(tmp, 'annotations', f'instances_{split}.json'), 'w') as f:
                json.dump(coco, f)
        try:
            os.rename(tmp, root)
        except OSError:
            if not all(osp.isfile(p) for p in out.values()):  # not another process finishing first
                raise
    finally:
        if osp.isdir(tmp):
            shutil.rmtree(tmp)
    return out


@DET_DATASETS.register_module()
class ToyShapesDataset(CocoDataset):
    """mmdet ``CocoDataset`` over the toy shapes, generated under ``data_root`` if absent.

    Args:
        generate: keyword arguments of :func:`generate_toy_shapes` (seed, num_train, ...).
    """

    METAINFO = dict(classes=CLASSES, palette=PALETTE)

    def __init__(self, *args, generate: Optional[dict] = None, **kwargs):
        data_root = kwargs.get('data_root')
        if not data_root:
            raise KeyError('ToyShapesDataset needs data_root: the folder to read or generate the toy data in')
        generate_toy_shapes(data_root, **(generate or {}))
        super().__init__(*args, **kwargs)
