"""mmkd.datasets.CorruptImage: every benchmark corruption changes the image, the same way in every instance, process,
dataloader worker layout and with or without the cache; the colour order handed to imagecorruptions; the repairs of
imagecorruptions on this stack (fog, glass_blur, impulse_noise, a missing pkg_resources); errors."""
import hashlib
import os.path as osp
import subprocess
import textwrap

import cv2
import numpy as np
import pytest
import torch
from mmcv.transforms import LoadImageFromFile
from mmdet.registry import TRANSFORMS
from mmengine.dataset import Compose
from mmengine.registry import DefaultScope

from mmkd.datasets import CorruptImage, generate_toy_shapes
from mmkd.datasets.transforms import corruption as corruption_module
from mmkd.datasets.transforms.corruption import CORRUPTION_GROUPS, CORRUPTIONS, apply_corruption
from ..conftest import PYTHON, tool_env


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    """Paths of four 64x64 toy shapes images and of one non-square (48x80) image."""
    root = str(tmp_path_factory.mktemp('toy'))
    generate_toy_shapes(root, seed=0, num_train=1, num_val=4, image_size=64)
    paths = [osp.join(root, 'val', f'{i:06d}.png') for i in range(4)]
    wide = osp.join(root, 'wide.png')
    cv2.imwrite(wide, cv2.resize(cv2.imread(paths[0]), (80, 48)))
    return paths + [wide]


def _load(path: str) -> dict:
    return LoadImageFromFile()(dict(img_path=path))


def _digest(img: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest()


def test_the_benchmark_corruptions():
    assert len(CORRUPTIONS) == 15 and len(set(CORRUPTIONS)) == 15
    assert [len(g) for g in CORRUPTION_GROUPS.values()] == [3, 4, 4, 4]
    import imagecorruptions
    assert list(CORRUPTIONS) == imagecorruptions.get_corruption_names('common')


@pytest.mark.parametrize('corruption', CORRUPTIONS)
def test_every_corruption_changes_the_image_the_same_way(corruption, images):
    """Two instances give the same image, different from the clean one, of the same shape and dtype, for a square
    and a non-square image; severities 1 and 5 differ; numpy's global random state is left as it was."""
    for path in (images[0], images[-1]):
        clean = _load(path)['img']
        np.random.seed(123)
        state = np.random.get_state()
        first = CorruptImage(corruption, 3)(_load(path))['img']
        second = CorruptImage(corruption, 3)(_load(path))['img']
        after = np.random.get_state()
        assert after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2:] == state[2:]
        assert first.shape == clean.shape and first.dtype == np.uint8
        assert np.array_equal(first, second), f'{corruption} is not reproducible'
        assert np.abs(first.astype(int) - clean).mean() > 0.5, f'{corruption} hardly changes the image'
    mild = CorruptImage(corruption, 1)(_load(images[0]))['img']
    severe = CorruptImage(corruption, 5)(_load(images[0]))['img']
    assert not np.array_equal(mild, severe)
    # another seed gives another draw for the random corruptions, the same image for the deterministic ones
    other = CorruptImage(corruption, 3, seed=1)(_load(images[0]))['img']
    deterministic = {'defocus_blur', 'zoom_blur', 'brightness', 'contrast', 'pixelate', 'jpeg_compression'}
    assert np.array_equal(other, CorruptImage(corruption, 3)(_load(images[0]))['img']) == (corruption in deterministic)


def test_rgb_is_what_imagecorruptions_sees(images):
    """mmcv loads BGR; the corruption runs on RGB and the result is BGR again. brightness works in HSV, so handing
    it BGR (as mmdet's Corrupt does) gives another image."""
    results = _load(images[0])
    bgr = results['img'].copy()
    out = CorruptImage('brightness', 5)(results)['img']
    expected = apply_corruption(np.ascontiguousarray(bgr[..., ::-1]), 'brightness', 5, 0)[..., ::-1]
    assert np.array_equal(out, expected)
    assert not np.array_equal(out, apply_corruption(bgr, 'brightness', 5, 0))
    rgb = CorruptImage('brightness', 5, channel_order='rgb')(dict(img_path=images[0], img=bgr[..., ::-1].copy()))
    assert np.array_equal(rgb['img'], out[..., ::-1])


def test_registered_for_mmdet_pipelines():
    with DefaultScope.overwrite_default_scope('mmdet'):
        transform = TRANSFORMS.build(dict(type='CorruptImage', corruption='fog', severity=2, seed=4))
    assert isinstance(transform, CorruptImage) and (transform.corruption, transform.severity) == ('fog', 2)


