"""Label Assignment Distillation (LAD) and its combination with soft labels (SoLAD) for PAA detectors.

Nguyen et al., "Improving Object Detection by Label Assignment Distillation", WACV 2022.
"""
import copy
from typing import List, Optional, Tuple

import torch
from mmdet.models.utils import unpack_gt_instances
from mmdet.structures.bbox import bbox_overlaps
from mmengine.config import ConfigDict
from torch import Tensor

from mmkd.registry import DET_MODELS
from mmkd.utils.build import ConfigType, build_in_scope, model_config
from ..dense_heads import (BatchedLADHead, BatchedPAAHead, check_same_anchors, detached, flatten_head_outputs,
                           switch_log_vars, switched_label_assignment)
from ..task_modules import build_switch
from ..utils import deployable_of
from .base_distiller import BaseDistiller

PAA_HEAD_TYPES = ('PAAHead', 'LADHead', 'BatchedPAAHead', 'BatchedLADHead')
ASSIGNERS = ('teacher', 'student')


def head_type_name(head: Optional[dict]) -> Optional[str]:
    """The class name of a head config's ``type``: a registry name, scoped ('mmdet.PAAHead') or not, or the class
    itself (mmengine's pure-Python configs); None without a head."""
    if head is None:
        return None
    head_type = head.get('type', '')
    return head_type.__name__ if isinstance(head_type, type) else str(head_type).split('.')[-1]


def with_lad_head(model_cfg: dict, what: str, gmm_backend: str) -> ConfigDict:
    """A copy of a PAA detector config whose head is built as :class:`BatchedLADHead` (same arguments, same
    weights): the distiller needs its ``get_label_assignment`` and its loss on a given assignment."""
    model_cfg = ConfigDict(copy.deepcopy(dict(model_cfg)))
    head = model_cfg.get('bbox_head')
    head_type = head_type_name(head)
    own_architecture = head_type not in PAA_HEAD_TYPES and _is_batched_paa_head(head_type)
    if head_type not in PAA_HEAD_TYPES and not own_architecture:
        raise ValueError(f'LAD needs PAA-style detectors: the {what} model.bbox_head.type must be one of '
                         f'{PAA_HEAD_TYPES} or an mmkd head built on BatchedPAAHead (COPHead), got '
                         f'{None if head is None else head.get("type")!r}')
    if head.get('gmm_backend', gmm_backend) != gmm_backend:
        raise ValueError(f"the {what} model.bbox_head.gmm_backend={head['gmm_backend']!r} contradicts the "
                         f'distiller gmm_backend={gmm_backend!r}: set one of them')
    head.update(gmm_backend=gmm_backend)
    if not own_architecture:  # a head that changes the architecture (COP) keeps its type
        head.update(type='BatchedLADHead')
    return model_cfg


def stock_paa_network(model_cfg: dict) -> dict:
    """A detector config whose mmkd batched PAA/LAD head is named as mmdet's ``PAAHead`` (same weights, same
    predictions), so that it loads in stock mmdet; other configs unchanged."""
    head = model_cfg.get('bbox_head') if isinstance(model_cfg, dict) else None
    if head_type_name(head) not in ('BatchedPAAHead', 'BatchedLADHead'):
        return model_cfg
    model_cfg = copy.deepcopy(model_cfg)
    model_cfg['bbox_head'] = {key: value for key, value in head.items() if key != 'gmm_backend'}
    model_cfg['bbox_head']['type'] = 'PAAHead'
    return model_cfg


def _is_batched_paa_head(head_type: Optional[str]) -> bool:
    head_class = DET_MODELS.get(head_type) if head_type else None
    return isinstance(head_class, type) and issubclass(head_class, BatchedPAAHead)


