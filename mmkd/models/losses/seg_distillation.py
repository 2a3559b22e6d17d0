"""Pixel-wise distillation losses of a segmentation student from a teacher (Kothandaraman, Nambiar, Mittal, "Domain
Adaptive Knowledge Distillation for Driving Scene Semantic Segmentation", WACV 2021 Workshops, Sec. 3):

* ``pixel_kl``: KL(p_t || p_s) of the class distributions of each pixel, p = softmax(logits / T), times T^2;
* ``pixel_mse``: the mean squared difference of the class probabilities;
* ``quasi_teacher_ce``: cross entropy of the student against the teacher's argmax ("quasi-teacher labels").

Every term averages over the valid pixels only (``valid`` (N, H, W): False where the label is the ignore index) and
treats the teacher as a constant (its logits are detached). Student and teacher logits are (N, C, H, W) of one size:
a caller resizes both to the label size first.

About the KL: the paper's public code passes the teacher's log-probabilities as the target of ``F.kl_div``, which
expects probabilities, so what it optimises is not a KL divergence; here the target is the teacher's softmax and the
term is a true KL, >= 0 and 0 exactly when the two distributions agree. T divides both logits; the T^2 factor
(Hinton et al.) keeps the gradient's scale independent of T (the gradient with respect to a student logit is
``T * (q - p)``), so T = 1 is the plain KL.

Precision: whatever the autocast state and the input dtype, the terms are computed in float32 (float64 inputs stay
float64) with autocast disabled. Memory: ``pixel_kl`` works on slices of at most ``chunk_elements`` logits and keeps
no full-size intermediate for its backward (it recomputes the slices' softmaxes): beside the inputs it needs one
logits-sized tensor, the student's gradient, and the slices' working memory. The default slice size depends on the
device (see ``DEFAULT_CHUNK_ELEMENTS``): small slices cost a CPU nothing, while on a GPU each slice is a handful of
kernel launches, so there the slices are 8x larger.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from mmkd.registry import SHARED_MODELS
from .embedding_distillation import _is_number, _WeightedLoss
from .ssim import _autocast_disabled

# Slice size by device type, measured at 19 classes x 512 x 1024 x batch 2 (one logits tensor: 76 MiB), forward +
# backward, peak memory above the inputs:
# * 2-core CPU: 84 MiB with slices of 2^19 logits (111 MiB with 2^20, 203 MiB with 2^22; the unsliced formula
#   304 MiB), 0.11 s;
# * H200 (CUDA max_memory_allocated): 2^19 13.1 ms / 85 MiB, 2^20 6.9 ms / 93 MiB, 2^21 3.7 ms / 108 MiB, 2^22
#   2.5 ms / 140 MiB, 2^23 2.0 ms / 204 MiB, unsliced 1.5 ms / 230 MiB: 2^22 is the largest within twice a logits
#   tensor (152 MiB).
DEFAULT_CHUNK_ELEMENTS = dict(cpu=1 << 19, cuda=1 << 22)


def _check(name: str, student: Tensor, teacher: Tensor, valid: Optional[Tensor]) -> Tensor:
    """The (N, H, W) bool mask of valid pixels (all True when ``valid`` is None), after shape checks."""
    if student.dim() != 4 or student.shape != teacher.shape:
        raise ValueError(f'{name}: student {tuple(student.shape)} and teacher {tuple(teacher.shape)} logits must be '
                         '(N, C, H, W) of one shape (resize both to the label size first)')
    n, _, h, w = student.shape
    if valid is None:
        return torch.ones(n, h, w, dtype=torch.bool, device=student.device)
    if valid.shape != (n, h, w):
        raise ValueError(f'{name}: valid {tuple(valid.shape)} must be (N, H, W) = {(n, h, w)} for logits '
                         f'{tuple(student.shape)}')
    return valid.to(device=student.device, dtype=torch.bool)


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _row_slices(shape: Tuple[int, ...], chunk_elements: int):
    """(n, rows) slices of an (N, C, H, W) tensor, each of at most ``chunk_elements`` values (at least one row)."""
    n, c, h, w = shape
    rows = max(1, chunk_elements // max(1, c * w))
    for i in range(n):
        for r in range(0, h, rows):
            yield i, slice(r, min(h, r + rows))


class _PixelKL(torch.autograd.Function):
    """Sum over the valid pixels of T^2 * KL(softmax(t / T) || softmax(s / T)), slice by slice; the backward
    recomputes each slice's softmaxes instead of keeping them."""

    @staticmethod
    def forward(ctx, student: Tensor, teacher: Tensor, valid: Tensor, temperature: float, chunk_elements: int):
        total = student.new_zeros((), dtype=_compute_dtype(student))
        for i, rows in _row_slices(student.shape, chunk_elements):
            s = student[i, :, rows].to(total.dtype) / temperature
            t = teacher[i, :, rows].to(total.dtype) / temperature
            log_p = F.log_softmax(t, dim=0)
            # sum_c p (log p - log q) with log q = s - logsumexp(s): p sums to 1 over c
            kl = (log_p.exp() * (log_p - s)).sum(0) + torch.logsumexp(s, dim=0)
            total = total + (kl * valid[i, rows]).sum()
        ctx.save_for_backward(student, teacher, valid)
        ctx.temperature, ctx.chunk_elements = temperature, chunk_elements
        return total * temperature**2

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        student, teacher, valid = ctx.saved_tensors
        temperature = ctx.temperature
        grad = torch.zeros_like(student)
        scale = grad_output * temperature
        for i, rows in _row_slices(student.shape, ctx.chunk_elements):
            dtype = _compute_dtype(student)
            q = F.softmax(student[i, :, rows].to(dtype) / temperature, dim=0)
            p = F.softmax(teacher[i, :, rows].to(dtype) / temperature, dim=0)
            grad[i, :, rows] = ((q - p) * valid[i, rows] * scale).to(grad.dtype)
        return grad, None, None, None, None


