"""Tiny mmseg segmentors, two-domain batches and float64 references shared by the segmentation domain-adaptation
tests (:mod:`mmkd.models.segmentation`)."""
import copy
from typing import Dict, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.optim import build_optim_wrapper
from mmengine.structures import PixelData
from mmseg.models import SegDataPreProcessor
from mmseg.structures import SegDataSample

NUM_CLASSES = 4
CANVAS = (32, 64)  # the padded batch size: the data preprocessors pad to it
SIZES = ((32, 64), (24, 48))  # one full-size and one padded image per batch
MEAN, STD = (100.0, 110.0, 120.0), (50.0, 60.0, 70.0)
IGNORE = 255
STRIDE_8 = dict(strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4))
STRIDE_16 = dict(strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2))


def tiny_segmentor(num_classes: int = NUM_CLASSES,
                   width: int = 8,
                   stride: dict = STRIDE_8,
                   aux_index: int = 2,
                   with_aux: bool = True,
                   mean: Sequence[float] = MEAN,
                   std: Sequence[float] = STD,
                   bgr_to_rgb: bool = True,
                   dropout: float = 0.0) -> dict:
    """An mmseg ``EncoderDecoder`` config: ResNetV1c-18 of ``width`` channels (output stride 8 or 16 by
    ``stride``), an FCN decode head on stage 3 and an FCN auxiliary head on stage ``aux_index``; by default no
    dropout, so that a forward pass can be repeated exactly."""
    channels = [width * 2**i for i in range(4)]  # basic blocks: stage i has width * 2^i channels

    def fcn(in_index, loss_weight):
        return dict(
            type='FCNHead',
            in_channels=channels[in_index],
            in_index=in_index,
            channels=width,
            num_convs=1,
            concat_input=False,
            dropout_ratio=dropout,
            num_classes=num_classes,
            align_corners=False,
            loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, avg_non_ignore=True, loss_weight=loss_weight))

    cfg = dict(
        type='EncoderDecoder',
        data_preprocessor=dict(
            type='SegDataPreProcessor',
            mean=list(mean),
            std=list(std),
            bgr_to_rgb=bgr_to_rgb,
            pad_val=0,
            seg_pad_val=IGNORE,
            size=CANVAS),
        backbone=dict(
            type='ResNetV1c',
            depth=18,
            stem_channels=width,
            base_channels=width,
            num_stages=4,
            out_indices=(0, 1, 2, 3),
            norm_cfg=dict(type='BN', requires_grad=True),
            contract_dilation=True,
            **stride),
        decode_head=fcn(3, 1.0),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))
    if with_aux:
        cfg['auxiliary_head'] = fcn(aux_index, 0.4)
    return cfg


