"""The image corruptions of the Robust Detection Benchmark as a seeded, cached pipeline transform.

Michaelis et al., "Benchmarking Robustness in Object Detection: Autonomous Driving when Winter is Coming" (arXiv
2019): 15 corruptions in four groups at severities 1 to 5, computed by the ``imagecorruptions`` package, which this
module calls unchanged. On today's stack (numpy 2, scikit-image >= 0.19, setuptools >= 81) the package breaks in four
places; :func:`apply_corruption` mends them for the duration of its call, by swapping names in the package's module
namespace (never by changing a corruption):

* ``fog`` calls ``np.float_``, removed in numpy 2.0: the package sees numpy with ``float_ = float64``;
* ``glass_blur`` passes ``multichannel=True`` to ``skimage.filters.gaussian``, removed in scikit-image 0.19: the
  package sees a ``gaussian`` that reads it as ``channel_axis=-1``;
* ``impulse_noise`` draws from ``skimage.util.random_noise``, which since scikit-image 0.21 seeds a fresh generator
  from the operating system (the package expected numpy's global state): the package sees a ``random_noise`` whose
  generator is seeded from numpy's global state, so that the corruption is reproducible like the others;
* the package imports ``pkg_resources`` (deprecated, removed from setuptools 81) only to find its frost pictures:
  without it, the import goes through a stand-in that resolves the same files.
"""
import contextlib
import functools
import hashlib
import importlib
import inspect
import os
import os.path as osp
import secrets
import sys
import types
import warnings
from typing import Iterator, Optional

import cv2
import numpy as np
from mmcv.transforms import BaseTransform

from mmkd.registry import DET_TRANSFORMS

# the benchmark's corruptions by group, in the benchmark's order (Michaelis et al., Fig. 2)
CORRUPTION_GROUPS = {
    'noise': ('gaussian_noise', 'shot_noise', 'impulse_noise'),
    'blur': ('defocus_blur', 'glass_blur', 'motion_blur', 'zoom_blur'),
    'weather': ('snow', 'frost', 'fog', 'brightness'),
    'digital': ('contrast', 'elastic_transform', 'pixelate', 'jpeg_compression'),
}
CORRUPTIONS = tuple(name for group in CORRUPTION_GROUPS.values() for name in group)
SEVERITIES = (1, 2, 3, 4, 5)
MIN_SIDE = 32  # imagecorruptions refuses smaller images


def check_corruption(corruption: str, severity: int) -> None:
    """Raise ``ValueError`` unless ``corruption`` is one of the 15 benchmark corruptions and ``severity`` in 1..5."""
    if corruption not in CORRUPTIONS:
        raise ValueError(f'unknown corruption {corruption!r}: expected one of {", ".join(CORRUPTIONS)}')
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or severity not in SEVERITIES:
        raise ValueError(f'corruption severity {severity!r}: expected an integer from 1 to 5 '
                         '(severity 0, the clean image, is the test set without this transform)')


@functools.lru_cache(maxsize=None)
def _imagecorruptions() -> types.ModuleType:
    """``imagecorruptions.corruptions``, imported with or without ``pkg_resources``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # pkg_resources' and scipy's deprecation notices, printed at import
            return importlib.import_module('imagecorruptions.corruptions')
    except ImportError as error:
        if error.name != 'pkg_resources':
            raise ImportError('the corruption transform needs the imagecorruptions package: '
                              'pip install imagecorruptions') from error
    # pkg_resources only locates files beside the importing module: a stand-in for the import alone
    stand_in = types.ModuleType('pkg_resources')
    stand_in.resource_filename = lambda module, path: osp.join(osp.dirname(sys.modules[module].__file__), path)
    missing = object()
    saved = sys.modules.get('pkg_resources', missing)
    sys.modules['pkg_resources'] = stand_in
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            return importlib.import_module('imagecorruptions.corruptions')
    finally:
        if saved is missing:
            del sys.modules['pkg_resources']
        else:
            sys.modules['pkg_resources'] = saved


class _NumpyWithFloat_(types.ModuleType):
    """numpy as seen by the package: numpy itself, plus the ``float_`` alias that numpy 2 removed."""
    float_ = np.float64

    def __getattr__(self, name):
        return getattr(np, name)


class _Delegate(types.ModuleType):
    """A module that answers with ``module``'s attributes except those given as keywords."""

    def __init__(self, module: types.ModuleType, **overrides) -> None:
        super().__init__(module.__name__)
        self._module = module
        self.__dict__.update(overrides)

    def __getattr__(self, name):
        return getattr(self._module, name)


