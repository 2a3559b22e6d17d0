"""Output-space adversarial domain adaptation for mmseg segmentors, with or without a teacher.

An iteration reads a labelled source batch and an unlabelled target batch (see
:class:`~mmkd.datasets.TwoDomainDataset`) and makes two updates, each network with its own optimizer (an
``OptimWrapperDict``, see :class:`~mmkd.engine.MultiNetworkOptimWrapperConstructor`):

1. the student (segmentor), run on each domain's batch (or once on both stacked, ``joint_forward``): its supervised
   losses on the source batch, the distillation terms of a subclass, and,
   for every adversarial head, ``w_adv * BCE(D(softmax(student(target))), source)``: the target outputs are to look
   like source outputs to the discriminator (whose parameters get no gradient from this term);
2. the discriminator: ``BCE(D(p_source), source) / 2 + BCE(D(p_target), target) / 2`` on the student's detached
   softmax maps of step 1 (source = 0, target = 1), which gives the student no gradient.
"""
from functools import partial
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapperDict
from mmseg.models.segmentors import EncoderDecoder
from mmseg.models.utils import resize
from mmseg.utils import add_prefix
from torch import Tensor

from mmkd.registry import SEG_MODELS
from mmkd.utils.build import build_in_scope, model_config
from ..multi_network import MultiNetworkTrainMixin
from ..utils import Deployable

SOURCE_LABEL, TARGET_LABEL = 0.0, 1.0


def segmentor_heads(segmentor: nn.Module, owner: str = 'student') -> Dict[str, nn.Module]:
    """The heads of an mmseg ``EncoderDecoder`` by name: ``'decode_head'``, then ``'auxiliary_head'`` (or
    ``'auxiliary_head.<i>'`` for a list of auxiliary heads)."""
    if not isinstance(segmentor, EncoderDecoder):
        raise TypeError(f'the {owner} must be an mmseg EncoderDecoder (decode head + optional auxiliary heads), got '
                        f'{type(segmentor).__name__}')
    heads = {'decode_head': segmentor.decode_head}
    if segmentor.with_auxiliary_head:
        aux = segmentor.auxiliary_head
        if isinstance(aux, nn.ModuleList):
            heads.update({f'auxiliary_head.{i}': head for i, head in enumerate(aux)})
        else:
            heads['auxiliary_head'] = aux
    return heads


def loss_prefix(head: str) -> str:
    """mmseg's prefix of a head's losses: ``decode``, ``aux`` or ``aux_<i>``."""
    if head == 'decode_head':
        return 'decode'
    return 'aux' if head == 'auxiliary_head' else 'aux_' + head.rsplit('.', 1)[1]


def head_logits(segmentor: EncoderDecoder, heads: Dict[str, nn.Module], names, inputs: Tensor) -> Dict[str, Tensor]:
    """The raw (N, C, h, w) logits of the named heads for a preprocessed batch (one backbone pass)."""
    feats = segmentor.extract_feat(inputs)
    return {name: heads[name].forward(feats) for name in names}


def valid_pixels(data_samples: list,
                 size: Tuple[int, int],
                 ignore_index: int,
                 device,
                 use_labels: bool = True) -> Tensor:
    """(N, H, W) bool mask of the pixels that count: with ``use_labels`` and a label (``gt_sem_seg``), the pixels
    not labelled ``ignore_index`` (which includes the padding: mmseg pads labels with 255); otherwise (the target
    domain, whose labels are never read) the pixels of the image itself, not its padding (``img_shape``)."""
    mask = torch.zeros(len(data_samples), *size, dtype=torch.bool, device=device)
    for i, sample in enumerate(data_samples):
        if use_labels and 'gt_sem_seg' in sample:
            label = sample.gt_sem_seg.data.to(device)
            mask[i] = label.squeeze(0)[:size[0], :size[1]] != ignore_index
        else:
            h, w = sample.metainfo.get('img_shape', size)[:2]
            mask[i, :h, :w] = True
    return mask


