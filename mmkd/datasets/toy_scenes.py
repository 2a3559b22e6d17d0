"""Toy driving scenes in two domains: a small segmentation set for domain-adaptive distillation on a CPU.

Both domains draw the same kind of street scene (sky, buildings, vegetation, road, sidewalks, cars, people, with
the Cityscapes class names and palette) from the same layout distribution; they differ in appearance only:

* ``source`` (synthetic-looking, like GTA5): flat, saturated class colours, hard edges, little noise;
* ``target`` (real-looking, like Cityscapes): another colour rendering (channels mixed, lower contrast, a global
  colour cast that changes from image to image), per-class texture (window grids on buildings, speckled foliage,
  grainy road), blur and sensor noise.

A segmentor trained on the source alone is clearly worse on the target (measured in
``configs/seg_dakd/README.md``). Thin poles are labelled 255 (ignored), to exercise the ignore index.

Layout: ``<root>/<domain>/images/<split>/<id>.png`` (BGR) and ``<root>/<domain>/labels/<split>/<id>.png``
(class indices, 255 = ignore), ``split`` in train / val: read by mmseg's ``BaseSegDataset`` (through
:class:`ToyScenesDataset`, which generates the tree on first use).
"""
import os
import os.path as osp
import shutil
import tempfile
from typing import Optional, Tuple

import cv2
import numpy as np
from mmseg.datasets import BaseSegDataset

from mmkd.registry import SEG_DATASETS

CLASSES = ('road', 'sidewalk', 'building', 'vegetation', 'sky', 'person', 'car')
PALETTE = [(128, 64, 128), (244, 35, 232), (70, 70, 70), (107, 142, 35), (70, 130, 180), (220, 20, 60), (0, 0, 142)]
ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, PERSON, CAR = range(len(CLASSES))
IGNORE = 255
DOMAINS = ('source', 'target')
FORMAT_VERSION = 1
# the colours each domain renders the classes with (RGB); the target's are another rendering of the same scene
SOURCE_COLOURS = np.array([(90, 90, 100), (190, 170, 150), (150, 80, 60), (40, 160, 40), (120, 180, 250), (230, 60, 60),
                           (30, 60, 200)], np.float32)
# a fixed mix of the channels plus an offset: hues move, contrast drops
TARGET_MIX = np.array([[0.55, 0.30, 0.15], [0.20, 0.50, 0.30], [0.25, 0.25, 0.50]], np.float32)
TARGET_OFFSET = np.array([35, 30, 25], np.float32)


