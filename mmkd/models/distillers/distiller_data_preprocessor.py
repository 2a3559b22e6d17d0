"""One raw batch, each network's own normalisation: the data preprocessor of every distiller."""
from typing import List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseDataPreprocessor, ImgDataPreprocessor
from torch import Tensor


def pixel_normalisation(preprocessor: nn.Module) -> Optional[dict]:
    """What a data preprocessor does to pixel values, or ``None`` for a kind this function does not know.

    Reads mmengine's ``ImgDataPreprocessor`` (and mmdet's ``DetDataPreprocessor``, a subclass) and mmseg's
    ``SegDataPreProcessor``.

    Returns:
        dict: ``flip`` (reverse the channel order: ``bgr_to_rgb`` / ``rgb_to_bgr``), ``mean`` and ``std``
        (tensors of shape (C, 1, 1), or ``None`` without normalisation) and ``pad_value`` (in normalised
        units: padding follows normalisation).
    """
    if isinstance(preprocessor, ImgDataPreprocessor):
        flip, pad_value = preprocessor._channel_conversion, preprocessor.pad_value
    elif hasattr(preprocessor, 'channel_conversion') and hasattr(preprocessor, 'pad_val'):
        flip, pad_value = preprocessor.channel_conversion, preprocessor.pad_val
    else:
        return None
    normalise = preprocessor._enable_normalize
    return dict(
        flip=bool(flip),
        mean=preprocessor.mean if normalise else None,
        std=preprocessor.std if normalise else None,
        pad_value=pad_value)


def _same_pixels(a: dict, b: dict) -> bool:
    """Equal channel order, mean, std and pad value."""

    def same(x, y):
        if x is None or y is None:
            return x is y
        return x.shape == y.shape and torch.equal(x.cpu(), y.cpu())

    return (a['flip'] == b['flip'] and a['pad_value'] == b['pad_value'] and same(a['mean'], b['mean'])
            and same(a['std'], b['std']))


class DistillerDataPreprocessor(BaseDataPreprocessor):
    """The student's data preprocessor, plus the teacher's normalisation of the same raw batch.

    The student's inputs are exactly what its own preprocessor gives (it runs unchanged). When the
    teacher's config normalises pixels differently (mean / std, channel order, pad value: e.g. a
    caffe-style BGR teacher beside a pytorch-style RGB student), a training batch also gets the
    teacher's version of the same raw images: each image in the teacher's channel order and
    normalisation, placed on the student's canvas and padded with the teacher's pad value. The canvas
    (the stacked, padded batch shape) is the student's, whatever the teacher's ``pad_size_divisor``, so
    that student and teacher maps align pixel for pixel; where the divisors are equal, the teacher's
    batch is exactly what the teacher's own preprocessor gives on the raw images. The student's batch
    augments (e.g. mmdet's ``BatchSyncRandomResize``) run once, on both batches stacked along the
    batch, so that both see the same geometry and the data samples are updated once (padding that
    an augment adds uses the student's pad value).

    :meth:`teacher_inputs` returns the teacher's batch for the student batch made last. A teacher that
    normalises like the student shares the student's batch at no cost.

    Args:
        student: the student's data preprocessor (registered: it moves and is saved as before).
        teacher: the teacher's data preprocessor (read only; the teacher moves it).
    """

    def __init__(self, student: nn.Module, teacher: nn.Module):
        super().__init__()
        self.student = student
        teacher_pixels, student_pixels = pixel_normalisation(teacher), pixel_normalisation(student)
        if teacher_pixels is None or student_pixels is None:
            # an unknown kind of preprocessor: the teacher can only share the student's inputs
            self.shares_normalisation = type(student) is type(teacher)
            if not self.shares_normalisation:
                raise TypeError(f'the student preprocessor {type(student).__name__} and the teacher preprocessor '
                                f'{type(teacher).__name__} differ and mmkd cannot read how they normalise pixels')
        else:
            self.shares_normalisation = _same_pixels(student_pixels, teacher_pixels)
        # not a submodule, like the teacher it belongs to; read when used, as the teacher's moves replace its buffers
        self.__dict__['_teacher'] = teacher
        self._last: Optional[Tuple[Tensor, Tensor]] = None

    def forward(self, data: dict, training: bool = False) -> Union[dict, list]:
        """The student's preprocessing of ``data``; in training, the teacher's batch is kept aside."""
        self._last = None
        if not training or self.shares_normalisation:
            return self.student(data, training)
        data = self.cast_data(data)
        raw = data['inputs']
        augments = getattr(self.student, 'batch_augments', None)
        self.student.batch_augments = None
        try:
            out = self.student(data, training)
        finally:
            self.student.batch_augments = augments
        inputs, samples = out['inputs'], out['data_samples']
        teacher = self._normalise(raw, inputs.shape[-2:])
        if augments:
            # stacked along the batch, not the channels: per-image kernels keep the student's bits
            # (bilinear resizing of 6 channels differs from that of 3 in the last bit on CPU)
            num = len(inputs)
            for augment in augments:
                both, samples = augment(torch.cat([inputs, teacher]), samples)
                inputs, teacher = both[:num], both[num:]
        self._last = (inputs, teacher)
        return dict(out, inputs=inputs, data_samples=samples)

    def _normalise(self, raw: Union[Tensor, List[Tensor]], canvas: Tuple[int, int]) -> Tensor:
        """(N, C, H, W) batch of the raw images ((C, h, w) each) normalised the teacher's way on a canvas."""
        pixels = pixel_normalisation(self.__dict__['_teacher'])
        batch = raw[0].new_full((len(raw), raw[0].shape[-3], *canvas), pixels['pad_value'], dtype=torch.float32)
        for i, image in enumerate(raw):
            if pixels['flip'] and image.shape[0] == 3:
                image = image[[2, 1, 0], ...]
            image = image.float()
            if pixels['mean'] is not None:
                image = (image - pixels['mean']) / pixels['std']
            batch[i, :, :image.shape[-2], :image.shape[-1]] = image
        return batch

    def teacher_batch(self, raw: List[Tensor]) -> Tensor:
        """(N, C, H, W) batch of raw (C, h, w) images (e.g. a cross-quality teacher's own views) normalised the
        teacher's way, padded to the largest (h, w) with the teacher's pad value."""
        canvas = (max(image.shape[-2] for image in raw), max(image.shape[-1] for image in raw))
        return self._normalise(raw, canvas)

    def teacher_inputs(self, inputs: Tensor) -> Tensor:
        """The teacher's batch that goes with the student batch ``inputs`` (N, C, H, W).

        Raises:
            RuntimeError: the teacher normalises differently and ``inputs`` is not the student batch that
                this preprocessor made last in training mode.
        """
        if self.shares_normalisation:
            return inputs
        if self._last is None or self._last[0] is not inputs:
            raise RuntimeError('the teacher normalises pixels differently from the student (its config has another '
                               'data_preprocessor), so its inputs are made from the raw batch: pass the batch through '
                               "the distiller's data_preprocessor(data, training=True) and give its 'inputs' to loss()")
        return self._last[1]