def pixel_kl(student: Tensor,
             teacher: Tensor,
             valid: Optional[Tensor] = None,
             temperature: float = 1.0,
             chunk_elements: Optional[int] = None) -> Tensor:
    """Mean over the valid pixels of ``T^2 * KL(softmax(teacher / T) || softmax(student / T))`` over the classes.

    Args:
        student: (N, C, H, W) student logits.
        teacher: (N, C, H, W) teacher logits (detached: the term gives the teacher no gradient).
        valid: (N, H, W) bool, False at ignored pixels; None = all valid.
        temperature: T > 0.
        chunk_elements: logits per slice of the computation (bounds the working memory); None: the student's
            device type's entry of ``DEFAULT_CHUNK_ELEMENTS`` (the CPU's for other devices).

    Returns:
        Tensor: a scalar (0 when no pixel is valid, still in the student's graph).
    """
    valid = _check('pixel_kl', student, teacher, valid)
    if not temperature > 0:
        raise ValueError(f'pixel_kl: temperature must be > 0, got {temperature!r}')
    if chunk_elements is None:
        chunk_elements = DEFAULT_CHUNK_ELEMENTS.get(student.device.type, DEFAULT_CHUNK_ELEMENTS['cpu'])
    with _autocast_disabled(student.device.type):
        total = _PixelKL.apply(student, teacher.detach(), valid, float(temperature), int(chunk_elements))
        return total / valid.sum().clamp(min=1).to(total.dtype)


def pixel_mse(student: Tensor, teacher: Tensor, valid: Optional[Tensor] = None) -> Tensor:
    """Mean over the valid pixels and the classes of ``(softmax(student) - softmax(teacher))^2``.

    Args:
        student, teacher, valid: as :func:`pixel_kl`.

    Returns:
        Tensor: a scalar (0 when no pixel is valid).
    """
    valid = _check('pixel_mse', student, teacher, valid)
    with _autocast_disabled(student.device.type):
        dtype = _compute_dtype(student)
        diff = F.softmax(student.to(dtype), dim=1) - F.softmax(teacher.detach().to(dtype), dim=1)
        squared = (diff * diff).sum(1) * valid
        return squared.sum() / (valid.sum().clamp(min=1) * student.shape[1]).to(dtype)


def quasi_teacher_labels(teacher: Tensor,
                         valid: Optional[Tensor] = None,
                         threshold: Optional[float] = None,
                         ignore_index: int = 255) -> Tensor:
    """(N, H, W) long labels: the teacher's argmax class per pixel; ``ignore_index`` where the pixel is not valid
    or (with a ``threshold``) where the teacher's top probability is below it."""
    labels = teacher.detach().argmax(1)
    keep = torch.ones_like(labels, dtype=torch.bool) if valid is None else valid.to(torch.bool)
    if threshold is not None:
        with _autocast_disabled(teacher.device.type):
            top = F.softmax(teacher.detach().to(_compute_dtype(teacher)), dim=1).amax(1)
        keep = keep & (top >= threshold)
    return labels.masked_fill(~keep, ignore_index)


