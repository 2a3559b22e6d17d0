"""BaseDistiller for any task: an mmseg segmentor pair, and each network's own preprocessing."""
import copy
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmdet.structures import DetDataSample
from mmengine.logging import MessageHub
from mmengine.structures import InstanceData, PixelData
from mmseg.structures import SegDataSample

from mmkd.models.distillers import BaseDistiller, DetFeatureDistiller
from mmkd.registry import SEG_MODELS
from mmkd.utils import model_config
from ...conftest import CONFIGS

RETINA_W16 = model_config(osp.join(CONFIGS, 'toy', 'retinanet_tiny-w16_toy.py'))
CAFFE = dict(mean=[103.53, 116.28, 123.675], std=[1.0, 1.0, 1.0], bgr_to_rgb=False)


def tiny_segmentor(width: int = 8, **preprocessor) -> dict:
    """A ResNetV1c-18 (2 stages, ``width`` wide) + FCN head segmentor for 3 classes on 32x32 crops."""
    return dict(
        type='EncoderDecoder',
        data_preprocessor=dict(
            type='SegDataPreProcessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            bgr_to_rgb=True,
            pad_val=0,
            seg_pad_val=255,
            size=(32, 32),
            **preprocessor),
        backbone=dict(
            type='ResNetV1c',
            depth=18,
            stem_channels=width,
            base_channels=width,
            num_stages=2,
            strides=(1, 2),
            dilations=(1, 1),
            out_indices=(1, ),
            norm_cfg=dict(type='BN')),
        decode_head=dict(
            type='FCNHead',
            in_channels=width * 2,
            in_index=0,
            channels=8,
            num_convs=1,
            concat_input=False,
            num_classes=3,
            norm_cfg=dict(type='BN'),
            align_corners=False,
            loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))


@SEG_MODELS.register_module(force=True)
class PixelKLTestDistiller(BaseDistiller):
    """Test-only segmentation distiller: the student's loss + pixel-wise KL(teacher || student) of the logits."""

    def __init__(self, student: dict, teacher_cfg: dict, teacher_ckpt=None):
        super().__init__(student, teacher_cfg, teacher_ckpt, SEG_MODELS)

    def loss(self, inputs, data_samples) -> dict:
        losses = self.student.loss(inputs, data_samples)
        with torch.no_grad():
            t_logits = self.teacher._forward(self.teacher_inputs(inputs))
        s_logits = self.student._forward(inputs)
        kl = F.kl_div(F.log_softmax(s_logits, 1), F.log_softmax(t_logits, 1), log_target=True, reduction='none')
        losses['loss_kd'] = kl.sum(1).mean()
        return losses


def _seg_data(n: int = 2, size: int = 32) -> dict:
    torch.manual_seed(0)
    samples = []
    for _ in range(n):
        sample = SegDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 3, (1, size, size)))
        samples.append(sample)
    return dict(
        inputs=[torch.randint(0, 256, (3, size, size), dtype=torch.uint8) for _ in range(n)], data_samples=samples)


def _det_data(sizes=((60, 70), (64, 50))) -> dict:
    torch.manual_seed(0)
    samples, inputs = [], []
    for h, w in sizes:
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(bboxes=torch.tensor([[4., 6., 40., 50.]]), labels=torch.tensor([1]))
        samples.append(sample)
        inputs.append(torch.randint(0, 256, (3, h, w), dtype=torch.uint8))
    return dict(inputs=inputs, data_samples=samples)


def _record_input(module: torch.nn.Module) -> list:
    seen = []
    module.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone()))
    return seen


def test_segmentation_distiller_loss_predict_tensor():
    d = PixelKLTestDistiller(student=tiny_segmentor(8), teacher_cfg=dict(model=tiny_segmentor(16)))
    d.train()
    data = d.data_preprocessor(_seg_data(), True)
    losses = d(**data, mode='loss')
    assert {'decode.loss_ce', 'loss_kd'} <= set(losses) and losses['loss_kd'] > 0
    (losses['decode.loss_ce'] + losses['loss_kd']).backward()
    assert all(p.grad is None for p in d.teacher.parameters())
    assert d.student.backbone.stem[0].weight.grad.abs().sum() > 0

    d.eval()
    data = d.data_preprocessor(_seg_data(), False)
    out = d(**copy.deepcopy(data), mode='predict')  # mmseg's predict takes no ``rescale``
    ref = d.student.predict(data['inputs'], copy.deepcopy(data['data_samples']))
    assert len(out) == 2 and torch.equal(out[0].pred_sem_seg.data, ref[0].pred_sem_seg.data)
    assert out[0].pred_sem_seg.data.shape == (1, 32, 32)
    logits = d(data['inputs'], mode='tensor')
    assert logits.shape == (2, 3, 4, 4) and torch.equal(logits, d.student._forward(data['inputs']))


def test_predict_passes_keyword_arguments_through():
    d = DetFeatureDistiller(student=RETINA_W16, teacher_cfg=RETINA_W16)
    d.eval()
    data = d.data_preprocessor(_det_data(((64, 64), (64, 64))), False)
    samples = [s.clone() for s in data['data_samples']]
    for s in samples:
        s.set_metainfo(dict(scale_factor=(0.5, 0.5)))
    out = d.predict(data['inputs'], copy.deepcopy(samples), rescale=False)
    ref = d.student.predict(data['inputs'], copy.deepcopy(samples), rescale=False)
    rescaled = d.student.predict(data['inputs'], copy.deepcopy(samples), rescale=True)
    assert torch.equal(out[0].pred_instances.bboxes, ref[0].pred_instances.bboxes)
    assert not torch.equal(out[0].pred_instances.bboxes, rescaled[0].pred_instances.bboxes)


