"""The soft-label distillation losses of LAD (Nguyen et al., "Improving Object Detection by Label
Assignment Distillation", WACV 2022, Sec. 3.1): the student's sigmoid classification outputs learn the
teacher's, per anchor and class.

Eq. (1), with p = sigmoid(logit), summed over the C classes of one anchor:

    KL(p_t, p_s) = sum_c w_c [ p_t log(p_t / p_s) + (1 - p_t) log((1 - p_t) / (1 - p_s)) ],
    w_c = |p_t - p_s|^gamma

and the L1 / L2 alternatives of the paper's Table 2, |p_t - p_s| and (p_t - p_s)^2 summed over classes.

The losses follow mmdet's loss contract (``weight``, ``avg_factor``, ``reduction_override``,
``loss_weight``), so that a head computes them beside its own classification loss, and mmkd's precision
contract: whatever the autocast state and the input dtype, they are computed in float32 (float64 inputs
stay float64) with autocast disabled, and the loss is float32.
"""
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from mmkd.registry import SHARED_MODELS
from .ssim import _autocast_disabled

REDUCTIONS = ('none', 'mean', 'sum')


def focal_kl_with_logits(pred: Tensor, target: Tensor, gamma: float = 0.5, eps: float = 1e-6) -> Tensor:
    """The terms of Eq. (1) of LAD, one per anchor and class, from student and teacher logits.

    The log-probabilities come from the logits (log p = logsigmoid(x), log(1 - p) = logsigmoid(-x)), so
    saturated logits (|x| = 100, where p rounds to 0 or 1 in float32) give finite values and gradients.

    The focal term is the official implementation's ``((p_t - p_s)^2 + eps)^(gamma / 2)``: with
    ``eps > 0`` its gradient is finite where p_t == p_s (that of |x|^gamma at 0 is infinite for
    gamma < 1), and it differs from the paper's |p_t - p_s|^gamma by at most
    ``eps^(gamma / 2)`` for gamma <= 2. ``eps = 0`` is the paper's form exactly; then, for
    0 < gamma < 2, gradients are not finite where p_t == p_s in floating point (e.g. both saturated).
    ``gamma = 0`` gives the plain binary KL divergence.

    Both arguments take part in the autograd graph as given: detach ``target`` to use it as a target.

    Args:
        pred: student logits (N, C) (any shape works: the terms are elementwise).
        target: teacher logits, the shape of ``pred``.
        gamma: exponent of the focal term (0.5 is the paper's best).
        eps: added to (p_t - p_s)^2 in the focal term.

    Returns:
        Tensor: the weighted terms w_c [...] of Eq. (1), the shape of ``pred``; >= 0 up to rounding.
    """
    p_s, p_t = pred.sigmoid(), target.sigmoid()
    log_ratio_pos = F.logsigmoid(target) - F.logsigmoid(pred)
    log_ratio_neg = F.logsigmoid(-target) - F.logsigmoid(-pred)
    # 1 - p_t from the logit: 1 - sigmoid(x) rounds to 0 in float32 from x ~ 17, sigmoid(-x) keeps its size
    kl = p_t * log_ratio_pos + (-target).sigmoid() * log_ratio_neg
    focal = ((p_t - p_s).square() + eps).pow(gamma / 2)
    return focal * kl


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _SoftLabelLoss(torch.nn.Module):
    """Shared options, checks and reduction of the soft-label losses; subclasses define
    :meth:`_elementwise` on logits (N, C) of the computation dtype.

    The per-anchor loss is the sum over classes of the weighted per-class terms; it is reduced like
    mmdet's ``weight_reduce_loss``: the mean over anchors, or its sum divided by ``avg_factor`` when one
    is given ('mean'), the sum ('sum'), or the per-anchor losses (N, ) ('none').
    """

    def __init__(self, reduction: str = 'mean', loss_weight: float = 1.0):
        super().__init__()
        if reduction not in REDUCTIONS:
            self._invalid('reduction', f'one of {REDUCTIONS}', reduction)
        if not _is_number(loss_weight) or not loss_weight >= 0:
            self._invalid('loss_weight', 'a number >= 0', loss_weight)
        self.reduction = reduction
        self.loss_weight = loss_weight

    def _invalid(self, name: str, expected: str, value) -> None:
        raise ValueError(f'{type(self).__name__}: {name} must be {expected}, got {value!r}')

    def forward(self,
                pred: Tensor,
                target: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[Union[float, Tensor]] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        """Soft-label loss of the student logits ``pred`` towards the teacher logits ``target``.

        Args:
            pred: student classification logits (N, C).
            target: teacher classification logits (N, C); a target, no gradient flows to it.
            weight: per-anchor (N, ) or per-anchor-and-class (N, C) weights of the terms.
            avg_factor: with reduction 'mean', the weighted sum is divided by it instead of N.
            reduction_override: replaces the configured reduction for this call.

        Returns:
            Tensor: float32 (float64 for float64 inputs), a scalar, or (N, ) with reduction 'none';
            times ``loss_weight``.
        """
        reduction = reduction_override if reduction_override is not None else self.reduction
        self._check(pred, target, weight, avg_factor, reduction)
        dtype = torch.float64 if torch.float64 in (pred.dtype, target.dtype) else torch.float32
        with _autocast_disabled(pred.device.type):
            loss = self._elementwise(pred.to(dtype), target.detach().to(dtype))
            if weight is not None:
                weight = weight.to(dtype)
                loss = loss * (weight[:, None] if weight.dim() == 1 else weight)
            loss = loss.sum(1)
            if avg_factor is None:
                loss = loss.mean() if reduction == 'mean' else loss.sum() if reduction == 'sum' else loss
            elif reduction == 'mean':
                if isinstance(avg_factor, Tensor):
                    avg_factor = avg_factor.to(dtype)
                # mmdet's guard against avg_factor 0 (every anchor ignored): the loss is then 0, not nan
                loss = loss.sum() / (avg_factor + torch.finfo(torch.float32).eps)
            return self.loss_weight * loss

    def _check(self, pred: Tensor, target: Tensor, weight: Optional[Tensor], avg_factor, reduction: str) -> None:
        name = type(self).__name__
        if reduction not in REDUCTIONS:
            self._invalid('reduction_override', f'None or one of {REDUCTIONS}', reduction)
        if pred.dim() != 2 or pred.shape != target.shape:
            raise ValueError(f'{name}: pred (student logits) {tuple(pred.shape)} and target (teacher logits) '
                             f'{tuple(target.shape)} must have one shape (N, C)')
        if weight is not None and tuple(weight.shape) not in (tuple(pred.shape[:1]), tuple(pred.shape)):
            raise ValueError(f'{name}: weight {tuple(weight.shape)} must be (N, ) or (N, C) for pred '
                             f'{tuple(pred.shape)}')
        if avg_factor is not None and reduction == 'sum':
            raise ValueError(f"{name}: avg_factor cannot be used with reduction 'sum'")

    def _elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError


@SHARED_MODELS.register_module()
class SoftLabelKLLoss(_SoftLabelLoss):
    """The focal KL divergence between sigmoid outputs of LAD's soft-label distillation (Eq. (1),
    :func:`focal_kl_with_logits`), summed over classes, then reduced over anchors.

    Args:
        gamma: exponent of the focal term w_c = |p_t - p_s|^gamma, >= 0 (0.5 is the paper's best;
            0 gives the plain binary KL divergence).
        eps: the focal term is ((p_t - p_s)^2 + eps)^(gamma / 2), as in the official implementation,
            so that gradients stay finite where p_t == p_s; 0 is the paper's form exactly.
        reduction: 'mean' (over anchors, or the sum over ``avg_factor``), 'sum' or 'none'.
        loss_weight: multiplies the loss.
    """

    def __init__(self, gamma: float = 0.5, eps: float = 1e-6, reduction: str = 'mean', loss_weight: float = 1.0):
        super().__init__(reduction=reduction, loss_weight=loss_weight)
        if not _is_number(gamma) or not gamma >= 0:
            self._invalid('gamma', 'a number >= 0', gamma)
        if not _is_number(eps) or not eps >= 0:
            self._invalid('eps', 'a number >= 0', eps)
        self.gamma = gamma
        self.eps = eps

    def _elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return focal_kl_with_logits(pred, target, self.gamma, self.eps)


@SHARED_MODELS.register_module()
class SoftLabelL1Loss(_SoftLabelLoss):
    """|p_t - p_s| on sigmoid outputs, summed over classes, then reduced over anchors (LAD, Table 2).

    Args:
        loss_weight: multiplies the loss.
        reduction: 'mean' (over anchors, or the sum over ``avg_factor``), 'sum' or 'none'.
    """

    def __init__(self, loss_weight: float = 1.0, reduction: str = 'mean'):
        super().__init__(reduction=reduction, loss_weight=loss_weight)

    def _elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return (target.sigmoid() - pred.sigmoid()).abs()


@SHARED_MODELS.register_module()
class SoftLabelL2Loss(_SoftLabelLoss):
    """(p_t - p_s)^2 on sigmoid outputs, summed over classes, then reduced over anchors (LAD, Table 2).

    Args:
        loss_weight: multiplies the loss.
        reduction: 'mean' (over anchors, or the sum over ``avg_factor``), 'sum' or 'none'.
    """

    def __init__(self, loss_weight: float = 1.0, reduction: str = 'mean'):
        super().__init__(reduction=reduction, loss_weight=loss_weight)

    def _elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return (target.sigmoid() - pred.sigmoid()).square()
