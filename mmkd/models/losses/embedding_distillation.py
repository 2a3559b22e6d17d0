"""Distillation losses for embedding networks (Yu et al., "Learning Metrics from Teachers: Compact Networks for
Image Embedding", CVPR 2019, Sec. 4).

* absolute teacher, Eq. (4): the student's embedding of an image learns the teacher's coordinates;
* relative teacher, Eq. (5)-(6): the student learns the teacher's distances between the images of a batch;
* hint, Eq. (8): an intermediate student map learns the teacher's map of the same shape;
* attention transfer, Eq. (10)-(11): the student learns the teacher's normalised spatial attention.

The functions hold the math and accept any floating dtype (float64 for reference checks); both arguments take part
in the autograd graph as given. The registered wrappers add ``loss_weight``, detach the teacher and follow mmkd's
precision contract: whatever the autocast state and the input dtype, the loss is computed in float32 (float64 when
an input is float64) with autocast disabled.

Norms and distances are taken where their gradient is defined and 0 where it is not: a student equal to its teacher,
or two identical embeddings in a batch (a zero distance), give finite gradients.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from mmkd.registry import MODELS
from .ssim import _autocast_disabled

RELATIVE_REDUCTIONS = ('frobenius', 'mean')


def _check_same_shape(name: str, student: Tensor, teacher: Tensor, dims: int, layout: str) -> None:
    if student.dim() != dims or student.shape != teacher.shape:
        raise ValueError(f'{name}: student {tuple(student.shape)} and teacher {tuple(teacher.shape)} must have one '
                         f'shape {layout}')


def pairwise_distances(embeddings: Tensor) -> Tensor:
    """Euclidean distances between the rows of ``embeddings`` (B, D), a (B, B) matrix with a zero diagonal.

    The distances come from the coordinate differences (not from the Gram matrix, whose rounding leaves distances
    of about 1e-3 between identical float32 rows), so identical rows are exactly 0 apart; the gradient of a zero
    distance is taken as 0 (torch's ``cdist`` backward), so duplicated embeddings give finite gradients. The price:
    no matrix product (forward + backward of 112 x 2048 embeddings took 74 ms on one CPU thread, 13 ms with the
    Gram form).
    """
    return torch.cdist(embeddings, embeddings, compute_mode='donot_use_mm_for_euclid_dist')


def absolute_embedding_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """Eq. (4) of Yu et al.: the mean over the batch of ||F_S(x_i) - F_T(x_i)||_2 (the reference code's form).

    Args:
        student: student embeddings (B, D).
        teacher: teacher embeddings (B, D).

    Returns:
        Tensor: a scalar.
    """
    _check_same_shape('absolute_embedding_loss', student, teacher, 2, '(B, D)')
    return torch.linalg.vector_norm(student - teacher, dim=1).mean()


def relative_distance_loss(student: Tensor, teacher: Tensor, reduction: str = 'frobenius') -> Tensor:
    """Eq. (5)-(6) of Yu et al.: |d^S_ij - d^T_ij| over the pairs of a batch, with d_ij = ||F(x_i) - F(x_j)||_2.

    Args:
        student: student embeddings (B, D_S).
        teacher: teacher embeddings (B, D_T); the embedding sizes may differ, only distances are compared.
        reduction: ``'frobenius'`` (the reference code): the Frobenius norm of the (B, B) difference of the two
            distance matrices (it grows with B; the paper's lambdas are for this form and batches of 32);
            ``'mean'``: the mean of |d^S_ij - d^T_ij| over the B (B - 1) pairs i != j (0 for B < 2).

    Returns:
        Tensor: a scalar.
    """
    if reduction not in RELATIVE_REDUCTIONS:
        raise ValueError(f'relative_distance_loss: reduction must be one of {RELATIVE_REDUCTIONS}, got {reduction!r}')
    if student.dim() != 2 or teacher.dim() != 2 or student.shape[0] != teacher.shape[0]:
        raise ValueError(f'relative_distance_loss: student {tuple(student.shape)} and teacher '
                         f'{tuple(teacher.shape)} must be (B, D_S) and (B, D_T) with one batch size B')
    difference = pairwise_distances(student) - pairwise_distances(teacher)
    if reduction == 'frobenius':
        return torch.linalg.vector_norm(difference)
    num_pairs = difference.shape[0] * (difference.shape[0] - 1)
    # the diagonal is exactly 0 in both matrices: summing it in changes nothing
    return difference.abs().sum() / max(num_pairs, 1)


def hint_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """Eq. (8) of Yu et al. (FitNets' hint): ||F_S(x_i) - F_T(x_i)||_F per image, averaged over the batch.

    Args:
        student: student maps (B, C, H, W), already brought to the teacher's shape (e.g. by a 1x1 conv).
        teacher: teacher maps (B, C, H, W).

    Returns:
        Tensor: a scalar.
    """
    _check_same_shape('hint_loss', student, teacher, 4, '(B, C, H, W)')
    return torch.linalg.vector_norm((student - teacher).flatten(1), dim=1).mean()


def attention_map(features: Tensor, p: float = 2) -> Tensor:
    """Eq. (10) of Yu et al. (Zagoruyko and Komodakis): A = sum_c |F_c|^p, flattened and L2-normalised per image.

    Args:
        features: maps (B, C, H, W).
        p: exponent, >= 1 (for p < 1 the gradient of |F|^p at F = 0 is infinite).

    Returns:
        Tensor: (B, H * W), each row of unit L2 norm (a row of zeros stays zero).
    """
    attention = features.abs().pow(p).sum(1).flatten(1)
    return F.normalize(attention, p=2, dim=1)


def attention_transfer_loss(student: Tensor, teacher: Tensor, p: float = 2) -> Tensor:
    """Eq. (11) of Yu et al.: ||A_S / ||A_S||_2 - A_T / ||A_T||_2||_2 per image, averaged over the batch.

    Args:
        student: student maps (B, C_S, H, W).
        teacher: teacher maps (B, C_T, H, W); the channel counts may differ, batch and spatial sizes must match.
        p: exponent of :func:`attention_map`.

    Returns:
        Tensor: a scalar.
    """
    if student.dim() != 4 or teacher.dim() != 4 or _batch_and_spatial(student) != _batch_and_spatial(teacher):
        raise ValueError(f'attention_transfer_loss: student {tuple(student.shape)} and teacher '
                         f'{tuple(teacher.shape)} must be (B, C_S, H, W) and (B, C_T, H, W) with one B, H and W')
    difference = attention_map(student, p) - attention_map(teacher, p)
    return torch.linalg.vector_norm(difference, dim=1).mean()


def _batch_and_spatial(x: Tensor) -> Tuple[int, ...]:
    return (x.shape[0], ) + tuple(x.shape[2:])


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _WeightedLoss(torch.nn.Module):
    """A loss module with a checked ``loss_weight`` (a number >= 0); the base of the metric-learning and the
    embedding-distillation wrappers."""

    def __init__(self, loss_weight: float = 1.0):
        super().__init__()
        if not _is_number(loss_weight) or not loss_weight >= 0:
            self._invalid('loss_weight', 'a number >= 0', loss_weight)
        self.loss_weight = loss_weight

    def _invalid(self, name: str, expected: str, value) -> None:
        raise ValueError(f'{type(self).__name__}: {name} must be {expected}, got {value!r}')


class _EmbeddingDistillationLoss(_WeightedLoss):
    """``loss_weight`` times :meth:`_loss` of the student and the detached teacher, in float32 (float64 for float64
    inputs) with autocast disabled."""

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        """The weighted loss of ``student`` towards ``teacher``; no gradient flows to ``teacher``.

        Returns:
            Tensor: a float32 scalar (float64 when an input is float64).
        """
        dtype = torch.float64 if torch.float64 in (student.dtype, teacher.dtype) else torch.float32
        with _autocast_disabled(student.device.type):
            return self.loss_weight * self._loss(student.to(dtype), teacher.detach().to(dtype))

    def _loss(self, student: Tensor, teacher: Tensor) -> Tensor:
        raise NotImplementedError


@MODELS.register_module()
class AbsoluteEmbeddingLoss(_EmbeddingDistillationLoss):
    """The absolute teacher (Eq. (4) of Yu et al.): :func:`absolute_embedding_loss` of student and teacher
    embeddings (B, D). Reference lambdas (``loss_weight``): CUB 1.0, Cars 1.5, SOP 2.0.

    Args:
        loss_weight: lambda of Eq. (7).
    """

    def _loss(self, student: Tensor, teacher: Tensor) -> Tensor:
        return absolute_embedding_loss(student, teacher)


@MODELS.register_module()
class RelativeDistanceLoss(_EmbeddingDistillationLoss):
    """The relative teacher (Eq. (5)-(6) of Yu et al.): :func:`relative_distance_loss` of student embeddings
    (B, D_S) and teacher embeddings (B, D_T). Reference lambdas (``loss_weight``, with ``'frobenius'`` and batches
    of 32): CUB 0.3, Cars 0.1, SOP 1.0.

    Args:
        reduction: ``'frobenius'`` (default, the reference code) or ``'mean'``, see :func:`relative_distance_loss`.
        loss_weight: lambda of Eq. (7).
    """

    def __init__(self, reduction: str = 'frobenius', loss_weight: float = 1.0):
        super().__init__(loss_weight)
        if reduction not in RELATIVE_REDUCTIONS:
            self._invalid('reduction', f'one of {RELATIVE_REDUCTIONS}', reduction)
        self.reduction = reduction

    def _loss(self, student: Tensor, teacher: Tensor) -> Tensor:
        return relative_distance_loss(student, teacher, self.reduction)


@MODELS.register_module()
class HintLoss(_EmbeddingDistillationLoss):
    """The hint loss (Eq. (8) of Yu et al.): :func:`hint_loss` of student and teacher maps (B, C, H, W) of one shape.

    Args:
        loss_weight: mu of Eq. (9).
    """

    def _loss(self, student: Tensor, teacher: Tensor) -> Tensor:
        return hint_loss(student, teacher)


@MODELS.register_module()
class AttentionTransferLoss(_EmbeddingDistillationLoss):
    """Attention transfer (Eq. (10)-(11) of Yu et al.): :func:`attention_transfer_loss` of student maps
    (B, C_S, H, W) and teacher maps (B, C_T, H, W).

    Args:
        p: exponent of the attention A = sum_c |F_c|^p, >= 1 (default 2, the paper's).
        loss_weight: kappa of Eq. (12).
    """

    def __init__(self, p: float = 2, loss_weight: float = 1.0):
        super().__init__(loss_weight)
        if not _is_number(p) or not p >= 1:
            self._invalid('p', 'a number >= 1', p)
        self.p = p

    def _loss(self, student: Tensor, teacher: Tensor) -> Tensor:
        return attention_transfer_loss(student, teacher, self.p)