def _gaussian_reading_multichannel(gaussian):

    def wrapped(image, *args, multichannel=None, **kwargs):
        if multichannel is not None:
            kwargs['channel_axis'] = -1 if multichannel else None
        return gaussian(image, *args, **kwargs)

    return wrapped


def _random_noise_from_global_state(random_noise):

    def wrapped(image, *args, **kwargs):
        if kwargs.get('rng') is None:
            kwargs['rng'] = np.random.randint(2**31)
        return random_noise(image, *args, **kwargs)

    return wrapped


@contextlib.contextmanager
def _compatible(module: types.ModuleType) -> Iterator[None]:
    """The package's namespace mended for this stack while the block runs (see the module docstring)."""
    import skimage
    import skimage.util
    overrides = {}
    if not hasattr(np, 'float_'):
        overrides['np'] = _NumpyWithFloat_('numpy')
    if 'multichannel' not in inspect.signature(module.gaussian).parameters:
        overrides['gaussian'] = _gaussian_reading_multichannel(module.gaussian)
    if 'rng' in inspect.signature(skimage.util.random_noise).parameters:
        util = _Delegate(skimage.util, random_noise=_random_noise_from_global_state(skimage.util.random_noise))
        overrides['sk'] = _Delegate(skimage, util=util)
    saved = {name: getattr(module, name) for name in overrides}
    vars(module).update(overrides)
    try:
        yield
    finally:
        vars(module).update(saved)


def corruption_seed(corruption: str, severity: int, image_key: str, seed: int = 0) -> int:
    """The 32-bit seed of one corrupted image, a hash of what identifies it (the same in every process)."""
    text = f'{corruption}|{severity}|{image_key}|{seed}'.encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:4], 'little')


def apply_corruption(img_rgb: np.ndarray, corruption: str, severity: int, random_seed: int) -> np.ndarray:
    """``img_rgb`` corrupted by ``imagecorruptions`` with numpy's global random state seeded with ``random_seed``;
    the global state is restored afterwards.

    Args:
        img_rgb (np.ndarray): uint8 image of shape (H, W, 3), RGB (the package's colour order), H, W >= 32.
        corruption (str): one of :data:`CORRUPTIONS`.
        severity (int): 1 to 5.
        random_seed (int): seed in [0, 2**32).

    Returns:
        np.ndarray: the corrupted uint8 image, shape (H, W, 3), RGB.
    """
    check_corruption(corruption, severity)
    module = _imagecorruptions()
    from imagecorruptions import corrupt
    state = np.random.get_state()
    np.random.seed(random_seed)
    try:
        with _compatible(module):
            out = corrupt(img_rgb, severity=int(severity), corruption_name=corruption)
    finally:
        np.random.set_state(state)
    return np.ascontiguousarray(out)


