"""mmdet's PAA head with the label assignment batched over the images and GT boxes of a batch, on its device."""
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
from mmdet.models.dense_heads import PAAHead
from mmdet.models.utils import multi_apply
from mmdet.structures.bbox import bbox_overlaps
from mmdet.utils import InstanceList, OptInstanceList
from torch import Tensor

from mmkd.registry import DET_MODELS
from ..task_modules import TwoGaussians, paa_positive_mask

GMM_BACKENDS = ('torch', 'sklearn')
EPS = 1e-12  # floor of the IoU weights of PAA's box loss, as mmdet's PAA head


class PreAssignment(NamedTuple):
    """PAA's MaxIoU pre-assignment of a batch (mmdet ``PAAHead.get_targets``' results, per image)."""
    anchor_list: List[List[Tensor]]  # per image, per level [A_l, 4]
    labels: List[Tensor]  # per image [A]
    labels_weight: List[Tensor]
    bboxes_target: List[Tensor]  # per image [A, 4]
    bboxes_weight: List[Tensor]
    pos_inds: List[Tensor]  # per image, the pre-assigned candidates' anchor indices
    pos_gt_index: List[Tensor]  # per image, their GT box index


class CandidateLayout(NamedTuple):
    """The pre-assigned candidates of a batch, flattened image by image: each ``[num_candidates]``."""
    image: Tensor
    anchor: Tensor  # anchor index within its image
    gt_row: Tensor  # image * gts_per_image + GT index: one row per (image, GT box) slot
    level: Tensor  # FPN level of the anchor
    num_imgs: int
    gts_per_image: int
    num_levels: int

    @property
    def num_rows(self) -> int:
        return self.num_imgs * self.gts_per_image

    @property
    def num_candidates(self) -> int:
        return self.anchor.numel()


def flatten_head_outputs(outputs: Sequence[Tensor], channels: int) -> Tensor:
    """Per-level head outputs [N, A_l * channels, H_l, W_l] as one [N * sum_l A_l H_l W_l, channels] tensor,
    ordered by image, then level, then location (the order of the flattened anchors of ``get_anchors``)."""
    num_imgs = outputs[0].size(0)
    per_level = [out.permute(0, 2, 3, 1).reshape(num_imgs, -1, channels) for out in outputs]
    return torch.cat(per_level, 1).reshape(-1, channels)


