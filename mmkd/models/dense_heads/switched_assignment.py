"""PAA's label assignment where several networks compete to assign the labels: CoLAD's dynamic switch."""
from typing import List, Sequence, Tuple

import torch
from mmdet.utils import InstanceList, OptInstanceList

from ..task_modules.switch_criteria import SwitchCriterion, SwitchDecision, candidate_units
from .paa_head import BatchedPAAHead


def check_same_anchors(heads: Sequence[BatchedPAAHead], names: Sequence[str], owner: str) -> None:
    """Raise unless every head predicts on the anchors of the first (classes, strides, anchors per location, base
    anchor sizes): a label assignment computed by one of them is handed, with its anchors, to the others."""
    ref, ref_name = heads[0], names[0]
    for head, name in zip(heads[1:], names[1:]):
        for what, a, b in (('num_classes', ref.num_classes, head.num_classes),
                           ('anchor strides', ref.prior_generator.strides, head.prior_generator.strides),
                           ('anchors per location', ref.num_base_priors, head.num_base_priors)):
            if a != b:
                raise ValueError(f'{owner}: {ref_name} and {name} must predict on the same anchors, but their {what} '
                                 f'differ: {ref_name} {a}, {name} {b}')
        for level, (a, b) in enumerate(zip(ref.prior_generator.base_anchors, head.prior_generator.base_anchors)):
            if a.shape != b.shape or not torch.allclose(a, b):
                raise ValueError(f'{owner}: {ref_name} and {name} must predict on the same anchors, but their '
                                 f'anchor_generator gives different base anchors at level {level}: {ref_name} '
                                 f'{a.tolist()}, {name} {b.tolist()}')


def switched_label_assignment(heads: Sequence[BatchedPAAHead],
                              outs: Sequence[tuple],
                              criterion: SwitchCriterion,
                              batch_gt_instances: InstanceList,
                              batch_img_metas: List[dict],
                              batch_gt_instances_ignore: OptInstanceList = None) -> Tuple[tuple, SwitchDecision]:
    """One PAA label assignment for a batch, each of its units assigned by the network that ``criterion`` prefers.

    The MaxIoU pre-assignment depends on the anchors and GT boxes only, so it is computed once (by ``heads[0]``)
    and shared; each network's head computes the costs of the same candidates from that network's predictions.
    With a criterion that needs no fit (std/mean) the costs are mixed unit by unit (the chosen network's costs for
    each unit) and PAA's mixtures are fitted once on the mixed costs; with one that does (Fisher) each network's
    costs are fitted (PAA fits them anyway) and each unit takes the positives of its chosen network's fit. At
    ``'batch'``, ``'image'`` and ``'gt'`` granularity both give exactly the chosen network's own assignment for the
    unit; at ``'gt_level'`` (std/mean only) a GT box's mixture is fitted on costs that may come from both networks,
    as in the official code.

    Args:
        heads: the networks' PAA heads (``gmm_backend='torch'``), on the same anchors; ties go to the first.
        outs: per network, its head outputs (cls_scores, bbox_preds, iou_preds) per level; only read.
        criterion: the switch criterion.
        batch_gt_instances, batch_img_metas, batch_gt_instances_ignore: the batch's annotations.

    Returns:
        tuple: the assignment (the tuple of :meth:`BatchedPAAHead.get_label_assignment`) and the decision.
    """
    for head in heads:
        if head.gmm_backend != 'torch':
            raise ValueError(f"the dynamic switch needs heads with gmm_backend='torch', got {head.gmm_backend!r} "
                             f'for a {type(head).__name__}')
    head = heads[0]
    pre = head.pre_assign(outs[0][0], batch_gt_instances, batch_img_metas, batch_gt_instances_ignore)
    with torch.no_grad():
        costs = [
            torch.cat(
                h.candidate_costs(pre.anchor_list, o[0], o[1], pre.labels, pre.labels_weight, pre.bboxes_target,
                                  pre.bboxes_weight, pre.pos_inds)).detach() for h, o in zip(heads, outs)
        ]
        layout = head.candidate_layout(pre.pos_inds, pre.pos_gt_index, pre.anchor_list)
        units = candidate_units(criterion.granularity, layout.image, layout.gt_row, layout.level, layout.num_imgs,
                                layout.gts_per_image, layout.num_levels)
        if criterion.needs_fit:
            selections = [head.positive_candidates(cost, layout) for cost in costs]
            decision = criterion.decide(costs, units, [fit for _, fit in selections])
            chosen = decision.teacher[units.of_candidate].unsqueeze(0)
            is_positive = torch.stack([positive for positive, _ in selections]).gather(0, chosen).squeeze(0)
        else:
            decision = criterion.decide(costs, units)
            chosen = decision.teacher[units.of_candidate].unsqueeze(0)
            mixed = torch.stack(costs).gather(0, chosen).squeeze(0)
            is_positive = head.positive_candidates(mixed, layout)[0] if mixed.numel() else mixed.bool()
        labels, labels_weight, _, num_pos = head.apply_positives(is_positive, layout, pre.labels, pre.labels_weight,
                                                                 pre.bboxes_weight)
    return head.assignment_result(pre, labels, labels_weight, sum(num_pos)), decision


def detached(outs: tuple) -> tuple:
    """Head outputs (per-level lists of tensors) without their graph."""
    return tuple([level.detach() for level in out] for out in outs)


def switch_log_vars(decision: SwitchDecision, names: Sequence[str]) -> dict:
    """The scalars of one switch decision: ``switch.rho.<name>`` (mean over the units where rho is defined; absent
    where it is nowhere) and ``switch.share.<name>`` (fraction of the units with candidates it assigned)."""
    log_vars = {}
    for name, rho, share in zip(names, decision.mean_rho().tolist(), decision.share().tolist()):
        if rho == rho:  # not NaN: a NaN would poison the logger's window averages
            log_vars[f'switch.rho.{name}'] = torch.tensor(rho)
        log_vars[f'switch.share.{name}'] = torch.tensor(share)
    return log_vars