class OutputSpaceAdaptationMixin(MultiNetworkTrainMixin):
    """The two-domain iteration shared by :class:`SegOutputSpaceAdaptation` and
    :class:`~mmkd.models.segmentation.DomainAdaptiveDistiller` (see the module docstring).

    The host sets ``self.student`` (an mmseg ``EncoderDecoder``) and calls :meth:`_init_adversarial`; subclasses add
    terms to the student's update in :meth:`extra_student_losses`.
    """

    def _init_adversarial(self,
                          discriminator: Optional[dict],
                          adv_weights: Optional[Dict[str, float]],
                          joint_forward: bool = False) -> None:
        name = type(self).__name__
        self.joint_forward = joint_forward
        self.student_heads = segmentor_heads(self.student)
        self.ignore_index = self.student.decode_head.ignore_index
        self.num_classes = self.student.decode_head.out_channels
        if adv_weights is not None and not isinstance(adv_weights, dict):
            raise TypeError(f'{name}: adv_weights must be a dict head name -> weight, e.g. dict(decode_head=1e-3, '
                            f'auxiliary_head=2e-4), got {adv_weights!r}')
        adv_weights = dict(adv_weights or {})
        if (discriminator is None) != (not adv_weights):
            raise ValueError(f'{name}: discriminator and adv_weights go together (adv_weights=dict(decode_head=1e-3, '
                             f'auxiliary_head=2e-4) names the adversarial heads), got discriminator={discriminator!r}, '
                             f'adv_weights={adv_weights!r}')
        for head, weight in adv_weights.items():
            if head not in self.student_heads:
                raise KeyError(f'{name}: adv_weights names head {head!r}; the student has {list(self.student_heads)}')
            if not isinstance(weight,
                              (int, float)) or isinstance(weight, bool) or not weight >= 0 or weight == float('inf'):
                raise ValueError(f'{name}: adv_weights[{head!r}] must be a finite number >= 0, got {weight!r}')
        self.adv_weights = adv_weights
        if discriminator is not None:
            if 'in_channels' in discriminator:
                raise KeyError(f'{name}: discriminator.in_channels is the number of classes and is set for you')
            self.discriminator = nn.ModuleDict({
                head.replace('.', '_'):
                build_in_scope(dict(discriminator, in_channels=self.num_classes), SEG_MODELS)
                for head in adv_weights
            })
            self.trainable_networks = ('student', 'discriminator')
        else:
            self.discriminator = None
            self.trainable_networks = ('student', )

    # -------------------------------------------------------------------- the iteration
    def train_step(self, data: dict, optim_wrapper: OptimWrapperDict) -> Dict[str, Tensor]:
        """One student update, then one discriminator update, on a two-domain batch.

        Args:
            data: ``dict(source=<batch>, target=<batch>)``, the collated items of a
                :class:`~mmkd.datasets.TwoDomainDataset`.
            optim_wrapper: ``student`` (and ``discriminator``) optimizer wrappers.
        """
        self._check_batch(data)
        batches = {domain: self._preprocess(data[domain]) for domain in ('source', 'target')}
        kept = {}
        log_vars = self.update_network('student', optim_wrapper, partial(self.student_losses, batches, kept))
        if self.discriminator is not None:
            log_vars.update(
                self.update_network('discriminator', optim_wrapper, partial(self.discriminator_losses, kept)))
        return log_vars

    def _check_batch(self, data) -> None:
        """Refuse, before any computation, a batch that is not two domains' batches or whose source labels are
        missing or name classes that the student does not predict (which would fail deep in mmseg or torch)."""
        name = type(self).__name__
        if not isinstance(data, dict) or set(data) != {'source', 'target'}:
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise KeyError(f"{name} trains on two domains at once: each batch must be dict(source=..., "
                           f"target=...), as the dataset type='TwoDomainDataset' gives; got {got}")
        for domain, batch in data.items():
            if not isinstance(batch, dict) or not {'inputs', 'data_samples'} <= set(batch):
                got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
                raise KeyError(f'{name}: the {domain} batch must be dict(inputs=..., data_samples=...) as '
                               f'PackSegInputs and the collate give it; got {got}')
        for sample in data['source']['data_samples']:
            where = sample.metainfo.get('img_path', 'a source image')
            if 'gt_sem_seg' not in sample:
                raise KeyError(f'{name}: the source batch has no label (gt_sem_seg) for {where}: the source '
                               "pipeline needs dict(type='LoadAnnotations') before PackSegInputs")
            label = sample.gt_sem_seg.data
            wrong = label[(label != self.ignore_index) & ((label < 0) | (label >= self.num_classes))]
            if wrong.numel():
                where = sample.metainfo.get('seg_map_path', where)
                raise ValueError(f'{name}: the source label {where} holds class {wrong[0].item()}; the student '
                                 f'predicts {self.num_classes} classes (0-{self.num_classes - 1}, ignore index '
                                 f"{self.ignore_index}): the dataset's classes and the student's num_classes "
                                 'must agree')

    def _preprocess(self, batch: dict) -> dict:
        return self.data_preprocessor(batch, True)

    def student_losses(self, batches: Dict[str, dict], kept: dict) -> Dict[str, Tensor]:
        """Supervised losses on the source, ``extra_student_losses``, adversarial terms on the target; keeps the
        detached softmax maps of the adversarial heads in ``kept`` for the discriminator."""
        source, target = batches['source'], batches['target']
        heads = list(self.student_heads)
        if not (self.adv_weights or 'target' in self.distilled_domains()):
            logits = {'source': head_logits(self.student, self.student_heads, heads, source['inputs'])}
        elif self.joint_forward and source['inputs'].shape[1:] == target['inputs'].shape[1:]:
            # one pass over both domains: batch-norm statistics of the mixed batch, as the running statistics that
            # inference uses (alternating per-domain passes would train on per-domain statistics and test on a mix)
            both = head_logits(self.student, self.student_heads, heads, torch.cat([source['inputs'], target['inputs']]))
            num = len(source['inputs'])
            logits = {'source': {h: x[:num] for h, x in both.items()}, 'target': {h: x[num:] for h, x in both.items()}}
        else:
            logits = {
                domain: head_logits(self.student, self.student_heads, heads, batches[domain]['inputs'])
                for domain in ('source', 'target')
            }
        losses = {}
        for head, seg_logits in logits['source'].items():
            losses.update(
                add_prefix(self.student_heads[head].loss_by_feat(seg_logits, source['data_samples']),
                           loss_prefix(head)))
        losses.update(self.extra_student_losses(batches, logits))
        for head, weight in self.adv_weights.items():
            align = self.student_heads[head].align_corners
            probs = {
                domain: self.full_size(logits[domain][head], batches[domain], align).float().softmax(1)
                for domain in ('source', 'target')
            }
            disc = self.discriminator[head.replace('.', '_')]
            d_target = disc(probs['target'])
            losses[f'{loss_prefix(head)}.loss_adv'] = weight * F.binary_cross_entropy_with_logits(
                d_target.float(), torch.full_like(d_target, SOURCE_LABEL, dtype=torch.float32))
            kept[head] = {domain: p.detach() for domain, p in probs.items()}
        return losses

    def discriminator_losses(self, kept: dict) -> Dict[str, Tensor]:
        """Each discriminator classifies the detached source (label 0) and target (label 1) softmax maps."""
        losses = {}
        for head, probs in kept.items():
            disc = self.discriminator[head.replace('.', '_')]
            for domain, label in (('source', SOURCE_LABEL), ('target', TARGET_LABEL)):
                d = disc(probs[domain]).float()
                losses[f'{loss_prefix(head)}.loss_{domain}'] = F.binary_cross_entropy_with_logits(
                    d, torch.full_like(d, label)) / 2
        return losses

    @staticmethod
    def full_size(logits: Tensor, batch: dict, align_corners: bool = False) -> Tensor:
        """``logits`` resized (bilinear) to the batch's input size, the size of its labels."""
        size = batch['inputs'].shape[-2:]
        if logits.shape[-2:] == size:
            return logits
        return resize(logits, size=size, mode='bilinear', align_corners=align_corners)

    # -------------------------------------------------------------------- what subclasses add
    def distilled_domains(self) -> Tuple[str, ...]:
        """The domains of the subclass's terms (the student's target logits are needed for them too)."""
        return ()

    def extra_student_losses(self, batches: Dict[str, dict], logits: Dict[str, Dict[str, Tensor]]) -> dict:
        """More terms of the student's update; ``logits[domain][head]``: the student's raw logits."""
        return {}

    # -------------------------------------------------------------------- inference: the student alone
    def predict(self, inputs, data_samples=None, **kwargs):
        return self.student.predict(inputs, data_samples, **kwargs)

    def _forward(self, inputs, data_samples=None, **kwargs):
        return self.student._forward(inputs, data_samples, **kwargs)

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss':
            raise RuntimeError(f'{type(self).__name__} trains through train_step (two domains, two optimizers); '
                               "mode='loss' has no meaning for it")
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self._forward(inputs, data_samples)
        raise RuntimeError(f'Invalid mode "{mode}". Only supports loss, predict and tensor mode')

    @classmethod
    def deployable(cls, model_cfg: dict) -> Tuple[str, dict]:
        """The student: (``'student'``, its model config; a config path is read)."""
        if 'student' not in model_cfg:
            raise KeyError(f'{cls.__name__} config has no student: {sorted(model_cfg)}')
        student = model_cfg['student']
        return 'student', model_config(student, 'student') if isinstance(student, str) else student

    @property
    def deployable_network(self) -> nn.Module:
        return self.student