def test_cache_written_once_reused_and_identical(images, tmp_path, monkeypatch):
    """With a cache every image is corrupted once: later instances (other models) read the PNG; the images equal
    those without a cache."""
    calls = []
    real = corruption_module.apply_corruption
    monkeypatch.setattr(corruption_module, 'apply_corruption', lambda *a: calls.append(a[1:3]) or real(*a))
    cache = str(tmp_path / 'cache')
    uncached = [CorruptImage('glass_blur', 2)(_load(p))['img'] for p in images]
    assert len(calls) == len(images)
    for _ in range(3):  # three models
        transform = CorruptImage('glass_blur', 2, cache_dir=cache)
        cached = [transform(_load(p))['img'] for p in images]
        assert all(np.array_equal(a, b) for a, b in zip(cached, uncached))
    assert len(calls) == 2 * len(images)
    files = [transform.cache_path(_load(p)) for p in images]
    assert all(osp.isfile(f) for f in files) and len(set(files)) == len(images)
    assert np.array_equal(cv2.imread(files[0]), uncached[0])  # a plain BGR PNG
    # another seed or severity is another cache entry; a torn file is recomputed, not read
    assert CorruptImage('glass_blur', 2, seed=1, cache_dir=cache).cache_path(_load(images[0])) != files[0]
    with open(files[0], 'wb') as f:
        f.write(b'\x89PNG broken')
    assert np.array_equal(CorruptImage('glass_blur', 2, cache_dir=cache)(_load(images[0]))['img'], uncached[0])
    assert len(calls) == 2 * len(images) + 1


class _Images(torch.utils.data.Dataset):

    def __init__(self, paths, pipeline):
        self.paths, self.pipeline = paths, Compose(pipeline)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.pipeline(dict(img_path=self.paths[i]))['img']


def test_independent_of_workers_and_order(images):
    """The same images from 0 or 2 dataloader workers and in reversed order."""
    pipeline = [dict(type='LoadImageFromFile'), CorruptImage('shot_noise', 4), CorruptImage('impulse_noise', 2)]
    serial = [_digest(img) for img in _Images(images, pipeline)]
    loader = torch.utils.data.DataLoader(
        _Images(images[::-1], pipeline), num_workers=2, batch_size=None, collate_fn=lambda x: x)
    assert [_digest(img) for img in loader] == serial[::-1]


