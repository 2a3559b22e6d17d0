"""The dynamic teacher/student switch of CoLAD: which network's assignment costs label each part of a batch.

Eq. (3) of Nguyen et al., "Improving Object Detection by Label Assignment Distillation", WACV 2022: for the costs
{c_i} that a network gives to the pre-assigned candidate anchors,

* rho_std/mean = sigma / mu (the spread of the costs relative to their level), and
* rho_Fisher = (mu+ - mu-)^2 / (sigma+^2 + sigma-^2), from the two-Gaussian fit of PAA's assignment,

and the network with the higher rho assigns the labels. The paper states the switch per iteration; the official
code (mmdet 2.10) decides per GT box and FPN level, and its Fisher switch is not public. A criterion here decides
per ``granularity`` unit:

* ``'batch'``: one decision for the whole batch; in distributed training the statistics are summed over the ranks
  first, so that every rank takes the same decision (one all-reduce of a few numbers per network);
* ``'image'``: one decision per image;
* ``'gt'``: one per GT box (its candidates on every level);
* ``'gt_level'``: one per GT box and FPN level (the official code's; std/mean only: PAA fits one mixture per GT box,
  so a Fisher score per level would need fits PAA does not make).

A unit whose rho is undefined for a network (a single candidate has no standard deviation, a GT box with fewer than
two candidates is not fitted) goes to the network with the lower mean cost, as the official code does for a single
candidate. Ties go to the network listed first (the initial teacher).
"""
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
from mmengine import dist
from torch import Tensor

from mmkd.registry import DET_TASK_UTILS
from .paa_gmm import TwoGaussians

GRANULARITIES = ('batch', 'image', 'gt', 'gt_level')


class CandidateUnits(NamedTuple):
    """The decision unit of every pre-assigned candidate ``[num_candidates]`` and of every GT row ``[num_rows]``."""
    of_candidate: Tensor
    of_row: Optional[Tensor]  # None at 'gt_level' (a GT row spans several units)
    num_units: int