@SEG_MODELS.register_module()
class SegOutputSpaceAdaptation(OutputSpaceAdaptationMixin, Deployable, BaseModel):
    """An mmseg segmentor adapted from a labelled source domain to an unlabelled target domain by output-space
    adversarial learning (Tsai et al., "Learning to Adapt Structured Output Space for Semantic Segmentation",
    CVPR 2018): the teacher and the student-alone baselines of domain-adaptive distillation.

    See the module docstring for the iteration. Validation, testing and export use the student alone
    (``tools/export_student.py`` writes a stock mmseg ``EncoderDecoder``).

    Args:
        student: the mmseg ``EncoderDecoder`` config (any decode head, optional auxiliary heads), or the path of a
            config file whose ``model`` it is.
        discriminator: the discriminator config, one built per adversarial head with ``in_channels`` = classes.
        adv_weights: head name -> weight of its adversarial term (the paper: ``decode_head`` 1e-3,
            ``auxiliary_head`` 2e-4).
        joint_forward: run the student once on the source and target batches stacked (when their inputs have the
            same size): batch norm then normalises with the statistics of both domains in training. ``False`` (the
            default, as the paper): one pass per domain, each normalised with its own batch statistics, which on
            the toy scenes adapts far better (target mIoU 51.9 vs 23.3 for the 32-wide network, see
            configs/seg_dakd/README.md).
    """

    def __init__(self,
                 student: Union[dict, nn.Module],
                 discriminator: dict = dict(type='OutputSpaceDiscriminator'),
                 adv_weights: Dict[str, float] = dict(decode_head=1e-3, auxiliary_head=2e-4),
                 joint_forward: bool = False,
                 init_cfg: Optional[dict] = None):
        if isinstance(student, str):
            student = model_config(student, 'student')
        student = build_in_scope(student, SEG_MODELS) if isinstance(student, dict) else student
        super().__init__(data_preprocessor=student.data_preprocessor, init_cfg=init_cfg)
        self.student = student
        if discriminator is None:
            raise ValueError('SegOutputSpaceAdaptation without a discriminator is plain source training: use the '
                             'student config itself')
        self._init_adversarial(discriminator, adv_weights, joint_forward)
