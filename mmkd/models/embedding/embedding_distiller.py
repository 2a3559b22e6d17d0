"""Metric-learning distillation of image embeddings: absolute / relative teacher, hints, attention."""
import re
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.structures import BaseDataElement
from torch import Tensor

from mmkd.models.distillers.base_distiller import BaseDistiller
from mmkd.models.losses import AbsoluteEmbeddingLoss
from mmkd.models.utils import FeatureRecorder
from mmkd.registry import MODELS
from mmkd.utils.build import ConfigType, build_in_scope
from .image_embedder import ImageEmbedder, sample_labels


def default_feature_loss_name(loss_cfg: dict, student: str) -> str:
    """``'loss_<kind>_<student submodule>'`` for a feature loss, e.g. ``'loss_hint_backbone_layer1'`` for a
    ``HintLoss`` on ``backbone.layer1`` (``AttentionTransferLoss`` -> ``attention_transfer``)."""
    kind = loss_cfg.get('type', 'feature') if isinstance(loss_cfg, dict) else type(loss_cfg).__name__
    kind = getattr(kind, '__name__', str(kind)).split('.')[-1]
    kind = re.sub(r'(?<!^)(?=[A-Z])', '_', re.sub(r'Loss$', '', kind)).lower() or 'feature'
    return f'loss_{kind}_{student.replace(".", "_")}'


