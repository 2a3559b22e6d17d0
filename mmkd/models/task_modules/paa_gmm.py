"""PAA's positive/negative separation of candidate costs, for all GT boxes of a batch at once, on their device.

Probabilistic Anchor Assignment (Kim & Lee, "Probabilistic Anchor Assignment with IoU Prediction for Object
Detection", ECCV 2020) fits, for every GT box, a two-component 1-D Gaussian mixture to the costs of its candidate
anchors and keeps the low-cost mode as positives. mmdet's ``PAAHead.paa_reassign`` does this with one scikit-learn
``GaussianMixture`` per GT box, on the host, in Python loops. Here the same EM runs for all GT boxes together as a
few tensor operations on padded ``[num_gt, K]`` costs, with the same initialisation, regularisation, stopping rule
and selection (scheme (c)), so that on the same costs it yields the same positives.
"""
import math
from typing import NamedTuple, Tuple

import torch
from torch import Tensor

# scikit-learn adds 10 machine epsilons to every component's total responsibility so that an empty one divides by
# a positive number; kept so that the fitted parameters follow sklearn's.
_NK_EPS = 10 * torch.finfo(torch.float64).eps
_LOG_2PI = math.log(2 * math.pi)


class TwoGaussians(NamedTuple):
    """A fitted two-component 1-D Gaussian mixture per row (GT box); every field is ``[num_gt, 2]`` except the
    last two (``[num_gt]``)."""
    weights: Tensor
    means: Tensor
    variances: Tensor
    n_iter: Tensor  # EM iterations run (0 for rows with fewer than 2 valid costs, which are not fitted)
    converged: Tensor  # the lower bound changed by less than ``tol`` before ``max_iter`` iterations


def _weighted_log_prob(x: Tensor, x2: Tensor, weights: Tensor, means: Tensor, variances: Tensor) -> Tensor:
    """log(w_k N(x | mu_k, var_k)) as [num_gt, K, 2] for costs x [num_gt, K] and parameters [num_gt, 2].

    Expanded as scikit-learn does, (mu^2 - 2 x mu + x^2) / var with x^2 = ``x2`` squared in the costs' own dtype,
    so that near-ties between two candidates' densities (they decide the positives) break the same way.
    """
    x, x2 = x.unsqueeze(-1), x2.unsqueeze(-1)
    means, weights = means.unsqueeze(1), weights.unsqueeze(1)
    precisions = 1.0 / variances.unsqueeze(1)
    quadratic = means.square() * precisions - 2.0 * (x * (means * precisions)) + x2 * precisions
    return -0.5 * (_LOG_2PI + quadratic) + 0.5 * precisions.log() + weights.log()