def quasi_teacher_ce(student: Tensor,
                     teacher: Tensor,
                     valid: Optional[Tensor] = None,
                     threshold: Optional[float] = None) -> Tensor:
    """Cross entropy of the student logits against :func:`quasi_teacher_labels`, averaged over the kept pixels.

    Args:
        student, teacher, valid: as :func:`pixel_kl`.
        threshold: keep only pixels where the teacher's top probability is at least this (None: all, as in the
            paper's code).

    Returns:
        Tensor: a scalar (0 when no pixel is kept, still in the student's graph).
    """
    valid = _check('quasi_teacher_ce', student, teacher, valid)
    ignore = -100
    labels = quasi_teacher_labels(teacher, valid, threshold, ignore_index=ignore)
    with _autocast_disabled(student.device.type):
        logits = student.to(_compute_dtype(student))
        losses = F.cross_entropy(logits, labels, ignore_index=ignore, reduction='sum')
        return losses / (labels != ignore).sum().clamp(min=1).to(losses.dtype)


class _PixelDistillationLoss(_WeightedLoss):
    """``loss_weight`` times a pixel term of (student logits, teacher logits, valid mask)."""

    def forward(self, student: Tensor, teacher: Tensor, valid: Optional[Tensor] = None) -> Tensor:
        """The weighted term.

        Args:
            student: (N, C, H, W) student logits.
            teacher: (N, C, H, W) teacher logits (no gradient flows to them).
            valid: (N, H, W) bool, False at ignored pixels (the label's ignore index); None = all valid.

        Returns:
            Tensor: a float32 scalar (float64 for float64 logits).
        """
        return self.loss_weight * self._loss(student, teacher, valid)

    def _loss(self, student: Tensor, teacher: Tensor, valid: Optional[Tensor]) -> Tensor:
        raise NotImplementedError


@SHARED_MODELS.register_module()
class PixelKLLoss(_PixelDistillationLoss):
    """:func:`pixel_kl`: mean over the valid pixels of T^2 KL(softmax(t / T) || softmax(s / T)).

    Args:
        temperature: T > 0 (1: the plain KL).
        loss_weight: lambda_KL (the paper's best combination (vii): 0.1).
        chunk_elements: logits per slice of the computation (bounds its working memory); None: by device type
            (``DEFAULT_CHUNK_ELEMENTS``: 2^19 on a CPU, 2^22 on a GPU).
    """

    def __init__(self, temperature: float = 1.0, loss_weight: float = 1.0, chunk_elements: Optional[int] = None):
        super().__init__(loss_weight)
        if not _is_number(temperature) or not math.isfinite(temperature) or not temperature > 0:
            self._invalid('temperature', 'a finite number > 0', temperature)
        if chunk_elements is not None and (not isinstance(chunk_elements, int) or isinstance(chunk_elements, bool)
                                           or chunk_elements < 1):
            self._invalid('chunk_elements', 'None or an int >= 1', chunk_elements)
        self.temperature = float(temperature)
        self.chunk_elements = chunk_elements

    def _loss(self, student, teacher, valid):
        return pixel_kl(student, teacher, valid, self.temperature, self.chunk_elements)


@SHARED_MODELS.register_module()
class PixelMSELoss(_PixelDistillationLoss):
    """:func:`pixel_mse`: mean squared difference of the class probabilities over the valid pixels and classes.

    Args:
        loss_weight: lambda_MSE (the paper's best combination (vii): 0.01).
    """

    def _loss(self, student, teacher, valid):
        return pixel_mse(student, teacher, valid)


@SHARED_MODELS.register_module()
class QuasiTeacherCELoss(_PixelDistillationLoss):
    """:func:`quasi_teacher_ce`: cross entropy against the teacher's argmax labels.

    Args:
        threshold: keep only pixels where the teacher's top probability is at least this (None: all pixels, as in
            the paper's code).
        loss_weight: lambda_CE-quasiT (the paper's best combination (vii): 1.0).
    """

    def __init__(self, threshold: Optional[float] = None, loss_weight: float = 1.0):
        super().__init__(loss_weight)
        if threshold is not None and (not _is_number(threshold) or not 0 <= threshold <= 1):
            self._invalid('threshold', 'None or a probability in [0, 1]', threshold)
        self.threshold = threshold

    def _loss(self, student, teacher, valid):
        return quasi_teacher_ce(student, teacher, valid, self.threshold)