class NotASegmentor(BaseModel):
    """A model with an mmseg data preprocessor and a convolution, but no ``EncoderDecoder``."""

    def __init__(self):
        super().__init__(data_preprocessor=SegDataPreProcessor(mean=list(MEAN), std=list(STD), size=CANVAS))
        self.conv = nn.Conv2d(3, NUM_CLASSES, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return self.conv(inputs)


def two_domain_batch(seed: int = 0, target_labels: str = 'none', num_classes: int = NUM_CLASSES) -> dict:
    """``dict(source=..., target=...)`` as a ``TwoDomainDataset`` dataloader gives it: per domain two uint8 BGR
    images of ``SIZES`` (the second is padded by the preprocessor). Source labels have an ignored block and
    scattered ignored pixels; the target has labels only if ``target_labels`` is ``'random'`` or ``'ignore'``
    (all 255): the models must never read them."""
    g = torch.Generator().manual_seed(seed)
    batch = {}
    for domain in ('source', 'target'):
        inputs, samples = [], []
        for h, w in SIZES:
            inputs.append(torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8))
            label = torch.randint(0, num_classes, (1, h, w), generator=g)
            label[:, :h // 4, :w // 3] = IGNORE
            label[torch.rand(1, h, w, generator=g) < 0.1] = IGNORE
            sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
            if domain == 'source' or target_labels == 'random':
                sample.gt_sem_seg = PixelData(data=label)
            elif target_labels == 'ignore':
                sample.gt_sem_seg = PixelData(data=torch.full_like(label, IGNORE))
            samples.append(sample)
        batch[domain] = dict(inputs=inputs, data_samples=samples)
    return batch


def reference_inputs(batch: dict,
                     mean: Sequence[float] = MEAN,
                     std: Sequence[float] = STD,
                     bgr_to_rgb: bool = True) -> torch.Tensor:
    """(N, 3, *CANVAS) float32: each image normalised, then padded bottom-right with 0 (written from the
    definition, not with mmseg's preprocessor)."""
    out = torch.zeros(len(batch['inputs']), 3, *CANVAS)
    mean, std = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    for i, img in enumerate(batch['inputs']):
        x = img.float().flip(0) if bgr_to_rgb else img.float()
        out[i, :, :img.shape[1], :img.shape[2]] = (x - mean) / std
    return out


def reference_labels(batch: dict) -> torch.Tensor:
    """(N, *CANVAS) long source labels padded with the ignore index."""
    out = torch.full((len(batch['inputs']), *CANVAS), IGNORE, dtype=torch.long)
    for i, sample in enumerate(batch['data_samples']):
        label = sample.gt_sem_seg.data[0]
        out[i, :label.shape[0], :label.shape[1]] = label
    return out


def image_mask(batch: dict) -> torch.Tensor:
    """(N, *CANVAS) bool: the pixels of the images, not the padding."""
    out = torch.zeros(len(batch['inputs']), *CANVAS, dtype=torch.bool)
    for i, img in enumerate(batch['inputs']):
        out[i, :img.shape[1], :img.shape[2]] = True
    return out


def upsample(logits: torch.Tensor) -> torch.Tensor:
    """Bilinear (align_corners=False) to the canvas, as every head here is configured."""
    return F.interpolate(logits, size=CANVAS, mode='bilinear', align_corners=False)


def student_logits(segmentor, inputs: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The raw logits of the decode and auxiliary heads of one forward pass."""
    feats = segmentor.extract_feat(inputs)
    out = {'decode_head': segmentor.decode_head(feats)}
    if segmentor.with_auxiliary_head:
        out['auxiliary_head'] = segmentor.auxiliary_head(feats)
    return out


def domain_logits(model, source: torch.Tensor, target: torch.Tensor, need_target: bool = True) -> Tuple[dict, dict]:
    """The student's raw logits of every head on the source and (if ``need_target``) the target inputs: one pass
    over both stacked when the model runs them jointly (batch-norm statistics of both domains), else one pass per
    domain."""
    if not need_target:
        return student_logits(model.student, source), {}
    if getattr(model, 'joint_forward', False):
        both = student_logits(model.student, torch.cat([source, target]))
        num = len(source)
        return {h: x[:num] for h, x in both.items()}, {h: x[num:] for h, x in both.items()}
    return student_logits(model.student, source), student_logits(model.student, target)


def optim_wrappers(model, student_lr: float = 0.1, discriminator_lr: float = 0.01):
    """The ``OptimWrapperDict`` of ``MultiNetworkOptimWrapperConstructor``: SGD (momentum 0.9, no weight decay) for
    the student, Adam for the discriminator if the model has one."""
    cfg = dict(
        constructor='MultiNetworkOptimWrapperConstructor',
        student=dict(optimizer=dict(type='SGD', lr=student_lr, momentum=0.9)))
    if getattr(model, 'discriminator', None) is not None:
        cfg['discriminator'] = dict(optimizer=dict(type='Adam', lr=discriminator_lr, betas=(0.9, 0.99)))
    return build_optim_wrapper(model, cfg)


def capture_grads(model, optim) -> Dict[str, list]:
    """Record, right before each network's optimizer steps, the ``.grad`` of every parameter of the model by
    name: ``{network: [{name: grad or None}, ...]}`` (one entry per step)."""
    seen = {key: [] for key in optim.keys()}
    params = list(model.named_parameters())
    for key in optim.keys():

        def hook(optimizer, args, kwargs, key=key):
            seen[key].append({n: None if p.grad is None else p.grad.detach().clone() for n, p in params})

        optim[key].optimizer.register_step_pre_hook(hook)
    return seen


def params(module, prefix: str = '') -> Dict[str, torch.Tensor]:
    """Detached copies of the parameters of ``module``."""
    return {prefix + n: p.detach().clone() for n, p in module.named_parameters()}


def assert_grads_close(actual: Dict[str, torch.Tensor], expected: Dict[str, torch.Tensor], rtol: float = 1e-4) -> None:
    """Each gradient equal to its reference up to ``rtol`` of the reference's largest magnitude."""
    assert actual.keys() == expected.keys()
    for name, ref in expected.items():
        got = actual[name]
        assert got is not None, f'{name}: no gradient'
        scale = ref.abs().max().item()
        assert scale > 0, f'{name}: the reference gradient is 0 (the test would be vacuous)'
        err = (got - ref).abs().max().item()
        assert err <= rtol * scale + 1e-10, f'{name}: max |grad - reference| {err:.3g}, reference scale {scale:.3g}'


def copy_model(model):
    """A deep copy (the hidden teacher of a distiller included) in training mode."""
    return copy.deepcopy(model).train()


def pixel_terms(student: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor,
                temperature: float) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(KL(p_t || p_s) * T^2, MSE of the probabilities, CE against the teacher's argmax), averaged over the valid
    pixels (the MSE also over the classes), from the definitions, in the dtype of the (N, C, h, w) logits of any
    size, both resized to the canvas; differentiable with respect to ``student``."""
    s, t = upsample(student), upsample(teacher.detach())
    valid = valid.to(s.dtype)
    count = valid.sum()
    log_ps, log_pt = (s / temperature).log_softmax(1), (t / temperature).log_softmax(1)
    kl = ((log_pt.exp() * (log_pt - log_ps)).sum(1) * valid).sum() / count * temperature**2
    mse = (((s.softmax(1) - t.softmax(1))**2).sum(1) * valid).sum() / (count * s.shape[1])
    ce = (-s.log_softmax(1).gather(1, t.argmax(1, keepdim=True))[:, 0] * valid).sum() / count
    return kl, mse, ce