def gather_head_outputs(outputs: Sequence[Tensor], channels: int, image: Tensor, anchor: Tensor) -> Tensor:
    """The rows ``flatten_head_outputs(outputs, channels)[image * A + anchor]`` ([n, channels]) for images
    ``image`` [n] and anchor indices ``anchor`` [n] (within an image), read from the per-level outputs without
    flattening them (cheaper when n is small: PAA's candidates are a few per GT box)."""
    rows = outputs[0].new_empty(anchor.numel(), channels)
    start = 0
    for out in outputs:
        num_imgs, out_channels, height, width = out.shape
        per_location = out_channels // channels
        end = start + height * width * per_location
        in_level = (anchor >= start) & (anchor < end)
        local = anchor[in_level] - start
        # flatten_head_outputs orders a level's anchors by location, then by anchor at that location
        by_anchor = out.reshape(num_imgs, per_location, channels, height * width)
        rows[in_level] = by_anchor[image[in_level], local % per_location, :, local // per_location]
        start = end
    return rows


@DET_MODELS.register_module()
class BatchedPAAHead(PAAHead):
    """mmdet's ``PAAHead`` whose label assignment runs for the whole batch at once, on the predictions' device.

    A drop-in replacement: same constructor arguments, same outputs, same losses, same predictions (the forward
    and the post-processing are mmdet's). What changes is the probabilistic re-assignment: mmdet fits one
    scikit-learn Gaussian mixture per GT box on the host (:meth:`paa_reassign`); here the candidates' costs are
    computed in one call for the batch and the mixtures of all GT boxes are fitted together by
    :func:`mmkd.models.task_modules.paa_positive_mask`, which gives the same positives on the same costs and
    never raises on degenerate ones.

    Args:
        gmm_backend: ``'torch'`` (batched, on the device) or ``'sklearn'`` (mmdet's own per-GT path, kept for
            comparison).
        *args, **kwargs: mmdet ``PAAHead``'s arguments (``topk``, ``score_voting``, ``covariance_type`` and
            ``ATSSHead``'s).
    """

    iou_weighted_bbox = True  # PAA weights each positive's box loss by its IoU (see losses_from_assignment)

    def __init__(self, *args, gmm_backend: str = 'torch', **kwargs) -> None:
        if gmm_backend not in GMM_BACKENDS:
            raise ValueError(f'{type(self).__name__}: gmm_backend must be one of {GMM_BACKENDS}, got {gmm_backend!r}')
        super().__init__(*args, **kwargs)
        if gmm_backend == 'torch' and self.covariance_type != 'diag':
            raise ValueError(f"{type(self).__name__}: gmm_backend='torch' fits PAA's 1-D mixtures, for which "
                             f"covariance_type 'diag' is the only meaningful one; got {self.covariance_type!r} "
                             "(use gmm_backend='sklearn' to compare other types)")
        if gmm_backend == 'sklearn':
            try:
                import sklearn.mixture  # noqa: F401
            except ImportError as e:
                raise ImportError(f"{type(self).__name__}: gmm_backend='sklearn' needs scikit-learn "
                                  '(pip install scikit-learn)') from e
        self.gmm_backend = gmm_backend

    # ------------------------------------------------------------------------------------------------ assignment
    def get_label_assignment(self,
                             cls_scores: List[Tensor],
                             bbox_preds: List[Tensor],
                             iou_preds: List[Tensor],
                             batch_gt_instances: InstanceList,
                             batch_img_metas: List[dict],
                             batch_gt_instances_ignore: OptInstanceList = None) -> tuple:
        """PAA's label assignment from these predictions (mmdet ``LADHead.get_label_assignment``'s contract).

        Args:
            cls_scores, bbox_preds, iou_preds: per-level outputs of the head, [N, A * C, H, W], [N, A * 4, H, W]
                and [N, A, H, W].
            batch_gt_instances: per image, ``bboxes`` and ``labels``.
            batch_img_metas: per image meta information.
            batch_gt_instances_ignore: per image ignored ``bboxes``, or None.

        Returns:
            tuple: ``labels`` [N * A] (``num_classes`` = background), ``labels_weight`` [N * A], ``bboxes_target``
            [N * A, 4], ``bboxes_weight`` (per image [A, 4], from the MaxIoU pre-assignment, as mmdet returns it),
            ``pos_inds_flatten`` (indices of the positives in the flattened batch), ``pos_anchors`` [num_pos, 4]
            (None without positives) and ``num_pos`` (int).
        """
        pre = self.pre_assign(cls_scores, batch_gt_instances, batch_img_metas, batch_gt_instances_ignore)
        with torch.no_grad():
            pos_losses_list = self.candidate_costs(pre.anchor_list, cls_scores, bbox_preds, pre.labels,
                                                   pre.labels_weight, pre.bboxes_target, pre.bboxes_weight,
                                                   pre.pos_inds)
            labels, labels_weight, _, num_pos = self.reassign(pos_losses_list, pre.labels, pre.labels_weight,
                                                              pre.bboxes_weight, pre.pos_inds, pre.pos_gt_index,
                                                              pre.anchor_list)
        return self.assignment_result(pre, labels, labels_weight, sum(num_pos))

    def pre_assign(self,
                   cls_scores: List[Tensor],
                   batch_gt_instances: InstanceList,
                   batch_img_metas: List[dict],
                   batch_gt_instances_ignore: OptInstanceList = None) -> PreAssignment:
        """PAA's MaxIoU pre-assignment of the anchors of these feature maps (it depends on the anchors and the GT
        boxes only, not on the predictions: networks with the same anchors share it)."""
        featmap_sizes = [featmap.size()[-2:] for featmap in cls_scores]
        if len(featmap_sizes) != self.prior_generator.num_levels:
            raise ValueError(f'{type(self).__name__}: got {len(featmap_sizes)} levels of cls_scores for '
                             f'{self.prior_generator.num_levels} anchor levels')
        # a label outside the classes drops its anchors from pos_inds but not from pos_gt_index: mmdet then fails
        # on mismatched tensor sizes, far from the cause (one check for the batch: one device sync)
        labels_ok = [((gt.labels >= 0) & (gt.labels < self.num_classes)).all() for gt in batch_gt_instances]
        if labels_ok and not bool(torch.stack(labels_ok).all()):
            i = [bool(ok) for ok in labels_ok].index(False)
            raise ValueError(f'{type(self).__name__}: batch_gt_instances[{i}].labels must be in [0, '
                             f'{self.num_classes}), got {batch_gt_instances[i].labels.tolist()}')
        anchor_list, valid_flag_list = self.get_anchors(featmap_sizes, batch_img_metas, device=cls_scores[0].device)
        targets = self.get_targets(anchor_list, valid_flag_list, batch_gt_instances, batch_img_metas,
                                   batch_gt_instances_ignore)
        return PreAssignment(anchor_list, *targets)

    def assignment_result(self, pre: PreAssignment, labels: List[Tensor], labels_weight: List[Tensor],
                          num_pos: int) -> tuple:
        """The tuple of :meth:`get_label_assignment` from the re-assigned per-image labels and label weights."""
        labels = torch.cat(labels, 0).view(-1)
        labels_weight = torch.cat(labels_weight, 0).view(-1)
        bboxes_target = torch.cat(pre.bboxes_target, 0).view(-1, pre.bboxes_target[0].size(-1))
        pos_inds_flatten = ((labels >= 0) & (labels < self.num_classes)).nonzero().reshape(-1)
        flatten_anchors = torch.cat([torch.cat(anchors, 0) for anchors in pre.anchor_list])
        pos_anchors = flatten_anchors[pos_inds_flatten] if num_pos else None
        return labels, labels_weight, bboxes_target, pre.bboxes_weight, pos_inds_flatten, pos_anchors, num_pos

    def candidate_costs(self, anchor_list: List[List[Tensor]], cls_scores: List[Tensor], bbox_preds: List[Tensor],
                        labels: List[Tensor], labels_weight: List[Tensor], bboxes_target: List[Tensor],
                        bboxes_weight: List[Tensor], pos_inds: List[Tensor]) -> List[Tensor]:
        """PAA's cost (classification loss + box loss, unreduced) of every pre-assigned candidate, per image.

        The same numbers as mmdet's ``get_pos_loss`` for each image, computed in one call for the batch.

        Returns:
            list[Tensor]: per image, the [num_candidates] costs in the order of ``pos_inds``.
        """
        num_imgs = len(pos_inds)
        if self.gmm_backend == 'sklearn':
            images = flatten_head_outputs(cls_scores, self.cls_out_channels).view(num_imgs, -1, self.cls_out_channels)
            boxes = flatten_head_outputs(bbox_preds, 4).view(num_imgs, -1, 4)
            return list(
                multi_apply(self.get_pos_loss, anchor_list, list(images), list(boxes), labels, labels_weight,
                            bboxes_target, bboxes_weight, pos_inds)[0])
        num_anchors = labels[0].numel()
        counts = [inds.numel() for inds in pos_inds]
        flat = torch.cat([inds + i * num_anchors for i, inds in enumerate(pos_inds)])
        if flat.numel() == 0:
            return [cls_scores[0].new_zeros(0) for _ in range(num_imgs)]
        image = torch.repeat_interleave(
            torch.arange(num_imgs, device=flat.device), torch.tensor(counts, device=flat.device))
        anchor = torch.cat(pos_inds)
        scores = gather_head_outputs(cls_scores, self.cls_out_channels, image, anchor)
        deltas = gather_head_outputs(bbox_preds, 4, image, anchor)
        anchors = torch.cat(anchor_list[0])[anchor]
        loss_cls = self.loss_cls(
            scores, torch.cat(labels)[flat], torch.cat(labels_weight)[flat], avg_factor=1.0,
            reduction_override='none').sum(-1)
        loss_bbox = self.loss_bbox(
            self.bbox_coder.decode(anchors, deltas),
            torch.cat(bboxes_target)[flat],
            torch.cat(bboxes_weight)[flat],
            avg_factor=1.0,
            reduction_override='none')
        return list((loss_cls + loss_bbox).split(counts))

    def reassign(self, pos_losses_list: List[Tensor], labels: List[Tensor], labels_weight: List[Tensor],
                 bboxes_weight: List[Tensor], pos_inds: List[Tensor], pos_gt_index: List[Tensor],
                 anchor_list: List[List[Tensor]]) -> Tuple[list, list, list, list]:
        """PAA's re-assignment of the pre-assigned candidates of every image: the batched replacement of mmdet's
        ``multi_apply(self.paa_reassign, ...)``, with the same arguments and results.

        Per GT box, the ``topk`` lowest-cost candidates of each level are kept; the GT boxes' mixtures are fitted
        together (:func:`~mmkd.models.task_modules.paa_positive_mask`); candidates that are not positive after it
        become background (label ``num_classes``, box weight 0).

        Returns:
            tuple[list]: per image, labels [A], label weights [A], box weights [A, 4] and the number of positives.
        """
        if self.gmm_backend == 'sklearn':
            return multi_apply(self.paa_reassign, pos_losses_list, labels, labels_weight, bboxes_weight, pos_inds,
                               pos_gt_index, anchor_list)
        layout = self.candidate_layout(pos_inds, pos_gt_index, anchor_list)
        if layout.num_candidates == 0:
            is_positive = torch.zeros(0, dtype=torch.bool, device=labels[0].device)
        else:
            is_positive, _ = self.positive_candidates(torch.cat(pos_losses_list).detach(), layout)
        return self.apply_positives(is_positive, layout, labels, labels_weight, bboxes_weight)

    def candidate_layout(self, pos_inds: List[Tensor], pos_gt_index: List[Tensor],
                         anchor_list: List[List[Tensor]]) -> CandidateLayout:
        """Where every pre-assigned candidate of the batch sits: image, anchor, GT row and FPN level."""
        num_imgs = len(pos_inds)
        device = pos_inds[0].device
        counts = torch.tensor([inds.numel() for inds in pos_inds], device=device)
        image = torch.repeat_interleave(torch.arange(num_imgs, device=device), counts)
        anchor = torch.cat(pos_inds)
        gt_index = torch.cat(pos_gt_index)
        # one row per (image, GT box) slot; slots of GT boxes without candidates stay empty and are not fitted
        gts_per_image = int(gt_index.max()) + 1 if gt_index.numel() else 0
        level_ends = torch.tensor([anchors.size(0) for anchors in anchor_list[0]], device=device).cumsum(0)
        level = torch.bucketize(anchor, level_ends, right=True)
        return CandidateLayout(image, anchor, image * gts_per_image + gt_index, level, num_imgs, gts_per_image,
                               level_ends.numel())

    def positive_candidates(self, cost: Tensor, layout: CandidateLayout) -> Tuple[Tensor, TwoGaussians]:
        """PAA's positives among the pre-assigned candidates for these costs.

        Per GT box, the ``topk`` lowest-cost candidates of each level are kept, and the GT boxes' mixtures are
        fitted together (:func:`~mmkd.models.task_modules.paa_positive_mask`).

        Args:
            cost: [num_candidates] costs, in the order of ``layout``.
            layout: the candidates (:meth:`candidate_layout`).

        Returns:
            tuple: bool [num_candidates] positives, and the fitted mixtures (one row per GT row of ``layout``).
        """
        device = cost.device
        gt_row, level, num_levels, num_rows = layout.gt_row, layout.level, layout.num_levels, layout.num_rows
        # the topk lowest costs of every (GT box, level), then every GT box's kept costs in ascending order; ties
        # in cost keep the candidates' order (a stable rank), and sorting on group * n + rank orders both at once
        num_candidates = cost.numel()
        cost_rank = torch.empty_like(layout.anchor)
        cost_rank[torch.sort(cost, stable=True).indices] = torch.arange(num_candidates, device=device)
        group = gt_row * num_levels + level
        order = torch.sort(group * num_candidates + cost_rank).indices
        kept = order[_rank_in_group(group[order], num_rows * num_levels) < self.topk]
        kept = kept[torch.sort(gt_row[kept] * num_candidates + cost_rank[kept]).indices]
        column = _rank_in_group(gt_row[kept], num_rows)
        width = self.topk * num_levels
        costs = cost.new_zeros(num_rows, width)
        mask = torch.zeros(num_rows, width, dtype=torch.bool, device=device)
        costs[gt_row[kept], column] = cost[kept]
        mask[gt_row[kept], column] = True
        positives, fit = paa_positive_mask(costs, mask)
        is_positive = torch.zeros_like(cost, dtype=torch.bool)
        is_positive[kept] = positives[gt_row[kept], column]
        return is_positive, fit

    def apply_positives(self, is_positive: Tensor, layout: CandidateLayout, labels: List[Tensor],
                        labels_weight: List[Tensor], bboxes_weight: List[Tensor]) -> Tuple[list, list, list, list]:
        """Pre-assigned candidates that are not positive become background (label ``num_classes``, box weight 0).

        Returns:
            tuple[list]: per image, labels [A], label weights [A], box weights [A, 4] and the number of positives.
        """
        num_imgs = len(labels)
        num_anchors = labels[0].numel()
        labels = torch.stack(labels).view(-1).clone()
        bboxes_weight = torch.stack(bboxes_weight).view(-1, bboxes_weight[0].size(-1)).clone()
        background = (layout.image * num_anchors + layout.anchor)[~is_positive]
        labels[background] = self.num_classes
        bboxes_weight[background] = 0
        num_pos = torch.bincount(layout.image[is_positive], minlength=num_imgs).tolist()
        return (list(labels.view(num_imgs, -1)), [weight.clone() for weight in labels_weight],
                list(bboxes_weight.view(num_imgs, -1, bboxes_weight.size(-1))), num_pos)

    # ------------------------------------------------------------------------------------------------ losses
    def loss_by_feat(self,
                     cls_scores: List[Tensor],
                     bbox_preds: List[Tensor],
                     iou_preds: List[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None,
                     label_assignment_results: Optional[tuple] = None) -> dict:
        """``loss_cls``, ``loss_bbox`` and ``loss_iou`` for ``label_assignment_results`` (see
        :meth:`get_label_assignment`), by default the head's own assignment (mmdet ``PAAHead.loss_by_feat``)."""
        if label_assignment_results is None:
            label_assignment_results = self.get_label_assignment(cls_scores, bbox_preds, iou_preds, batch_gt_instances,
                                                                 batch_img_metas, batch_gt_instances_ignore)
        return self.losses_from_assignment(cls_scores, bbox_preds, iou_preds, label_assignment_results,
                                           len(batch_img_metas), self.iou_weighted_bbox)

    def losses_from_assignment(self, cls_scores: List[Tensor], bbox_preds: List[Tensor], iou_preds: List[Tensor],
                               assignment: tuple, num_imgs: int, iou_weighted_bbox: bool) -> dict:
        """Classification, box and IoU losses of these predictions for a given label assignment.

        Args:
            cls_scores, bbox_preds, iou_preds: per-level head outputs.
            assignment: the tuple of :meth:`get_label_assignment` (own or a teacher's).
            num_imgs: images in the batch (the classification loss averages over at least that many positives).
            iou_weighted_bbox: weight every positive's box loss by its IoU with its target and average over the
                IoU sum (PAA); otherwise a plain average over the positives (mmdet's LAD head).

        Returns:
            dict: ``loss_cls``, ``loss_bbox``, ``loss_iou``.
        """
        labels, labels_weight, bboxes_target, _, pos_inds_flatten, pos_anchors, num_pos = assignment
        cls_scores = flatten_head_outputs(cls_scores, self.cls_out_channels)
        bbox_preds = flatten_head_outputs(bbox_preds, 4)
        iou_preds = flatten_head_outputs(iou_preds, 1)
        loss_cls = self.loss_cls(cls_scores, labels, labels_weight, avg_factor=max(num_pos, num_imgs))
        if not num_pos:
            return dict(loss_cls=loss_cls, loss_bbox=bbox_preds.sum() * 0, loss_iou=iou_preds.sum() * 0)
        pos_bbox_pred = self.bbox_coder.decode(pos_anchors, bbox_preds[pos_inds_flatten])
        pos_bbox_target = bboxes_target[pos_inds_flatten]
        iou_target = bbox_overlaps(pos_bbox_pred.detach(), pos_bbox_target, is_aligned=True)
        loss_iou = self.loss_centerness(iou_preds[pos_inds_flatten], iou_target.unsqueeze(-1), avg_factor=num_pos)
        if iou_weighted_bbox:
            loss_bbox = self.loss_bbox(
                pos_bbox_pred, pos_bbox_target, iou_target.clamp(min=EPS), avg_factor=iou_target.sum())
        else:
            loss_bbox = self.loss_bbox(pos_bbox_pred, pos_bbox_target, avg_factor=num_pos)
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox, loss_iou=loss_iou)


def _rank_in_group(sorted_group: Tensor, num_groups: int) -> Tensor:
    """0, 1, 2, ... within each run of equal values of the sorted ``sorted_group``."""
    sizes = torch.bincount(sorted_group, minlength=num_groups)
    starts = sizes.cumsum(0) - sizes
    return torch.arange(sorted_group.numel(), device=sorted_group.device) - starts[sorted_group]
