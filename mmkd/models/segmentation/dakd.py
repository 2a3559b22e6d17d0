"""Domain-adaptive knowledge distillation for semantic segmentation (Kothandaraman, Nambiar, Mittal, "Domain
Adaptive Knowledge Distillation for Driving Scene Semantic Segmentation", WACV 2021 Workshops)."""
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor

from mmkd.registry import SEG_MODELS
from mmkd.utils.build import ConfigType, build_in_scope, model_config
from ..distillers.base_distiller import BaseDistiller
from .adaptation import OutputSpaceAdaptationMixin, head_logits, loss_prefix, segmentor_heads, valid_pixels

DOMAINS = ('source', 'target')


@SEG_MODELS.register_module()
class DomainAdaptiveDistiller(OutputSpaceAdaptationMixin, BaseDistiller):
    """A student segmentor adapted to an unlabelled target domain and distilled from a frozen teacher.

    Each iteration reads a labelled source batch and an unlabelled target batch (dataset
    ``type='TwoDomainDataset'``) and makes two updates, each with its own optimizer:

    * the student: its supervised losses on the source; the distillation terms on the domains of
      ``distill_domains`` (the paper's paradigms: (a) ``('source',)``, (b) ``('target',)``, (c) both; (d) is (b)
      started from a (c) checkpoint with ``load_from``); the adversarial terms of ``adv_weights`` on the target;
    * the discriminator (one per adversarial head, on softmax maps): source 0, target 1, on detached maps.

    A distillation term compares the student's and the teacher's logits of one head, both resized (bilinear, each
    with its head's ``align_corners``) to the input size, which is the label size: teacher and student may have
    different output strides. Pixels that do not count are excluded from every term: on the source, the pixels
    labelled with the student's ``ignore_index`` (and the padding); on the target, the padding.
    The teacher sees the same images, normalised the way its own config says.

    Args:
        student: the student's mmseg ``EncoderDecoder`` config, or the path of a config file whose ``model`` it is.
        teacher_cfg: the teacher's config (an mmseg ``EncoderDecoder``, or an mmkd config that deploys one, e.g. a
            :class:`~mmkd.models.segmentation.SegOutputSpaceAdaptation` run); same classes as the student.
        teacher_ckpt: the teacher's checkpoint.
        distill_losses: term name -> loss config (``PixelKLLoss``, ``PixelMSELoss``, ``QuasiTeacherCELoss`` or any
            loss called as ``loss(student_logits, teacher_logits, valid)``); a config may carry
            ``heads=('decode_head', ...)``, the student heads the term is applied to (default the decode head; the
            teacher's head of the same name is its target). Logged as ``<domain>.<head>.loss_<name>``.
        distill_domains: where the terms apply: ``('source',)``, ``('target',)`` or ``('source', 'target')``.
        discriminator: the discriminator config (``None``: no adversarial adaptation).
        adv_weights: head name -> weight of its adversarial term (paper: decode 1e-3, auxiliary 2e-4).
        joint_forward: one student pass over both domains' batches stacked instead of one per domain (default
            ``False``, one pass per domain; see :class:`~mmkd.models.segmentation.SegOutputSpaceAdaptation`).
    """

    def __init__(self,
                 student: Union[dict, nn.Module],
                 teacher_cfg: ConfigType,
                 teacher_ckpt: Optional[str] = None,
                 distill_losses: Dict[str, dict] = dict(
                     kl=dict(type='PixelKLLoss', loss_weight=0.1),
                     mse=dict(type='PixelMSELoss', loss_weight=0.01),
                     ce=dict(type='QuasiTeacherCELoss', loss_weight=1.0)),
                 distill_domains: Sequence[str] = ('source', ),
                 discriminator: Optional[dict] = dict(type='OutputSpaceDiscriminator'),
                 adv_weights: Optional[Dict[str, float]] = dict(decode_head=1e-3, auxiliary_head=2e-4),
                 joint_forward: bool = False,
                 init_cfg: Optional[dict] = None):
        if isinstance(student, str):
            student = model_config(student, 'student')
        super().__init__(student, teacher_cfg, teacher_ckpt, SEG_MODELS, init_cfg)
        name = type(self).__name__
        self._init_adversarial(discriminator, adv_weights, joint_forward)
        self.teacher_heads = segmentor_heads(self.teacher, 'teacher')
        if self.teacher.decode_head.out_channels != self.num_classes:
            raise ValueError(f'{name}: the student predicts {self.num_classes} classes, the teacher '
                             f'{self.teacher.decode_head.out_channels}: distillation needs the same classes')
        if isinstance(distill_domains, str) or not distill_domains or set(distill_domains) - set(DOMAINS) or len(
                set(distill_domains)) != len(distill_domains):
            raise ValueError(f"{name}: distill_domains must be ('source',), ('target',) or ('source', 'target'), got "
                             f'{distill_domains!r}')
        self._domains = tuple(d for d in DOMAINS if d in distill_domains)
        if not isinstance(distill_losses, dict) or not distill_losses:
            raise ValueError(f'{name}: distill_losses must name at least one term, e.g. '
                             f"dict(kl=dict(type='PixelKLLoss', loss_weight=0.1)), got {distill_losses!r}")
        self.distill_losses = nn.ModuleDict()
        self.distill_heads: Dict[str, Tuple[str, ...]] = {}
        for term, cfg in distill_losses.items():
            if not isinstance(cfg, dict) or 'type' not in cfg:
                raise TypeError(f'{name}: distill_losses.{term} must be a loss config dict with a type, got {cfg!r}')
            cfg = dict(cfg)
            heads = cfg.pop('heads', ('decode_head', ))
            heads = (heads, ) if isinstance(heads, str) else tuple(heads)
            for head in heads:
                for owner, known in (('student', self.student_heads), ('teacher', self.teacher_heads)):
                    if head not in known:
                        raise KeyError(f'{name}: distill_losses.{term} is applied to head {head!r}, which the {owner} '
                                       f'does not have ({list(known)})')
            self.distill_losses[term] = build_in_scope(cfg, SEG_MODELS)
            self.distill_heads[term] = heads
        # the teacher computes these heads only
        self.teacher_read_heads = sorted({head for heads in self.distill_heads.values() for head in heads})

    def _preprocess(self, batch: dict) -> dict:
        out = super()._preprocess(batch)
        # the teacher's normalisation of this batch is only available right after it is made
        return dict(out, teacher_inputs=self.teacher_inputs(out['inputs']))

    def distilled_domains(self) -> Tuple[str, ...]:
        return self._domains

    @torch.no_grad()
    def teacher_logits(self, batch: dict) -> Dict[str, Tensor]:
        """The teacher's raw logits of the distilled heads for a preprocessed batch."""
        return head_logits(self.teacher, self.teacher_heads, self.teacher_read_heads, batch['teacher_inputs'])

    def extra_student_losses(self, batches: Dict[str, dict], logits: Dict[str, Dict[str, Tensor]]) -> dict:
        losses = {}
        for domain in self._domains:
            batch = batches[domain]
            teacher = self.teacher_logits(batch)
            size = batch['inputs'].shape[-2:]
            valid = valid_pixels(
                batch['data_samples'], size, self.ignore_index, batch['inputs'].device, use_labels=domain == 'source')
            resized = {}
            for term, loss in self.distill_losses.items():
                for head in self.distill_heads[term]:
                    if head not in resized:
                        resized[head] = (self.full_size(logits[domain][head], batch,
                                                        self.student_heads[head].align_corners),
                                         self.full_size(teacher[head], batch, self.teacher_heads[head].align_corners))
                    s, t = resized[head]
                    losses[f'{domain}.{loss_prefix(head)}.loss_{term}'] = loss(s, t, valid)
        return losses

    def loss(self, inputs, data_samples) -> dict:
        raise RuntimeError('DomainAdaptiveDistiller trains through train_step (two domains, two optimizers)')