@DET_MODELS.register_module()
class LADDistiller(BaseDistiller):
    """A PAA student trained on the label assignment of a frozen PAA teacher, optionally with soft labels.

    LAD: the teacher's predictions (its classification scores and boxes) give the costs of PAA's probabilistic
    anchor assignment; the student learns its usual PAA losses on the labels so assigned. SoLAD adds the
    soft-label distillation of Eq. (1) (:class:`~mmkd.models.losses.SoftLabelKLLoss`): the student's sigmoid
    scores follow the teacher's on every anchor that the assignment does not ignore, normalised as the
    classification loss (by the number of positives). With ``assign_by='student'`` the student keeps its own PAA
    assignment and losses and learns only from the soft labels: the soft-label rows of the paper's Tables 2-3.

    Box distillation (``box_distill_loss``) pulls the student's decoded boxes towards the teacher's, only on the
    anchors whose teacher box overlaps its nearest GT box of the image with IoU > ``distill_iou_thr`` (the paper
    distils localisation on such predictions only).

    Both models are ordinary mmdet PAA detector configs (mmdet's ``PAAHead`` or ``LADHead``, or mmkd's batched
    heads): their heads are built as :class:`~mmkd.models.dense_heads.BatchedLADHead`, which has the same
    parameters, so a stock PAA checkpoint loads into the teacher and the exported student is a stock PAA. The
    assignment follows the student's ``train_cfg`` and ``topk`` for both (mmdet's ``LAD`` uses the student's
    ``train_cfg`` too): they define the student's labels.
    The teacher runs once per iteration, under ``no_grad``.

    Args:
        student: mmdet PAA detector config of the student.
        teacher_cfg: the teacher's config (path, ``mmdet::`` path, Config or dict); the config of an mmkd run
            (an earlier LAD) gives the network that run deploys.
        teacher_ckpt: the teacher's checkpoint (path or URL).
        assign_by: ``'teacher'`` (LAD / SoLAD) or ``'student'`` (soft-label distillation alone).
        soft_label_loss: loss on (student logits, teacher logits) per anchor, e.g.
            ``dict(type='SoftLabelKLLoss', gamma=0.5)``; None for none.
        box_distill_loss: box loss on (student boxes, teacher boxes), e.g. ``dict(type='GIoULoss')``; None for none.
        distill_iou_thr: IoU with the nearest GT above which a teacher box is distilled.
        gmm_backend: ``'torch'`` (batched, on the device) or ``'sklearn'`` (mmdet's per-GT fits) for both heads.
        switch: LAD with the dynamic switch of CoLAD (Sec. 3.4): a switch criterion config, e.g.
            ``dict(type='StdMeanCriterion')`` (see :mod:`mmkd.models.task_modules.switch_criteria`); wherever the
            student's rho is higher than the teacher's, the student assigns its own labels (self-distillation for
            that unit). None (default): the teacher always assigns. Needs ``assign_by='teacher'`` and the torch
            backend. Logs ``switch.rho.{teacher,student}`` and ``switch.share.{teacher,student}``.
    """

    def __init__(self,
                 student: dict,
                 teacher_cfg: ConfigType,
                 teacher_ckpt: Optional[str] = None,
                 assign_by: str = 'teacher',
                 soft_label_loss: Optional[dict] = None,
                 box_distill_loss: Optional[dict] = None,
                 distill_iou_thr: float = 0.5,
                 gmm_backend: str = 'torch',
                 switch: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        name = type(self).__name__
        if switch is not None and (assign_by != 'teacher' or gmm_backend != 'torch'):
            raise ValueError(f"{name}: the dynamic switch chooses between the teacher's and the student's assignment: "
                             f"it needs assign_by='teacher' and gmm_backend='torch', got {assign_by!r} and "
                             f'{gmm_backend!r}')
        if assign_by not in ASSIGNERS:
            raise ValueError(f'{name}: assign_by must be one of {ASSIGNERS}, got {assign_by!r}')
        if assign_by == 'student' and soft_label_loss is None and box_distill_loss is None:
            raise ValueError(f"{name} with assign_by='student' and neither soft_label_loss nor box_distill_loss "
                             'learns nothing from the teacher: set a distillation loss or assign_by="teacher"')
        if not 0 <= distill_iou_thr < 1:
            raise ValueError(f'{name}: distill_iou_thr must be in [0, 1), got {distill_iou_thr}')
        student_cfg = with_lad_head(student, 'student', gmm_backend)
        teacher_model = model_config(teacher_cfg, 'teacher config')
        if 'bbox_head' not in teacher_model:
            # the config of an mmkd run (e.g. an earlier LAD, with its checkpoint): the network that run deploys
            try:
                teacher_model = deployable_of(teacher_model)[1]
            except (KeyError, TypeError):  # not an mmkd model: with_lad_head names the missing head
                pass
        teacher_model = with_lad_head(teacher_model, 'teacher', gmm_backend)
        if student_cfg.get('train_cfg') is not None:
            teacher_model.train_cfg = copy.deepcopy(student_cfg.train_cfg)
        super().__init__(student_cfg, teacher_model, teacher_ckpt, DET_MODELS, init_cfg)
        self.teacher.bbox_head.topk = self.student.bbox_head.topk  # the student's labelling rule, as train_cfg
        self._check_heads_match()
        self.assign_by = assign_by
        self.soft_label_loss = None if soft_label_loss is None else build_in_scope(soft_label_loss, DET_MODELS)
        self.box_distill_loss = None if box_distill_loss is None else build_in_scope(box_distill_loss, DET_MODELS)
        self.distill_iou_thr = distill_iou_thr
        self.switch = build_switch(switch)

    @classmethod
    def deployable(cls, model_cfg: dict) -> Tuple[str, dict]:
        """The student, its head as mmdet's ``PAAHead`` where the config names an mmkd batched head: same weights
        and same predictions, so that the exported student loads in stock mmdet."""
        prefix, student = super().deployable(model_cfg)
        return prefix, stock_paa_network(student)

    def _check_heads_match(self) -> None:
        # the teacher's assignment hands its own anchors to the student's box loss (pos_anchors), and the teacher's
        # box deltas are decoded on the student's anchors: anchor sizes must match too, not only their layout
        check_same_anchors([self.student.bbox_head, self.teacher.bbox_head], ['student', 'teacher'],
                           type(self).__name__)

    @property
    def teacher_head(self) -> BatchedLADHead:
        return self.teacher.bbox_head

    @property
    def student_head(self) -> BatchedLADHead:
        return self.student.bbox_head

    def loss(self, inputs: Tensor, data_samples: list) -> dict:
        batch_gt_instances, batch_gt_instances_ignore, batch_img_metas = unpack_gt_instances(data_samples)
        with torch.no_grad():
            t_outs = self.teacher_head(self.teacher.extract_feat(self.teacher_inputs(inputs)))
            self._check_teacher_finite(t_outs)
        s_outs = self.student_head(self.student.extract_feat(inputs))
        # the assigning network's head computes the costs, as in mmdet's LAD
        switch_log = {}
        if self.switch is not None:
            assignment, decision = switched_label_assignment([self.teacher_head, self.student_head],
                                                             [t_outs, detached(s_outs)], self.switch,
                                                             batch_gt_instances, batch_img_metas,
                                                             batch_gt_instances_ignore)
            switch_log = switch_log_vars(decision, ('teacher', 'student'))
        else:
            head, outs = (self.teacher_head, t_outs) if self.assign_by == 'teacher' else (self.student_head, s_outs)
            assignment = head.get_label_assignment(*outs, batch_gt_instances, batch_img_metas,
                                                   batch_gt_instances_ignore)
        # LAD trains as mmdet's LAD head does; the student's own assignment keeps PAA's IoU-weighted box loss
        losses = self.student_head.losses_from_assignment(
            *s_outs, assignment, len(batch_img_metas), iou_weighted_bbox=self.assign_by == 'student')
        if self.soft_label_loss is not None:
            losses['loss_soft_cls'] = self._soft_label_loss(s_outs[0], t_outs[0], assignment, len(batch_img_metas))
        if self.box_distill_loss is not None:
            losses['loss_distill_bbox'] = self._box_distill_loss(s_outs[1], t_outs[1], inputs.device,
                                                                 batch_gt_instances, batch_img_metas)
        losses.update(switch_log)
        return losses

    def _check_teacher_finite(self, t_outs: tuple) -> None:
        """Raise on NaN / inf teacher scores or box deltas (a diverged or corrupt teacher checkpoint): the
        assignment treats non-finite costs as padding, so every GT box would silently lose its positives while
        the student's losses stay finite (mmdet's per-GT sklearn fit raises on them)."""
        finite = torch.stack([torch.stack([torch.isfinite(out).all() for out in outs]).all() for outs in t_outs[:2]])
        for what, ok in zip(('classification scores', 'box deltas'), finite.tolist()):
            if not ok:
                raise FloatingPointError(f'{type(self).__name__}: the teacher\'s {what} are not finite (NaN or inf) '
                                         'on this batch: check teacher_ckpt (a diverged or corrupt teacher)')

    def _soft_label_loss(self, s_scores: List[Tensor], t_scores: List[Tensor], assignment: tuple,
                         num_imgs: int) -> Tensor:
        channels = self.student_head.cls_out_channels
        labels_weight, num_pos = assignment[1], assignment[6]
        return self.soft_label_loss(
            flatten_head_outputs(s_scores, channels),
            flatten_head_outputs(t_scores, channels),
            weight=labels_weight,
            avg_factor=max(num_pos, num_imgs))

    def _box_distill_loss(self, s_deltas: List[Tensor], t_deltas: List[Tensor], device: torch.device,
                          batch_gt_instances: list, batch_img_metas: List[dict]) -> Tensor:
        student_boxes, teacher_boxes = self._decoded_boxes(s_deltas, t_deltas, device, batch_img_metas)
        selected = torch.zeros(teacher_boxes.shape[:2], dtype=torch.bool, device=device)
        for i, gt in enumerate(batch_gt_instances):
            if len(gt) > 0:
                gt_boxes = gt.bboxes.tensor if hasattr(gt.bboxes, 'tensor') else gt.bboxes
                nearest = bbox_overlaps(teacher_boxes[i], gt_boxes.to(teacher_boxes.dtype)).max(1).values
                selected[i] = nearest > self.distill_iou_thr
        num_selected = int(selected.sum())
        if num_selected == 0:
            return student_boxes.sum() * 0
        return self.box_distill_loss(student_boxes[selected], teacher_boxes[selected], avg_factor=num_selected)

    def _decoded_boxes(self, s_deltas: List[Tensor], t_deltas: List[Tensor], device: torch.device,
                       batch_img_metas: List[dict]) -> Tuple[Tensor, Tensor]:
        """Student (with gradient) and teacher boxes, both [N, A, 4], decoded on the shared anchors."""
        featmap_sizes = [deltas.size()[-2:] for deltas in s_deltas]
        anchor_list, _ = self.student_head.get_anchors(featmap_sizes, batch_img_metas, device=device)
        anchors = torch.cat([torch.cat(per_image) for per_image in anchor_list])
        num_imgs = len(batch_img_metas)
        student = self.student_head.bbox_coder.decode(anchors, flatten_head_outputs(s_deltas, 4))
        with torch.no_grad():
            teacher = self.teacher_head.bbox_coder.decode(anchors, flatten_head_outputs(t_deltas, 4))
        return student.view(num_imgs, -1, 4), teacher.view(num_imgs, -1, 4)


@DET_MODELS.register_module()
class SoLADDistiller(LADDistiller):
    """SoLAD: LAD plus the soft-label loss of Eq. (1) (focal-KL, gamma 0.5 by default), Nguyen et al., WACV 2022.

    The same arguments as :class:`LADDistiller`; only the default ``soft_label_loss`` differs: gamma 0.5, the
    paper's best soft-label setting (Table 2; alone, it needed a 3000-iteration learning-rate warm-up, which is a
    ``param_scheduler`` setting of the config).
    """

    def __init__(self,
                 student: dict,
                 teacher_cfg: ConfigType,
                 teacher_ckpt: Optional[str] = None,
                 assign_by: str = 'teacher',
                 soft_label_loss: Optional[dict] = dict(type='SoftLabelKLLoss', gamma=0.5, loss_weight=1.0),
                 box_distill_loss: Optional[dict] = None,
                 distill_iou_thr: float = 0.5,
                 gmm_backend: str = 'torch',
                 switch: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if soft_label_loss is None:
            raise ValueError('SoLADDistiller without soft_label_loss is LAD: use LADDistiller')
        super().__init__(student, teacher_cfg, teacher_ckpt, assign_by, soft_label_loss, box_distill_loss,
                         distill_iou_thr, gmm_backend, switch, init_cfg)
