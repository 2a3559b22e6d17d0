"""Feature distillation for any mmdet detector: SSIM-KD (de Rijk et al.) and its pointwise baselines."""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.structures import InstanceData
from torch import Tensor

from mmkd.models.utils import FeatureRecorder
from mmkd.registry import DET_MODELS
from mmkd.utils.build import ConfigType, build_in_scope
from .base_distiller import BaseDistiller


def _as_levels(output) -> Tuple[Tensor, ...]:
    return tuple(output) if isinstance(output, (list, tuple)) else (output, )


@DET_MODELS.register_module()
class DetFeatureDistiller(BaseDistiller):
    """A detector student that mimics the teacher's features level by level.

    total = L_det(student) + sum_l w_l * L_feat(adapter_l(F_s^l), F_t^l)   (SSIM-KD, Eq. 6)

    where F^l are the outputs of ``student_module`` / ``teacher_module`` (the FPN levels by
    default) and L_feat is ``distill_loss`` (``SSIMLoss``, ``MSSSIMLoss``, ``L1MSSSIMLoss``, or
    mmdet's ``L1Loss`` / ``SmoothL1Loss`` / ``MSELoss``). Works for single- and two-stage detectors.

    With ``pseudo_label=dict(score_thr=0.3)`` the student is trained on the teacher's detections
    above the threshold instead of the ground truth (unlabeled data, SSIM-KD appendix A.2).

    Args:
        student: mmdet detector config of the student.
        teacher_cfg: config of the teacher (path, ``mmdet::`` path, Config or dict).
        teacher_ckpt: the teacher's checkpoint.
        distill_loss: loss config applied to every level; ``None`` trains on pseudo-labels only (the
            'vanilla' row of the paper's unlabeled-data table).
        student_module, teacher_module: names of the submodules whose outputs are distilled.
        level_weights: one weight per level (default 1 for all).
        adapters: ``'auto'`` adds a 1x1 conv on a student level whose channels differ from the
            teacher's; ``'always'`` adds one on every level; ``'none'`` requires equal channels.
        pseudo_label: ``None`` or ``dict(score_thr=...)`` for training on teacher detections.
        probe_size: (H, W) of the zero image used at build time to check the levels' shapes.
    """

    def __init__(self,
                 student: dict,
                 teacher_cfg: ConfigType,
                 teacher_ckpt: Optional[str] = None,
                 distill_loss: Optional[dict] = dict(type='SSIMLoss', loss_weight=2.0),
                 student_module: str = 'neck',
                 teacher_module: str = 'neck',
                 level_weights: Optional[Sequence[float]] = None,
                 adapters: str = 'auto',
                 pseudo_label: Optional[dict] = None,
                 probe_size: Tuple[int, int] = (128, 128),
                 init_cfg: Optional[dict] = None):
        super().__init__(student, teacher_cfg, teacher_ckpt, DET_MODELS, init_cfg)
        if adapters not in ('auto', 'always', 'none'):
            raise ValueError(f"adapters must be 'auto', 'always' or 'none', got {adapters!r}")
        if pseudo_label is not None and set(pseudo_label) - {'score_thr'}:
            raise KeyError(f'pseudo_label only takes score_thr, got keys {sorted(pseudo_label)}')
        if distill_loss is None and pseudo_label is None:
            raise ValueError('DetFeatureDistiller with distill_loss=None and pseudo_label=None has nothing to '
                             'distill: set a feature loss, pseudo-labels, or both')
        self.distill_loss = None if distill_loss is None else build_in_scope(distill_loss, DET_MODELS)
        self.student_module, self.teacher_module = student_module, teacher_module
        self.pseudo_label = pseudo_label
        self.student_recorder = FeatureRecorder(self.student, [student_module])
        self.teacher_recorder = FeatureRecorder(self.teacher, [teacher_module])

        s_shapes, t_shapes = self._probe_shapes(probe_size)
        if len(s_shapes) != len(t_shapes):
            raise ValueError(f'student {student_module!r} gives {len(s_shapes)} levels but teacher '
                             f'{teacher_module!r} gives {len(t_shapes)}: they must match level by level')
        for level, (s, t) in enumerate(zip(s_shapes, t_shapes)):
            if s[1:] != t[1:]:
                raise ValueError(f'level {level}: student {student_module!r} map is {s[1]}x{s[2]} but teacher '
                                 f'{teacher_module!r} map is {t[1]}x{t[2]} for a {probe_size} input; '
                                 'feature distillation needs equal strides')
            if s[0] != t[0] and adapters == 'none':
                raise ValueError(f"level {level}: student has {s[0]} channels, teacher {t[0]}; use adapters='auto'")
        self.adapters = nn.ModuleList(
            nn.Conv2d(s[0], t[0], 1) if adapters == 'always' or s[0] != t[0] else nn.Identity()
            for s, t in zip(s_shapes, t_shapes))
        if level_weights is None:
            level_weights = [1.0] * len(s_shapes)
        if len(level_weights) != len(s_shapes):
            raise ValueError(f'level_weights has {len(level_weights)} entries for {len(s_shapes)} levels')
        self.level_weights = list(level_weights)

    @torch.no_grad()
    def _probe_shapes(self, size: Tuple[int, int]) -> Tuple[List[tuple], List[tuple]]:
        """(C, H, W) of every recorded level of student and teacher for a zero image of ``size``."""
        was_training = self.student.training
        self.student.eval()
        probe = torch.zeros(1, 3, *size)
        shapes = []
        for model, recorder, name in ((self.student, self.student_recorder, self.student_module),
                                      (self.teacher, self.teacher_recorder, self.teacher_module)):
            with recorder:
                model.extract_feat(probe)
            shapes.append([tuple(level.shape[1:]) for level in _as_levels(recorder[name])])
        self.student.train(was_training)
        return shapes[0], shapes[1]

    @torch.no_grad()
    def _teacher_pass(self, inputs: Tensor, data_samples: list) -> Tuple[Tensor, ...]:
        """Teacher features; with pseudo-labels, also replaces the samples' ground truth by detections."""
        inputs = self.teacher_inputs(inputs)
        with self.teacher_recorder:
            if self.pseudo_label is None:
                self.teacher.extract_feat(inputs)
            else:
                results = self.teacher.predict(inputs, data_samples, rescale=False)
                thr = self.pseudo_label.get('score_thr', 0.3)
                for sample, result in zip(data_samples, results):
                    pred = result.pred_instances
                    keep = pred.scores > thr
                    sample.gt_instances = InstanceData(bboxes=pred.bboxes[keep], labels=pred.labels[keep])
                    # no ignore regions among pseudo-labels (images without annotations get an empty,
                    # box-less ignored_instances from PackDetInputs, which mmdet's assigners cannot read)
                    sample.ignored_instances = InstanceData(bboxes=pred.bboxes[:0], labels=pred.labels[:0])
                    del sample.pred_instances
        return _as_levels(self.teacher_recorder[self.teacher_module])

    def loss(self, inputs: Tensor, data_samples: list) -> dict:
        t_feats = self._teacher_pass(inputs, data_samples)
        if self.distill_loss is None:
            return self.student.loss(inputs, data_samples)
        with self.student_recorder:
            losses = self.student.loss(inputs, data_samples)
        s_feats = _as_levels(self.student_recorder[self.student_module])
        for level, (adapter, weight, s, t) in enumerate(zip(self.adapters, self.level_weights, s_feats, t_feats)):
            losses[f'loss_feat_l{level}'] = weight * self.distill_loss(adapter(s), t)
        return losses