def _layout(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w) class indices of one random street scene."""
    label = np.full((h, w), SKY, np.uint8)
    horizon = int(h * rng.uniform(0.35, 0.55))
    # buildings: blocks standing on the horizon
    x = int(rng.integers(-w // 8, w // 8))
    while x < w:
        bw = int(rng.integers(w // 10, w // 3))
        top = int(horizon - rng.uniform(0.1, 0.9) * horizon)
        if rng.random() < 0.8:
            label[max(top, 0):horizon, max(x, 0):max(x + bw, 0)] = BUILDING
        x += bw + int(rng.integers(0, w // 12))
    # trees in front of the buildings
    for _ in range(int(rng.integers(1, 5))):
        cx, cy = int(rng.integers(0, w)), int(horizon - rng.uniform(0, 0.5) * horizon)
        axes = (int(rng.integers(w // 20, w // 7)), int(rng.integers(h // 12, h // 5)))
        cv2.ellipse(label, (cx, cy), axes, 0, 0, 360, VEGETATION, -1)
    label[horizon:] = SIDEWALK
    # the road: a trapezoid towards a vanishing point on the horizon
    vx = int(w * rng.uniform(0.35, 0.65))
    half_top, half_bottom = int(w * rng.uniform(0.02, 0.06)), int(w * rng.uniform(0.35, 0.6))
    road = np.array([(vx - half_top, horizon), (vx + half_top, horizon), (vx + half_bottom, h), (vx - half_bottom, h)],
                    np.int32)
    cv2.fillPoly(label, [road], ROAD)
    # grass verges at the image's lower corners
    for side in (0, 1):
        if rng.random() < 0.5:
            x0 = 0 if side == 0 else w - 1
            pts = np.array([(x0, horizon + int((h - horizon) * rng.uniform(0.2, 0.6))), (x0, h),
                            (abs(x0 - int(w * rng.uniform(0.05, 0.2))), h)], np.int32)
            cv2.fillPoly(label, [pts], VEGETATION)
    # cars on the road, larger nearer the bottom
    for _ in range(int(rng.integers(0, 4))):
        y = int(horizon + (h - horizon) * rng.uniform(0.1, 0.8))
        scale = (y - horizon) / max(h - horizon, 1)
        cw, ch = max(int(w * 0.25 * scale), 3), max(int(h * 0.2 * scale), 2)
        cx = int(vx + (rng.uniform(-0.7, 0.7)) * (half_top + (half_bottom - half_top) * scale))
        cv2.rectangle(label, (cx - cw // 2, y - ch), (cx + cw // 2, y), CAR, -1)
    # people on the sidewalks
    for _ in range(int(rng.integers(0, 5))):
        y = int(horizon + (h - horizon) * rng.uniform(0.05, 0.9))
        scale = 0.3 + (y - horizon) / max(h - horizon, 1)
        ph, pw = max(int(h * 0.18 * scale), 3), max(int(w * 0.02 * scale), 1)
        x = int(rng.integers(0, w))
        if label[min(y, h - 1), min(x, w - 1)] in (SIDEWALK, VEGETATION):
            cv2.rectangle(label, (x - pw, y - ph), (x + pw, y), PERSON, -1)
    # poles: thin unlabelled structures
    for _ in range(int(rng.integers(0, 3))):
        x = int(rng.integers(0, w))
        top = int(horizon * rng.uniform(0.2, 0.8))
        bottom = int(horizon + (h - horizon) * rng.uniform(0.1, 0.5))
        cv2.line(label, (x, top), (x, bottom), IGNORE, 1)
    return label


def _render(rng: np.random.Generator, label: np.ndarray, domain: str) -> np.ndarray:
    """A uint8 BGR image of ``label`` as ``domain`` renders it."""
    h, w = label.shape
    classes = np.where(label == IGNORE, len(CLASSES), label)
    colours = np.concatenate([SOURCE_COLOURS + rng.normal(0, 12, SOURCE_COLOURS.shape), [(60, 60, 60)]])
    if domain == 'source':
        img = colours[classes] + rng.normal(0, 4, (h, w, 3))
    else:
        colours = colours @ TARGET_MIX.T + TARGET_OFFSET + rng.normal(0, 15, 3)  # and a per-image colour cast
        img = colours[classes]
        yy, xx = np.mgrid[0:h, 0:w]
        windows = ((yy // 3) % 3 == 0) | ((xx // 4) % 4 == 0)
        img[(label == BUILDING) & windows] *= 0.7
        foliage = label == VEGETATION
        img[foliage] *= rng.uniform(0.6, 1.3, (int(foliage.sum()), 1))
        img[label == ROAD] += rng.normal(0, 10, (int((label == ROAD).sum()), 3))
        img *= 1 + 0.25 * (yy / h - 0.5)[..., None]  # shading
        img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.9) + rng.normal(0, 9, (h, w, 3))
    return np.clip(img[..., ::-1], 0, 255).astype(np.uint8)


def _complete(root: str, num: dict) -> bool:
    return all(
        osp.isdir(osp.join(root, d, kind, split)) and len(os.listdir(osp.join(root, d, kind, split))) == count
        for d in DOMAINS for kind in ('images', 'labels') for split, count in num.items())


def generate_toy_scenes(root: str,
                        seed: int = 0,
                        num_train: int = 300,
                        num_val: int = 60,
                        image_size: Tuple[int, int] = (64, 128)) -> str:
    """Write the two-domain toy scenes under ``root`` unless they are complete there (atomically: a half-written
    tree never appears). The two domains' scenes are independent draws (no image of one is a re-rendering of an
    image of the other). Returns ``root``.

    Args:
        root: the folder.
        seed: the layouts' and renderings' seed.
        num_train, num_val: images per domain and split.
        image_size: (height, width).
    """
    num = dict(train=num_train, val=num_val)
    if _complete(root, num):
        return root
    if osp.exists(root) and os.listdir(root):
        raise FileExistsError(f'{root} exists and is not a complete toy scene tree of {num_train} train / {num_val} '
                              'val images per domain: remove it, or point data_root elsewhere')
    parent = osp.dirname(osp.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.toy_scenes.', dir=parent)
    try:
        for d_index, domain in enumerate(DOMAINS):
            for s_index, (split, count) in enumerate(num.items()):
                rng = np.random.default_rng([seed, d_index, s_index, FORMAT_VERSION])
                for kind in ('images', 'labels'):
                    os.makedirs(osp.join(tmp, domain, kind, split))
                for i in range(count):
                    label = _layout(rng, *image_size)
                    cv2.imwrite(osp.join(tmp, domain, 'images', split, f'{i:06d}.png'), _render(rng, label, domain))
                    cv2.imwrite(osp.join(tmp, domain, 'labels', split, f'{i:06d}.png'), label)
        if osp.isdir(root):
            os.rmdir(root)  # empty
        try:
            os.rename(tmp, root)
        except OSError:
            if not _complete(root, num):  # not another process finishing first
                raise
    finally:
        if osp.isdir(tmp):
            shutil.rmtree(tmp)
    return root


@SEG_DATASETS.register_module()
class ToyScenesDataset(BaseSegDataset):
    """One domain and split of the toy scenes, generated under ``data_root`` on first use.

    Args:
        data_root: the toy scene tree (both domains).
        data_prefix: e.g. ``dict(img_path='target/images/val', seg_map_path='target/labels/val')``.
        generate: keyword arguments of :func:`generate_toy_scenes` (seed, num_train, num_val, image_size).
    """

    METAINFO = dict(classes=CLASSES, palette=PALETTE)

    def __init__(self,
                 *args,
                 img_suffix: str = '.png',
                 seg_map_suffix: str = '.png',
                 generate: Optional[dict] = None,
                 **kwargs):
        data_root = kwargs.get('data_root')
        if not data_root:
            raise KeyError('ToyScenesDataset needs data_root: the folder to read or generate the toy scenes in')
        generate_toy_scenes(data_root, **(generate or {}))
        super().__init__(*args, img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)