def candidate_units(granularity: str, image: Tensor, gt_row: Tensor, level: Tensor, num_imgs: int, gts_per_image: int,
                    num_levels: int) -> CandidateUnits:
    """Map candidates (and GT rows ``image * gts_per_image + gt``) to the decision units of ``granularity``.

    Args:
        granularity: one of ``GRANULARITIES``.
        image, gt_row, level: [num_candidates] image, GT row and FPN level of each candidate.
        num_imgs, gts_per_image, num_levels: the sizes of those indices.
    """
    rows = torch.arange(num_imgs * gts_per_image, device=image.device)
    if granularity == 'batch':
        return CandidateUnits(torch.zeros_like(image), torch.zeros_like(rows), 1)
    if granularity == 'image':
        return CandidateUnits(image, rows // max(gts_per_image, 1), num_imgs)
    if granularity == 'gt':
        return CandidateUnits(gt_row, rows, num_imgs * gts_per_image)
    if granularity == 'gt_level':
        return CandidateUnits(gt_row * num_levels + level, None, num_imgs * gts_per_image * num_levels)
    raise ValueError(f'granularity must be one of {GRANULARITIES}, got {granularity!r}')


def _sums(values: Tensor, unit: Tensor, num_units: int) -> Tensor:
    """[num_units, 3]: count, sum and sum of squares of ``values`` per unit, in float64."""
    x = values.detach().to(torch.float64)
    out = x.new_zeros(num_units, 3)
    out.index_add_(0, unit, torch.stack([torch.ones_like(x), x, x.square()], 1))
    return out


def std_mean_ratio(sums: Tensor) -> Tensor:
    """sigma / mu per unit from [num_units, 3] (count, sum, sum of squares); sigma is the sample standard deviation
    (n - 1 in the denominator, as ``torch.std`` in the official code); NaN below two values or at mean 0."""
    count, total, squares = sums.unbind(1)
    mean = total / count
    var = ((squares - total * mean) / (count - 1)).clamp(min=0)
    ratio = var.sqrt() / mean
    return torch.where((count >= 2) & (mean != 0), ratio, torch.full_like(ratio, float('nan')))


def fisher_score(fit: TwoGaussians) -> Tensor:
    """(mu+ - mu-)^2 / (sigma+^2 + sigma-^2) per fitted row of a two-Gaussian fit, NaN for rows not fitted."""
    score = (fit.means[:, 0] - fit.means[:, 1]).square() / fit.variances.sum(1)
    return torch.where(fit.n_iter > 0, score, torch.full_like(score, float('nan')))


class SwitchDecision(NamedTuple):
    """Which network assigns each unit, and the criterion values behind the choice."""
    teacher: Tensor  # [num_units] index of the assigning network
    rho: Tensor  # [num_networks, num_units], NaN where undefined
    has_candidates: Tensor  # [num_units] bool: units with candidates (the others need no decision)

    def mean_rho(self) -> Tensor:
        """[num_networks]: each network's rho averaged over the units where it is defined (NaN if none)."""
        defined = torch.isfinite(self.rho)
        total = torch.where(defined, self.rho, torch.zeros_like(self.rho)).sum(1)
        return total / defined.sum(1)

    def share(self) -> Tensor:
        """[num_networks]: the fraction of the units with candidates that each network assigned (0 if none)."""
        counted = self.teacher[self.has_candidates]
        num_networks = self.rho.size(0)
        counts = torch.bincount(counted, minlength=num_networks).to(torch.float64)
        return counts / max(counted.numel(), 1)


class SwitchCriterion:
    """Base of the switch criteria: per-unit statistics of each network, summed over the ranks at ``'batch'``
    granularity, then the choice. Subclasses define :meth:`unit_statistics` and :meth:`rho`.

    Args:
        granularity: the decision unit (see the module docstring).
        sync_batch: at ``'batch'`` granularity, sum the statistics over the ranks of a distributed run so that
            every rank takes the same decision.
    """

    needs_fit = False  # rho from each network's mixture fit: the positives of each fit are kept and mixed
    granularities: Tuple[str, ...] = GRANULARITIES

    def __init__(self, granularity: str, sync_batch: bool = True) -> None:
        if granularity not in self.granularities:
            raise ValueError(f'{type(self).__name__}: granularity must be one of {self.granularities}, '
                             f'got {granularity!r}')
        self.granularity = granularity
        self.sync_batch = sync_batch

    def unit_statistics(self, costs: Tensor, units: CandidateUnits, fit: Optional[TwoGaussians]) -> Tensor:
        """[num_units, S] float64 sums of one network (summable over ranks); the first two columns are the count
        and the sum of its candidates' costs."""
        raise NotImplementedError

    def rho(self, stats: Tensor) -> Tensor:
        """[num_units] criterion value from :meth:`unit_statistics`; NaN where undefined."""
        raise NotImplementedError

    def decide(self,
               costs: Sequence[Tensor],
               units: CandidateUnits,
               fits: Optional[Sequence[TwoGaussians]] = None) -> SwitchDecision:
        """Choose the assigning network of every unit.

        Args:
            costs: per network, the [num_candidates] assignment costs of the same pre-assigned candidates.
            units: the candidates' decision units.
            fits: per network, its mixture fit (one row per GT row), for criteria that need it.

        Returns:
            SwitchDecision: the higher rho wins; undefined rho: the lower mean cost; ties: the first network.
        """
        stats = torch.stack(
            [self.unit_statistics(c, units, None if fits is None else fits[i]) for i, c in enumerate(costs)])
        if self.granularity == 'batch' and self.sync_batch:
            dist.all_reduce(stats, op='sum')
        rho = torch.stack([self.rho(s) for s in stats])
        mean_cost = stats[..., 1] / stats[..., 0]
        mean_cost = torch.where(torch.isfinite(mean_cost), mean_cost, torch.full_like(mean_cost, float('inf')))
        defined = torch.isfinite(rho).all(0)
        by_rho = torch.where(torch.isfinite(rho), rho, torch.full_like(rho, -float('inf'))).argmax(0)
        teacher = torch.where(defined, by_rho, mean_cost.argmin(0))  # argmax / argmin take the first on ties
        return SwitchDecision(teacher, rho, stats[0, :, 0] > 0)


@DET_TASK_UTILS.register_module()
class StdMeanCriterion(SwitchCriterion):
    """rho = sigma / mu of the costs of the pre-assigned candidates (Eq. (3), left), per unit.

    Needs no mixture fit: the costs of the chosen network are mixed unit by unit before PAA's single fit, so a CoLAD
    iteration fits once. Default granularity ``'gt_level'``: the official code's, which gave the paper's numbers.
    """

    def __init__(self, granularity: str = 'gt_level', sync_batch: bool = True) -> None:
        super().__init__(granularity, sync_batch)

    def unit_statistics(self, costs: Tensor, units: CandidateUnits, fit: Optional[TwoGaussians] = None) -> Tensor:
        return _sums(costs, units.of_candidate, units.num_units)

    def rho(self, stats: Tensor) -> Tensor:
        return std_mean_ratio(stats)


@DET_TASK_UTILS.register_module()
class FisherCriterion(SwitchCriterion):
    """rho = (mu+ - mu-)^2 / (sigma+^2 + sigma-^2) of PAA's two-Gaussian fit (Eq. (3), right).

    The fit is the one PAA's assignment makes anyway (per GT box, on its ``topk`` lowest costs of each level), so
    each network's costs are fitted once and the positives of the chosen network's fit are used: no second fit.
    A unit of several GT boxes (``'image'``, ``'batch'``) scores the mean of its fitted boxes' Fisher scores.
    Default granularity ``'gt'``: the unit of the fit.
    """

    needs_fit = True
    granularities = ('batch', 'image', 'gt')

    def __init__(self, granularity: str = 'gt', sync_batch: bool = True) -> None:
        super().__init__(granularity, sync_batch)

    def unit_statistics(self, costs: Tensor, units: CandidateUnits, fit: Optional[TwoGaussians] = None) -> Tensor:
        if fit is None:
            raise ValueError('FisherCriterion needs the mixture fit of each network')
        cost_sums = _sums(costs, units.of_candidate, units.num_units)[:, :2]
        score = fisher_score(fit)
        fitted = torch.isfinite(score)
        row_sums = score.new_zeros(units.num_units, 2)
        row_sums.index_add_(0, units.of_row[fitted], torch.stack([torch.ones_like(score[fitted]), score[fitted]], 1))
        return torch.cat([cost_sums, row_sums], 1)

    def rho(self, stats: Tensor) -> Tensor:
        num_fitted, total = stats[:, 2], stats[:, 3]
        return torch.where(num_fitted > 0, total / num_fitted, torch.full_like(total, float('nan')))


def build_switch(cfg) -> Optional[SwitchCriterion]:
    """A criterion from its config (or the criterion itself); None stays None."""
    if cfg is None or isinstance(cfg, SwitchCriterion):
        return cfg
    criterion = DET_TASK_UTILS.build(cfg)
    if not isinstance(criterion, SwitchCriterion):
        raise TypeError(f'switch must be a switch criterion (StdMeanCriterion, FisherCriterion), got {cfg}')
    return criterion


__all__: List[str] = [
    'CandidateUnits', 'candidate_units', 'std_mean_ratio', 'fisher_score', 'SwitchDecision', 'SwitchCriterion',
    'StdMeanCriterion', 'FisherCriterion', 'build_switch', 'GRANULARITIES'
]