@pytest.mark.parametrize('student_divisor', [32, 1])
def test_caffe_teacher_gets_its_own_preprocessing(student_divisor):
    # pytorch-style student (RGB, ImageNet mean / std) and caffe-style teacher (BGR, std 1)
    student = dict(RETINA_W16, data_preprocessor=dict(RETINA_W16.data_preprocessor, pad_size_divisor=student_divisor))
    teacher = dict(RETINA_W16, data_preprocessor=dict(RETINA_W16.data_preprocessor, **CAFFE))
    d = DetFeatureDistiller(student=student, teacher_cfg=teacher)
    d.train()
    raw = _det_data()
    expected_teacher = d.teacher.data_preprocessor(copy.deepcopy(raw), True)['inputs']
    expected_student = d.student.data_preprocessor(copy.deepcopy(raw), True)['inputs']
    seen_by_teacher = _record_input(d.teacher.backbone)
    seen_by_student = _record_input(d.student.backbone)

    data = d.data_preprocessor(copy.deepcopy(raw), True)
    d.loss(data['inputs'], data['data_samples'])
    assert expected_teacher.shape == (2, 3, 64, 96)
    # the canvas is the student's (64x70 without padding to 32), so that feature maps align
    assert torch.equal(seen_by_teacher[-1], expected_teacher[..., :64, :expected_student.shape[-1]])
    assert torch.equal(seen_by_student[-1], expected_student)  # the student's inputs are as before, bit for bit
    assert torch.equal(data['inputs'], expected_student)
    # a batch that did not come from the distiller's preprocessor cannot be renormalised: a clear error
    with pytest.raises(RuntimeError, match='normalises pixels differently'):
        d.loss(expected_student.clone(), data['data_samples'])


def test_batch_augments_run_once_on_both_batches():
    augment = dict(type='BatchSyncRandomResize', random_size_range=(64, 128), interval=100)
    student = dict(RETINA_W16, data_preprocessor=dict(RETINA_W16.data_preprocessor, batch_augments=[augment]))
    teacher = dict(RETINA_W16, data_preprocessor=dict(RETINA_W16.data_preprocessor, **CAFFE))
    d = DetFeatureDistiller(student=student, teacher_cfg=teacher)
    MessageHub.get_current_instance().update_info('iter', 0)
    reference = copy.deepcopy(d.student.data_preprocessor)
    for pre in (reference, d.student.data_preprocessor):
        pre.batch_augments[0]._input_size = (96, 128)
    raw = _det_data()
    expected = reference(copy.deepcopy(raw), True)
    unaugmented_teacher = d.teacher.data_preprocessor(copy.deepcopy(raw), True)['inputs']
    expected_teacher = F.interpolate(unaugmented_teacher, size=(96, 128), mode='bilinear', align_corners=False)

    data = d.data_preprocessor(copy.deepcopy(raw), True)
    assert torch.equal(data['inputs'], expected['inputs'])
    assert torch.equal(d.teacher_inputs(data['inputs']), expected_teacher)
    for sample, ref in zip(data['data_samples'], expected['data_samples']):  # boxes scaled once
        assert torch.equal(sample.gt_instances.bboxes, ref.gt_instances.bboxes)
        assert sample.img_shape == ref.img_shape


def test_segmentation_teacher_gets_its_own_preprocessing():
    teacher = tiny_segmentor(16)
    teacher['data_preprocessor'].update(CAFFE)
    d = PixelKLTestDistiller(student=tiny_segmentor(8), teacher_cfg=dict(model=teacher))
    d.train()
    raw = _seg_data()
    expected = d.teacher.data_preprocessor(copy.deepcopy(raw), True)['inputs']
    seen = _record_input(d.teacher.backbone)
    data = d.data_preprocessor(copy.deepcopy(raw), True)
    d.loss(data['inputs'], data['data_samples'])
    assert torch.equal(seen[-1], expected)


def test_teacher_with_the_students_preprocessing_shares_the_batch():
    d = DetFeatureDistiller(student=RETINA_W16, teacher_cfg=RETINA_W16)
    assert d.data_preprocessor.shares_normalisation
    data = d.data_preprocessor(_det_data(), True)
    assert d.teacher_inputs(data['inputs']) is data['inputs']


def test_to_tells_the_teachers_preprocessor_its_device():
    """``.to(device)`` reaches the teacher's data preprocessor too (mmengine sets it on children only): the
    teacher's own ``test_step`` and preprocessor then cast batches to the device its weights are on."""
    d = PixelKLTestDistiller(student=tiny_segmentor(8), teacher_cfg=dict(model=tiny_segmentor(16)))
    d.to('meta')
    assert d.student.data_preprocessor._device == torch.device('meta')
    assert d.teacher.data_preprocessor._device == torch.device('meta')
    assert next(d.teacher.parameters()).device.type == 'meta'
