"""RandomResizedCrop: torchvision's window distribution, the centred fallback, the cv2 resize, numpy's RNG."""
import math
import re

import cv2
import numpy as np
import pytest
from mmcv.transforms import RandomFlip
from mmengine.dataset import Compose

from mmkd.datasets import CropToBBox, PackEmbeddingInputs, RandomResizedCrop
from mmkd.registry import TRANSFORMS


def _coded_image(h: int, w: int) -> np.ndarray:
    """uint8 (h, w, 3) whose pixel (y, x) holds (y % 256, x % 256, 7): a crop tells where it came from."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (np.arange(h) % 256)[:, None]
    img[..., 1] = (np.arange(w) % 256)[None, :]
    img[..., 2] = 7
    return img


def _results(img: np.ndarray, **extra) -> dict:
    return dict(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2], img_path='a.png', **extra)


@pytest.mark.parametrize('size,hw', [(224, (333, 500)), ((64, 32), (40, 30)), (16, (8, 200))])
def test_output_size_and_img_shape(size, hw):
    np.random.seed(0)
    transform = RandomResizedCrop(size=size)
    w, h = (size, size) if isinstance(size, int) else size
    for _ in range(20):
        out = transform(_results(_coded_image(*hw)))
        assert out['img'].shape == (h, w, 3) and out['img'].dtype == np.uint8
        assert out['img_shape'] == (h, w)


def test_window_statistics():
    """On a 1000 x 1000 image every draw with area fraction s <= 3/4 fits whatever its ratio in [3/4, 4/3], so the
    windows' area fractions are uniform on [0.08, 3/4] there; the log aspect ratios are symmetric about 0 and the
    positions uniform over the free room."""
    np.random.seed(0)
    transform = RandomResizedCrop(size=8)
    fractions, log_ratios, positions = [], [], []
    for _ in range(4000):
        top, left, h, w = transform.crop_window(1000, 1000)
        assert 0 <= top <= 1000 - h and 0 <= left <= 1000 - w and h >= 1 and w >= 1
        fractions.append(h * w / 1e6)
        log_ratios.append(math.log(w / h))
        if w < 900:
            positions.append(left / (1000 - w))
    fractions, log_ratios = np.array(fractions), np.array(log_ratios)
    # the window sides are rounded to pixels: a relative area error below 1e-2 at the smallest window (283 px)
    assert fractions.min() >= 0.08 * 0.99 and fractions.max() <= 1.0
    assert fractions.min() < 0.09 and fractions.max() > 0.95  # both ends of the range are drawn
    assert np.abs(log_ratios).max() <= math.log(4 / 3) + 1e-2
    assert log_ratios.min() < math.log(3 / 4) * 0.95 and log_ratios.max() > math.log(4 / 3) * 0.95
    low = fractions[fractions <= 0.75]
    # uniform on [0.08, 0.75]: half below the midpoint, a quarter below the first quartile (4-sigma bands)
    assert abs((low < 0.415).mean() - 0.5) < 4 * math.sqrt(0.25 / len(low))
    assert abs((low < 0.2475).mean() - 0.25) < 4 * math.sqrt(0.1875 / len(low))
    assert abs(log_ratios.mean()) < 4 * log_ratios.std() / math.sqrt(len(log_ratios))
    assert abs(np.mean(positions) - 0.5) < 4 * math.sqrt(1 / 12 / len(positions))


DEFAULT_RATIO = (3. / 4., 4. / 3.)


@pytest.mark.parametrize(
    'hw,ratio,window',
    [
        ((100, 400), DEFAULT_RATIO, (0, 133, 100, 133)),  # wider than 4/3: full height, width round(100 * 4/3), centred
        ((400, 100), DEFAULT_RATIO, (133, 0, 133, 100)),  # taller than 3/4: full width, height round(100 / (3/4))
        ((90, 100), DEFAULT_RATIO, (0, 0, 90, 100)),  # ratio inside the range: the whole image
        ((20, 30), (100.0, 1000.0), (9, 0, 1, 30)),  # height round(30 / 100) = 0, kept at 1 pixel
        ((20, 30), (1e-3, 1e-2), (0, 14, 20, 1)),  # width round(20 * 1e-2) = 0, kept at 1 pixel
        ((1, 1), (100.0, 1000.0), (0, 0, 1, 1)),
    ])
def test_fallback_is_the_centred_window(hw, ratio, window):
    transform = RandomResizedCrop(size=8, max_attempts=0, ratio=ratio)
    assert transform.crop_window(*hw) == window


@pytest.mark.parametrize('ratio', [(100.0, 1000.0), (1e-3, 1e-2)])
def test_extreme_ratio_crops_a_one_pixel_line(ratio):
    """No attempt fits a 20 x 30 image (the drawn windows are over 60 pixels long), so every call takes the centred
    1-pixel-thin fallback: the resize of that line of the image."""
    np.random.seed(0)
    img = _coded_image(20, 30)
    line = img[9:10, :] if ratio[0] > 1 else img[:, 14:15]
    expected = cv2.resize(line, (8, 8), interpolation=cv2.INTER_LINEAR)
    transform = RandomResizedCrop(size=8, ratio=ratio)
    for _ in range(5):
        np.testing.assert_array_equal(transform(_results(img.copy()))['img'], expected)


def test_single_channel_image_keeps_its_channel_axis():
    img = np.random.RandomState(2).randint(0, 256, (40, 30, 1)).astype(np.uint8)
    transform = RandomResizedCrop(size=(12, 10))
    np.random.seed(3)
    top, left, h, w = transform.crop_window(40, 30)
    np.random.seed(3)
    out = transform(_results(img.copy()))
    assert out['img'].shape == (10, 12, 1) and out['img_shape'] == (10, 12)
    expected = cv2.resize(img[top:top + h, left:left + w, 0], (12, 10), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(out['img'][..., 0], expected)
    # a 2-D image stays 2-D
    assert transform(_results(img[..., 0].copy()))['img'].shape == (10, 12)


@pytest.mark.parametrize('shape', [(0, 5, 3), (5, 0), (0, 0, 1)])
def test_empty_image_is_refused_with_its_shape(shape):
    transform = RandomResizedCrop(size=8)
    with pytest.raises(ValueError, match=re.escape(f"RandomResizedCrop: results['img'] has shape {shape}")):
        transform(_results(np.zeros(shape, np.uint8)))


def test_fallback_after_failed_attempts():
    """scale (1, 1) with ratios of at least 2 never fits a square image: all 10 attempts fail and the centred
    window of ratio 2 (full width, half height) is taken; resized to its own size it is the image's pixels."""
    np.random.seed(0)
    img = _coded_image(60, 60)
    transform = RandomResizedCrop(size=(60, 30), scale=(1.0, 1.0), ratio=(2.0, 3.0))
    state = np.random.get_state()
    out = transform(_results(img.copy()))
    np.testing.assert_array_equal(out['img'], img[15:45, :])
    # the 10 attempts each drew an area and a ratio (no position): 20 draws from numpy's global state
    np.random.set_state(state)
    np.random.uniform(size=20)
    after_reference = np.random.uniform()
    np.random.set_state(state)
    transform(_results(img.copy()))
    assert np.random.uniform() == after_reference