def _as_float64(costs: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Costs and their squares in float64, 0 where padded or not finite; the mask.

    float32 costs are squared in float32, as scikit-learn squares mmdet's float32 costs, except where that square
    overflows (costs above ~1.8e19, from a diverging network); every other dtype is squared in float64, as
    scikit-learn converts float16 input to float64 (a float16 square overflows from a cost of 256 on).
    """
    costs = costs.detach()
    valid = mask.bool() & torch.isfinite(costs)
    costs = torch.where(valid, costs, torch.zeros_like(costs))
    x = costs.to(torch.float64)
    x2 = x.square()
    if costs.dtype == torch.float32:
        x2_float32 = costs.square()
        x2 = torch.where(torch.isfinite(x2_float32), x2_float32.to(torch.float64), x2)
    return x, x2, valid


def fit_two_gaussians(costs: Tensor,
                      mask: Tensor,
                      reg_covar: float = 1e-6,
                      tol: float = 1e-3,
                      max_iter: int = 100) -> TwoGaussians:
    """Fit a two-component 1-D Gaussian mixture to every row of ``costs`` by EM, all rows at once.

    Follows scikit-learn's ``GaussianMixture(2, covariance_type='diag', reg_covar, tol, max_iter)`` started, as
    mmdet's PAA head starts it, from means (min, max) of the row, weights (0.5, 0.5) and unit variances: each
    iteration is an E-step (responsibilities; the lower bound is the mean log mixture density of the row's costs)
    and an M-step (weights, means, variances + ``reg_covar``); a row stops on its own once its lower bound changes
    by less than ``tol`` (its parameters are then those of that iteration's M-step), or after ``max_iter``
    iterations. Computed in float64 on the costs' device.

    The variance is computed as the responsibility-weighted mean of squared deviations, which cannot be negative;
    scikit-learn computes E[x^2] - mean^2 with x^2 in the input's float32 and raises "ill-defined empirical
    covariance" when that cancellation falls below ``-reg_covar`` (a component collapsed on one cost, or identical
    costs). Both are the same number up to rounding, so here the fit always succeeds.

    Args:
        costs: [num_gt, K] costs, any float dtype; padded entries are ignored.
        mask: [num_gt, K] bool, True for a real cost. Non-finite costs are treated as padding.
        reg_covar: added to every variance.
        tol: convergence threshold on the change of the lower bound.
        max_iter: maximum EM iterations.

    Returns:
        TwoGaussians: the fitted mixtures. Rows with fewer than two valid costs are not fitted (n_iter 0,
        converged False, initial parameters).
    """
    if costs.shape != mask.shape or costs.dim() != 2:
        raise ValueError(f'costs and mask must both be [num_gt, K], got costs {tuple(costs.shape)} and mask '
                         f'{tuple(mask.shape)}')
    x, x2, valid = _as_float64(costs, mask)
    m = valid.to(torch.float64)
    count = m.sum(1)

    inf = torch.tensor(float('inf'), dtype=torch.float64, device=x.device)
    means = torch.stack([torch.where(valid, x, inf).amin(1), torch.where(valid, x, -inf).amax(1)], 1)
    means = torch.where(count.unsqueeze(1) > 0, means, torch.zeros_like(means))
    weights = torch.full_like(means, 0.5)
    variances = torch.ones_like(means)

    n_iter = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    converged = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    # EM runs on the rows still iterating only: when half of them have converged, the others are packed into
    # smaller tensors (the converged rows' parameters are written back first), so late iterations stay cheap.
    bound = torch.full_like(count, -float('inf'))  # each row's lower bound at its previous iteration
    rows = torch.nonzero(count >= 2).squeeze(1)
    packed, num_active, active = False, 0, None

    def write_back():
        weights[rows], means[rows], variances[rows] = w, mu, var
        n_iter[rows], converged[rows], bound[rows] = its, conv, prev_bound

    for _ in range(max_iter):
        if not packed or num_active <= rows.numel() // 2:
            if packed:
                write_back()
                rows = rows[active]
            packed = rows.numel() > 0
            if not packed:
                break
            w, mu, var, its, conv, prev_bound = (weights[rows], means[rows], variances[rows], n_iter[rows],
                                                 converged[rows], bound[rows])
            active = torch.ones_like(rows, dtype=torch.bool)
            xs, x2s, ms = x[rows].unsqueeze(-1), x2[rows].unsqueeze(-1), m[rows]
            sample_weights, masks = ms / count[rows].unsqueeze(1), ms.unsqueeze(-1)
        # E-step with the current parameters: log(w N(x | mu, var)) = const + lin x + quad x^2 per component
        prec = 1.0 / var
        lin = mu * prec
        const = w.log() + 0.5 * prec.log() - 0.5 * (_LOG_2PI + mu * lin)
        log_prob = torch.addcmul(torch.addcmul(const.unsqueeze(1), lin.unsqueeze(1), xs), -0.5 * prec.unsqueeze(1), x2s)
        log_norm = torch.logaddexp(log_prob[..., 0], log_prob[..., 1])
        new_bound = (log_norm * sample_weights).sum(1)
        resp = (log_prob - log_norm.unsqueeze(-1)).exp_().mul_(masks)
        # M-step; a converged row keeps its parameters
        nk = resp.sum(1) + _NK_EPS
        new_mu = torch.bmm(xs.transpose(1, 2), resp).squeeze(1) / nk
        new_var = (resp * (xs - new_mu.unsqueeze(1)).square_()).sum(1) / nk + reg_covar
        keep = active.unsqueeze(1)
        w = torch.where(keep, nk / nk.sum(1, keepdim=True), w)
        mu = torch.where(keep, new_mu, mu)
        var = torch.where(keep, new_var, var)
        done = active & ((new_bound - prev_bound).abs() < tol)
        its, conv = its + active.long(), conv | done
        prev_bound = torch.where(active, new_bound, prev_bound)
        active = active & ~done
        num_active = int(active.sum())
    if packed:
        write_back()
    return TwoGaussians(weights, means, variances, n_iter, converged)


def paa_positive_mask(costs: Tensor,
                      mask: Tensor,
                      reg_covar: float = 1e-6,
                      tol: float = 1e-3,
                      max_iter: int = 100) -> Tuple[Tensor, TwoGaussians]:
    """PAA's positives per GT box: scheme (c) of Kim & Lee on a two-Gaussian fit of its candidates' costs.

    Every row holds the costs of one GT box's candidates sorted in ascending order, valid entries first. A
    candidate belongs to the low-cost component if its weighted log density is at least the other's (scikit-learn's
    ``predict``, ties to component 0). Among those, the one with the highest log density of the whole mixture
    (``score_samples``; the first on ties) is the threshold: the low-cost members up to and including it, in
    ascending cost order, are positive; every other candidate is negative (scheme (c) ignores none).

    Degenerate rows never raise:

    * no valid cost (an image without GT boxes contributes no row; a GT box whose candidates were all ignored
      or not finite) or a single one: no positive. A mixture cannot be fitted to one cost; mmdet skips such GT
      boxes the same way, and the box keeps no positive rather than one chosen without a statistical test.
    * identical costs: both components coincide, every candidate ties into the low-cost component with the same
      density, so the first (lowest-index) candidate is the only positive: the box is still learnt from its best
      candidate, without pretending the others are separable.

    Args:
        costs: [num_gt, K] candidate costs per GT box, ascending per row with the valid ones first.
        mask: [num_gt, K] bool, True for a real candidate.
        reg_covar, tol, max_iter: EM settings (see :func:`fit_two_gaussians`).

    Returns:
        tuple: bool [num_gt, K] positives, and the fitted mixtures.
    """
    fit = fit_two_gaussians(costs, mask, reg_covar, tol, max_iter)
    x, x2, valid = _as_float64(costs, mask)
    valid = valid & (fit.n_iter > 0).unsqueeze(1)
    log_prob = _weighted_log_prob(x, x2, fit.weights, fit.means, fit.variances)
    low = valid & (log_prob[..., 0] >= log_prob[..., 1])
    score = torch.where(low, torch.logsumexp(log_prob, dim=-1), torch.full_like(x, -float('inf')))
    threshold = score.argmax(1, keepdim=True)  # the first maximum
    position = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
    return low & (position <= threshold), fit