def test_same_in_another_process(images):
    """Every corruption gives the same bytes in a fresh interpreter (no state shared with this one)."""
    script = textwrap.dedent(f"""
        import hashlib, numpy as np
        from mmcv.transforms import LoadImageFromFile
        from mmkd.datasets.transforms.corruption import CORRUPTIONS, CorruptImage
        for name in CORRUPTIONS:
            img = CorruptImage(name, 3)(LoadImageFromFile()(dict(img_path={images[1]!r})))['img']
            print(name, hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest())
        """)
    proc = subprocess.run([PYTHON, '-c', script], capture_output=True, text=True, env=tool_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs = dict(line.split() for line in proc.stdout.splitlines())
    ours = {name: _digest(CorruptImage(name, 3)(_load(images[1]))['img']) for name in CORRUPTIONS}
    assert theirs == ours


def test_without_pkg_resources(images):
    """setuptools >= 81 has no pkg_resources, which imagecorruptions imports to find its frost pictures."""
    script = textwrap.dedent(f"""
        import sys
        sys.modules['pkg_resources'] = None  # what an environment without it looks like to an import
        from mmcv.transforms import LoadImageFromFile
        from mmkd.datasets.transforms.corruption import CorruptImage
        clean = LoadImageFromFile()(dict(img_path={images[0]!r}))['img']
        frosted = CorruptImage('frost', 5)(dict(img_path={images[0]!r}, img=clean.copy()))['img']
        assert sys.modules['pkg_resources'] is None  # the stand-in was for imagecorruptions' import only
        print(frosted.shape, int((frosted != clean).sum() > 0))
        """)
    proc = subprocess.run([PYTHON, '-c', script], capture_output=True, text=True, env=tool_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split('\n')[0] == '(64, 64, 3) 1'


@pytest.mark.parametrize('kwargs, message', [
    (dict(corruption='rain', severity=1), "unknown corruption 'rain'"),
    (dict(corruption='speckle_noise', severity=1), "unknown corruption 'speckle_noise'"),
    (dict(corruption='fog', severity=0), 'severity 0: expected an integer from 1 to 5'),
    (dict(corruption='fog', severity=6), 'severity 6: expected an integer from 1 to 5'),
    (dict(corruption='fog', severity=2.5), 'severity 2.5'),
    (dict(corruption='fog', severity=2, channel_order='hsv'), "channel_order 'hsv'"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CorruptImage(**kwargs)


def test_bad_images(images):
    transform = CorruptImage('fog', 1)
    with pytest.raises(ValueError, match=r"uint8 colour image .* got float32 \(64, 64, 3\)"):
        transform(dict(img_path=images[0], img=np.zeros((64, 64, 3), np.float32)))
    with pytest.raises(ValueError, match=r'got uint8 \(16, 64, 3\)'):
        transform(dict(img_path=images[0], img=np.zeros((16, 64, 3), np.uint8)))
    with pytest.raises(KeyError, match="neither 'img_path' nor 'img_id'"):
        transform(dict(img=np.zeros((64, 64, 3), np.uint8)))


def _sharpness(img: np.ndarray) -> float:
    """Mean absolute Laplacian of the grey image: the energy of fine detail."""
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F)).mean())


def _grey_stats(img: np.ndarray) -> tuple:
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)
    return float(grey.mean()), float(grey.std())


def _flat_share(img: np.ndarray) -> float:
    """Share of horizontally adjacent pixel pairs with identical colours."""
    return float((np.abs(np.diff(img.astype(int), axis=1)).sum(2) == 0).mean())


def _white_share(img: np.ndarray) -> float:
    return float((img.min(2) >= 200).mean())


# what each corruption of the benchmark does to an image, as its name says, measured against the clean image:
# (sharpness ratio, grey mean change, grey std ratio, change of the flat share, change of the white share)
EFFECTS = {
    'gaussian_noise': lambda sharp, mean, std, flat, white: sharp > 1.5 and abs(mean) < 20 and std > 1.1,
    'shot_noise': lambda sharp, mean, std, flat, white: sharp > 1.5 and abs(mean) < 20 and std > 1.1,
    'impulse_noise': lambda sharp, mean, std, flat, white: sharp > 1.5 and abs(mean) < 20 and std > 1.1,
    'defocus_blur': lambda sharp, mean, std, flat, white: sharp < 0.7 and abs(mean) < 3 and std < 1,
    'glass_blur': lambda sharp, mean, std, flat, white: sharp < 0.7 and abs(mean) < 3 and std < 1,
    'motion_blur': lambda sharp, mean, std, flat, white: sharp < 0.7 and abs(mean) < 3 and std < 1,
    'zoom_blur': lambda sharp, mean, std, flat, white: sharp < 0.7 and abs(mean) < 3 and std < 1,
    'snow': lambda sharp, mean, std, flat, white: mean > 10 and white > 0,  # brighter, white flakes
    'frost': lambda sharp, mean, std, flat, white: mean > 20,  # a bright icy overlay
    'fog': lambda sharp, mean, std, flat, white: sharp < 0.7,  # a haze that washes out fine detail
    'brightness': lambda sharp, mean, std, flat, white: mean > 5,
    'contrast': lambda sharp, mean, std, flat, white: std < 0.5 and abs(mean) < 3,
    # pixels move locally: the grey-level statistics stay, the picture does not (tested above)
    'elastic_transform': lambda sharp, mean, std, flat, white: abs(mean) < 3 and 0.8 < std < 1.1,
    'pixelate': lambda sharp, mean, std, flat, white: flat > 0.2 and abs(mean) < 3,  # blocks of one colour
    'jpeg_compression': lambda sharp, mean, std, flat, white: flat > 0.15 and sharp < 0.7,  # smoothed 8x8 blocks
}


def test_every_corruption_does_what_its_name_says(tmp_path):
    """On three 128x128 toy images at severities 1 and 5: noise adds fine detail at about the same brightness, blur
    removes it, snow / frost / brightness brighten, fog washes out detail, contrast shrinks the grey-level spread,
    pixelate and JPEG make flat blocks, elastic transform moves pixels but keeps the grey-level statistics."""
    assert sorted(EFFECTS) == sorted(CORRUPTIONS)
    root = str(tmp_path / 'toy')
    generate_toy_shapes(root, seed=0, num_train=1, num_val=3, image_size=128)
    failed = []
    for i in range(3):
        path = osp.join(root, 'val', f'{i:06d}.png')
        clean = _load(path)['img']
        mean, std = _grey_stats(clean)
        for corruption, effect in EFFECTS.items():
            for severity in (1, 5):
                out = CorruptImage(corruption, severity)(_load(path))['img']
                out_mean, out_std = _grey_stats(out)
                measured = (_sharpness(out) / _sharpness(clean), out_mean - mean, out_std / std,
                            _flat_share(out) - _flat_share(clean), _white_share(out) - _white_share(clean))
                if not effect(*measured):
                    failed.append((corruption, severity, i, np.round(measured, 3).tolist()))
    assert not failed, failed
