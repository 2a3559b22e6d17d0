"""mmdet's LAD head (a PAA head trained on a given label assignment) on the batched PAA assignment."""
from typing import List

from mmdet.models.utils import unpack_gt_instances
from mmdet.structures import SampleList
from torch import Tensor

from mmkd.registry import DET_MODELS
from .paa_head import BatchedPAAHead


@DET_MODELS.register_module()
class BatchedLADHead(BatchedPAAHead):
    """mmdet's ``LADHead`` on :class:`BatchedPAAHead`: same constructor, same ``get_label_assignment`` contract, and
    a ``loss`` / ``loss_by_feat`` that train on the label assignment they are given (a teacher's, in LAD).

    As mmdet's LAD head, the box loss is a plain average over the positives (PAA's own loss weights it by IoU).
    Without an assignment, ``loss_by_feat`` assigns from the head's own predictions.
    """

    iou_weighted_bbox = False

    def loss(self, x: List[Tensor], label_assignment_results: tuple, batch_data_samples: SampleList) -> dict:
        """Losses of the head on features ``x`` (per level [N, C, H, W]) for a given label assignment."""
        batch_gt_instances, batch_gt_instances_ignore, batch_img_metas = unpack_gt_instances(batch_data_samples)
        return self.loss_by_feat(
            *self(x),
            batch_gt_instances,
            batch_img_metas,
            batch_gt_instances_ignore=batch_gt_instances_ignore,
            label_assignment_results=label_assignment_results)