@MODELS.register_module()
class EmbeddingDistiller(BaseDistiller):
    """An :class:`ImageEmbedder` student trained with its metric loss and a frozen embedding teacher.

    Yu et al., "Learning Metrics from Teachers: Compact Networks for Image Embedding" (CVPR 2019):
    ``L = L_ML + lambda * L_KD`` (Eq. 7) with the absolute (Eq. 4) or relative (Eq. 5-6) teacher loss on the
    embeddings, plus ``mu * L_hint`` (Eq. 9) and / or ``kappa * L_AT`` (Eq. 12) on pairs of intermediate maps
    (the weights are the losses' ``loss_weight``).

    * Semi-supervised (Sec. 5.2): samples with ``gt_label == -1`` are unlabelled; the metric loss ignores them
      and every distillation term uses the whole batch, so one mixed loader (``ClassBalancedSampler`` with
      ``unlabeled_per_batch``) gives labelled samples ML + KD and unlabelled ones KD only. A student built with
      ``loss=None`` learns from the teacher alone (the "only KD" rows of Table 3).
    * Cross-quality (Sec. 5.4): when the data samples carry ``teacher_img`` (the pipeline's ``TeacherView``), the
      teacher embeds those high-quality views of the same samples and the student its degraded ``inputs``;
      otherwise both see the same images (each with its own normalisation).

    Args:
        student: the student :class:`ImageEmbedder` config.
        teacher_cfg: the teacher's config (an :class:`ImageEmbedder`) and ``teacher_ckpt`` its checkpoint.
        distill_loss: the loss on (student, teacher) embeddings, e.g. ``RelativeDistanceLoss``; ``None`` for
            none (then ``feature_losses`` must not be empty).
        feature_losses: pairs of intermediate maps, each ``dict(student=<submodule name>, teacher=<submodule
            name>, loss=<loss config called as loss(student_map, teacher_map)>)`` and optionally ``name`` (the
            logged key, default ``'loss_<kind>_<student>'``, e.g. ``'loss_hint_backbone_layer1'``).
    """

    def __init__(self,
                 student: Union[dict, nn.Module],
                 teacher_cfg: ConfigType,
                 teacher_ckpt: Optional[str],
                 distill_loss: Optional[dict] = None,
                 feature_losses: Sequence[dict] = (),
                 init_cfg: Optional[dict] = None):
        super().__init__(student, teacher_cfg, teacher_ckpt, registry=MODELS, init_cfg=init_cfg)
        for role, network in (('student', self.student), ('teacher', self.teacher)):
            if not isinstance(network, ImageEmbedder):
                raise TypeError(f'EmbeddingDistiller needs ImageEmbedder networks, but its {role} is a '
                                f'{type(network).__name__}')
        if distill_loss is None and not feature_losses:
            raise ValueError('EmbeddingDistiller needs a distill_loss, feature_losses or both')
        self.distill_loss = build_in_scope(distill_loss, MODELS) if distill_loss is not None else None
        self.feature_losses = nn.ModuleList()
        self.feature_pairs: List[tuple] = []
        for i, pair in enumerate(feature_losses):
            missing = {'student', 'teacher', 'loss'} - set(pair)
            if missing:
                raise KeyError(f'feature_losses[{i}] lacks {sorted(missing)}: each entry is '
                               "dict(student='<submodule>', teacher='<submodule>', loss=dict(type=...))")
            self.feature_losses.append(build_in_scope(pair['loss'], MODELS))
            name = pair.get('name', default_feature_loss_name(pair['loss'], pair['student']))
            if 'loss' not in name:
                raise ValueError(f'feature_losses[{i}] name {name!r} must contain "loss" to be optimised')
            taken = ['loss_metric', 'loss_kd'] + [n for n, _, _ in self.feature_pairs]
            if name in taken:
                raise ValueError(f'feature_losses[{i}] is named {name!r}, a name already taken ({taken}): '
                                 'a term with the same name would replace the other')
            self.feature_pairs.append((name, pair['student'], pair['teacher']))
        if isinstance(self.distill_loss, AbsoluteEmbeddingLoss) and self.student.embed_dim != self.teacher.embed_dim:
            raise ValueError(f'the absolute teacher loss compares embeddings coordinate by coordinate, but the '
                             f'student embeds in {self.student.embed_dim} dimensions and the teacher in '
                             f'{self.teacher.embed_dim}: give both one embed_dim, or use RelativeDistanceLoss')
        self.student_recorder = FeatureRecorder(self.student, [s for _, s, _ in self.feature_pairs])
        self.teacher_recorder = FeatureRecorder(self.teacher, [t for _, _, t in self.feature_pairs])

    def teacher_views(self, inputs: Tensor, data_samples: Sequence[BaseDataElement]) -> Tensor:
        """The teacher's (B, 3, H, W) batch: the samples' own ``teacher_img`` views (cross-quality) if they
        carry them, else the student's images in the teacher's normalisation.

        Raises:
            KeyError: some samples carry ``teacher_img`` and others do not.
        """
        has_view = ['teacher_img' in sample for sample in data_samples]
        if not any(has_view):
            return self.teacher_inputs(inputs)
        if not all(has_view):
            raise KeyError(f'{has_view.count(False)} of {len(has_view)} data samples have no teacher_img while '
                           'the others do: a cross-quality pipeline must give every sample a TeacherView')
        views = [sample.teacher_img.to(inputs.device) for sample in data_samples]
        return self.data_preprocessor.teacher_batch(views)

    def loss(self, inputs: Tensor, data_samples: Sequence[BaseDataElement]) -> Dict[str, Tensor]:
        labels = sample_labels(data_samples, inputs.device)
        with self.student_recorder:
            student_embeddings = self.student.embed(inputs)
        with torch.no_grad(), self.teacher_recorder:
            teacher_embeddings = self.teacher.embed(self.teacher_views(inputs, data_samples))
        losses = {}
        if self.student.loss_module is not None:
            losses['loss_metric'] = self.student.metric_loss(student_embeddings, labels)
        if self.distill_loss is not None:
            losses['loss_kd'] = self.distill_loss(student_embeddings, teacher_embeddings)
        for (name, student_name, teacher_name), loss in zip(self.feature_pairs, self.feature_losses):
            maps = (self.student_recorder[student_name], self.teacher_recorder[teacher_name])
            for role, module, value in zip(('student', 'teacher'), (student_name, teacher_name), maps):
                if not isinstance(value, Tensor):
                    raise TypeError(f'{name}: the {role} submodule {module!r} outputs a {type(value).__name__}, not '
                                    "one map: name a submodule whose output is a tensor (e.g. 'backbone.layer2')")
            losses[name] = loss(*maps)
        return losses