@DET_TRANSFORMS.register_module()
class CorruptImage(BaseTransform):
    """Corrupt ``results['img']`` with one benchmark corruption at one severity, the same way in every process.

    Each image's corruption draws its randomness from a seed hashed from (corruption, severity, the image's file
    name, ``seed``), so every model, every dataloader worker and every run sees the same corrupted image, whatever the
    number of workers and the order of the images; numpy's global random state is left as it was. Unlike mmdet's
    ``Corrupt``, which draws from whatever state the worker's global generator is in and passes mmcv's BGR image to
    a package that expects RGB, this transform hands ``imagecorruptions`` RGB (``brightness`` works in HSV, ``frost``
    blends an RGB picture, ``snow`` weighs the channels as RGB) and converts back.

    With ``cache_dir``, the corrupted image is written there once (lossless PNG, renamed into place so a reader
    never sees half a file) and read back on every later call, by any model or process: the expensive corruptions
    (``glass_blur``: seconds per image) are computed once per run. The cache file name is derived from the image's
    real path, size and modification time, the corruption, the severity and ``seed``, so a changed image is
    corrupted anew.

    Required keys: ``img`` (uint8, (H, W, 3), H, W >= 32), ``img_path`` (or ``img_id`` when there is no file).
    Modified keys: ``img``.

    Args:
        corruption (str): one of the 15 benchmark corruptions (:data:`CORRUPTIONS`).
        severity (int): 1 to 5.
        seed (int): the user's seed, mixed into every image's seed. Defaults to 0.
        cache_dir (str, optional): where corrupted images are kept. Defaults to None (no cache).
        channel_order (str): the colour order of ``results['img']``, 'bgr' (mmcv's loading) or 'rgb'.
    """

    def __init__(self,
                 corruption: str,
                 severity: int,
                 seed: int = 0,
                 cache_dir: Optional[str] = None,
                 channel_order: str = 'bgr') -> None:
        check_corruption(corruption, severity)
        if channel_order not in ('bgr', 'rgb'):
            raise ValueError(f"CorruptImage: channel_order {channel_order!r}: expected 'bgr' or 'rgb'")
        self.corruption = corruption
        self.severity = int(severity)
        self.seed = int(seed)
        self.cache_dir = cache_dir
        self.channel_order = channel_order

    @staticmethod
    def _image_key(results: dict) -> str:
        if results.get('img_path'):
            return osp.basename(str(results['img_path']))
        if results.get('img_id') is not None:
            return f'id:{results["img_id"]}'
        raise KeyError("CorruptImage: the results have neither 'img_path' nor 'img_id' to seed the corruption with")

    def cache_path(self, results: dict) -> str:
        """Where the corrupted image of ``results`` is cached in ``cache_dir``."""
        path = results.get('img_path')
        if path and osp.isfile(path):
            info = os.stat(path)
            source = f'{osp.realpath(path)}|{info.st_size}|{info.st_mtime_ns}'
            stem = osp.splitext(osp.basename(path))[0]
        else:
            source = self._image_key(results)
            stem = 'image'
        digest = hashlib.sha1(f'{source}|{self.seed}'.encode()).hexdigest()[:16]
        return osp.join(self.cache_dir, self.corruption, str(self.severity), f'{stem}-{digest}.png')

    def _read_cache(self, path: str, shape: tuple) -> Optional[np.ndarray]:
        if not osp.isfile(path):
            return None
        # unchanged, not converted: a grey, 16-bit or RGBA file would otherwise pass as this colour image
        img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if img is None or img.shape != shape or img.dtype != np.uint8:
            found = 'unreadable' if img is None else f'{img.dtype} {img.shape}'
            warnings.warn(f'CorruptImage: the cached image {path} is not a uint8 image of shape {shape} ({found}; '
                          'e.g. torn by a crash): it is recomputed')
            return None
        return img if self.channel_order == 'bgr' else np.ascontiguousarray(img[..., ::-1])

    def _write_cache(self, path: str, img: np.ndarray) -> None:
        bgr = img if self.channel_order == 'bgr' else img[..., ::-1]
        ok, encoded = cv2.imencode('.png', np.ascontiguousarray(bgr))
        if not ok:
            raise OSError(f'CorruptImage: could not encode the corrupted image for {path}')
        os.makedirs(osp.dirname(path), exist_ok=True)
        # a renamed temporary file: concurrent workers or runs never read half an image; no fsync, as a cache
        # entry lost in a power cut is recomputed
        tmp = f'{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp'
        try:
            with open(tmp, 'wb') as f:
                f.write(encoded.tobytes())
            os.replace(tmp, path)
        except BaseException:
            if osp.exists(tmp):
                os.unlink(tmp)
            raise

    def transform(self, results: dict) -> dict:
        """Replace ``results['img']`` by its corrupted version (same shape, uint8, same colour order)."""
        img = results.get('img')
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3 \
                or min(img.shape[:2]) < MIN_SIDE:
            found = f'{img.dtype} {img.shape}' if isinstance(img, np.ndarray) else type(img).__name__
            raise ValueError(f"CorruptImage: results['img'] must be a uint8 colour image of shape (H, W, 3) with "
                             f'H, W >= {MIN_SIDE} (load it with LoadImageFromFile, color_type color, no to_float32); '
                             f'got {found} from {results.get("img_path")}')
        path = self.cache_path(results) if self.cache_dir else None
        out = self._read_cache(path, img.shape) if path else None
        if out is None:
            rgb = img[..., ::-1] if self.channel_order == 'bgr' else img
            seed = corruption_seed(self.corruption, self.severity, self._image_key(results), self.seed)
            out = apply_corruption(np.ascontiguousarray(rgb), self.corruption, self.severity, seed)
            if self.channel_order == 'bgr':
                out = np.ascontiguousarray(out[..., ::-1])
            if path:
                self._write_cache(path, out)
        results['img'] = out
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(corruption={self.corruption!r}, severity={self.severity}, '
                f'seed={self.seed}, cache_dir={self.cache_dir!r}, channel_order={self.channel_order!r})')