def test_pixels_are_the_cv2_bilinear_resize_of_the_window():
    img = np.random.RandomState(1).randint(0, 256, (120, 90, 3)).astype(np.uint8)
    transform = RandomResizedCrop(size=(48, 40))
    for seed in range(5):
        np.random.seed(seed)
        top, left, h, w = transform.crop_window(120, 90)
        expected = cv2.resize(img[top:top + h, left:left + w], (48, 40), interpolation=cv2.INTER_LINEAR)
        np.random.seed(seed)
        out = transform(_results(img.copy()))
        np.testing.assert_array_equal(out['img'], expected)


def test_deterministic_under_a_seed():
    img = _coded_image(200, 150)
    transform = RandomResizedCrop(size=32)
    runs = []
    for seed in (5, 5, 6):
        np.random.seed(seed)
        runs.append(np.stack([transform(_results(img.copy()))['img'] for _ in range(4)]))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_bbox_stays_in_the_loaded_image_coordinates():
    """mmkd keeps ``bbox`` in the pixels of the image as loaded (CropToBBox goes first, the packed meta ``bbox`` is
    the dataset's box), so the crop leaves it untouched and only ``img_shape`` changes."""
    np.random.seed(0)
    bbox = [10.5, 20.0, 80.0, 95.5]
    out = RandomResizedCrop(size=24)(_results(_coded_image(120, 100), bbox=list(bbox)))
    assert out['bbox'] == bbox and out['img_shape'] == (24, 24) and out['ori_shape'] == (120, 100)
    # the localized view: the box crop first, then the random resized crop and flip of the S2SD pipelines
    pipeline = Compose([CropToBBox(), RandomResizedCrop(size=24), RandomFlip(prob=0.5), PackEmbeddingInputs()])
    packed = pipeline(_results(_coded_image(120, 100), bbox=list(bbox), gt_label=3))
    assert tuple(packed['inputs'].shape) == (3, 24, 24)
    assert packed['data_samples'].bbox == bbox
    assert packed['data_samples'].img_shape == (24, 24)


def test_registered_and_built_from_config():
    transform = TRANSFORMS.build(dict(type='RandomResizedCrop', size=224))
    assert isinstance(transform, RandomResizedCrop)
    assert transform.size == (224, 224) and transform.scale == (0.08, 1.0)
    assert transform.ratio == pytest.approx((0.75, 4 / 3)) and transform.max_attempts == 10
    assert 'RandomResizedCrop(size=(224, 224)' in repr(transform)


BAD_ARGUMENTS = [
    (dict(size=0), 'size'),
    (dict(size=8, scale=(0.5, 0.1)), 'scale'),
    (dict(size=8, scale=(0.0, 1.0)), 'scale'),
    (dict(size=8, scale=(0.5, 1.5)), 'scale'),
    (dict(size=8, ratio=(2.0, 1.0)), 'ratio'),
    (dict(size=8, ratio=0.5), 'ratio'),
    (dict(size=8, max_attempts=-1), 'max_attempts'),
    (dict(size=8, ratio=(1.0, math.inf)), 'ratio'),
    (dict(size=8, ratio=(1e-3, math.nan)), 'ratio'),
    (dict(size=8, scale=(0.5, math.inf)), 'scale'),
    (dict(size=8, interpolation='bogus'), 'interpolation'),
    (dict(size=8, interpolation='linear'), 'interpolation'),
]


@pytest.mark.parametrize('kwargs,key', BAD_ARGUMENTS)
def test_rejects_bad_arguments(kwargs, key):
    with pytest.raises(ValueError, match=f'RandomResizedCrop: {key}='):
        RandomResizedCrop(**kwargs)
