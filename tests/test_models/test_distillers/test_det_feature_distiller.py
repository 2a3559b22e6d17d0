import copy
import glob
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.structures import InstanceData

from mmkd.models.distillers import DetFeatureDistiller
from mmkd.models.losses import minmax_normalize, ms_ssim, ssim
from mmkd.utils import model_config
from ...conftest import CONFIGS

RETINA_W16 = model_config(osp.join(CONFIGS, 'toy', 'retinanet_tiny-w16_toy.py'))


def _faster_rcnn(width):
    base = copy.deepcopy(RETINA_W16)
    return dict(
        type='FasterRCNN',
        data_preprocessor=base.data_preprocessor,
        backbone=dict(base.backbone, base_channels=width),
        neck=dict(type='FPN', in_channels=[width, width * 2, width * 4, width * 8], out_channels=32, num_outs=5),
        rpn_head=dict(
            type='RPNHead',
            in_channels=32,
            feat_channels=32,
            anchor_generator=dict(
                type='AnchorGenerator', scales=[8], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64]),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0] * 4, target_stds=[1.0] * 4),
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        roi_head=dict(
            type='StandardRoIHead',
            bbox_roi_extractor=dict(
                type='SingleRoIExtractor',
                roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
                out_channels=32,
                featmap_strides=[4, 8, 16, 32]),
            bbox_head=dict(
                type='Shared2FCBBoxHead',
                in_channels=32,
                fc_out_channels=64,
                roi_feat_size=7,
                num_classes=5,
                bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]),
                reg_class_agnostic=False,
                loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                loss_bbox=dict(type='L1Loss', loss_weight=1.0))),
        train_cfg=dict(
            rpn=dict(
                assigner=dict(
                    type='MaxIoUAssigner',
                    pos_iou_thr=0.7,
                    neg_iou_thr=0.3,
                    min_pos_iou=0.3,
                    match_low_quality=True,
                    ignore_iof_thr=-1),
                sampler=dict(type='RandomSampler', num=64, pos_fraction=0.5, neg_pos_ub=-1, add_gt_as_proposals=False),
                allowed_border=-1,
                pos_weight=-1,
                debug=False),
            rpn_proposal=dict(nms_pre=200, max_per_img=100, nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
            rcnn=dict(
                assigner=dict(
                    type='MaxIoUAssigner',
                    pos_iou_thr=0.5,
                    neg_iou_thr=0.5,
                    min_pos_iou=0.5,
                    match_low_quality=False,
                    ignore_iof_thr=-1),
                sampler=dict(type='RandomSampler', num=64, pos_fraction=0.25, neg_pos_ub=-1, add_gt_as_proposals=True),
                pos_weight=-1,
                debug=False)),
        test_cfg=dict(
            rpn=dict(nms_pre=200, max_per_img=100, nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
            rcnn=dict(score_thr=0.0, nms=dict(type='nms', iou_threshold=0.5), max_per_img=50)))


def _batch(distiller, n=2, size=128):
    torch.manual_seed(0)
    samples = []
    for _ in range(n):
        s = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size), scale_factor=(1.0, 1.0)))
        s.gt_instances = InstanceData(
            bboxes=torch.tensor([[4., 6., 40., 50.], [30., 20., 60., 60.]]), labels=torch.tensor([1, 3]))
        samples.append(s)
    data = dict(
        inputs=[torch.randint(0, 255, (3, size, size), dtype=torch.uint8) for _ in range(n)], data_samples=samples)
    return distiller.data_preprocessor(data, True)


def _train_step_losses(distiller):
    data = _batch(distiller)
    losses = distiller.loss(data['inputs'], data['data_samples'])
    total = sum(v if torch.is_tensor(v) else sum(v) for k, v in losses.items() if 'loss' in k)
    total.backward()
    return losses


@pytest.mark.parametrize('loss', [
    dict(type='SSIMLoss', loss_weight=2.0),
    dict(type='MSSSIMLoss'),
    dict(type='L1MSSSIMLoss'),
    dict(type='L1Loss'),
    dict(type='SmoothL1Loss'),
    dict(type='MSELoss')
])
def test_single_stage_every_loss(loss):
    teacher = dict(
        model=dict(
            RETINA_W16,
            backbone=dict(RETINA_W16.backbone, base_channels=32),
            neck=dict(RETINA_W16.neck, in_channels=[32, 64, 128, 256])))
    d = DetFeatureDistiller(student=RETINA_W16, teacher_cfg=teacher, distill_loss=loss)
    d.train()
    losses = _train_step_losses(d)
    levels = [k for k in losses if k.startswith('loss_feat_l')]
    assert levels == [f'loss_feat_l{i}' for i in range(5)]
    assert all(torch.isfinite(losses[k]) for k in levels)
    # P7 of a 128x128 input is 1x1: min-max normalised, it holds no structure (SSIM of two zero maps)
    assert all(losses[k] > 0 for k in levels[:-1])
    assert d.student.neck.fpn_convs[0].conv.weight.grad.abs().sum() > 0


def test_feature_loss_is_what_the_config_says():
    # identical student and teacher weights -> SSIM of identical maps -> zero feature loss
    d = DetFeatureDistiller(student=RETINA_W16, teacher_cfg=RETINA_W16, distill_loss=dict(type='SSIMLoss'))
    d.teacher.load_state_dict(d.student.state_dict())
    d.eval()  # same BN behaviour in both
    data = _batch(d)
    losses = d.loss(data['inputs'], data['data_samples'])
    for level in range(5):
        assert losses[f'loss_feat_l{level}'].abs() < 1e-5


def _config_losses():
    """(config file name, distill_loss) of every SSIM-KD config that has a feature loss."""
    losses = []
    for path in sorted(glob.glob(osp.join(CONFIGS, 'ssim_kd', '*.py'))):
        loss = Config.fromfile(path).model.get('distill_loss')
        if loss is not None:
            losses.append(pytest.param(loss.to_dict(), id=osp.basename(path)[:-3]))
    return losses


def _reference_feature_loss(cfg: dict, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The loss that ``cfg`` names, written out from the functional pieces of each loss's definition."""
    cfg = {k: v for k, v in cfg.items() if k != '_delete_'}
    assert set(cfg) <= {'type', 'loss_weight', 'normalize', 'alpha', 'beta'}, f'reference knows no {sorted(cfg)}'
    weight, kind = cfg.get('loss_weight', 1.0), cfg['type']
    if kind == 'L1Loss':
        return weight * (s - t).abs().mean()
    if kind == 'MSELoss':
        return weight * ((s - t)**2).mean()
    if kind == 'SmoothL1Loss':
        return weight * F.smooth_l1_loss(s, t, beta=cfg.get('beta', 1.0))
    assert cfg.get('normalize', 'minmax') == 'minmax'
    s, t = minmax_normalize(s), minmax_normalize(t)
    if kind == 'SSIMLoss':
        return weight * (1 - ssim(s, t, data_range=1.0, reduction='mean'))
    one_minus_ms = 1 - ms_ssim(s, t, data_range=1.0, reduction='mean', eps=1e-6)
    if kind == 'MSSSIMLoss':
        return weight * one_minus_ms
    assert kind == 'L1MSSSIMLoss', kind
    alpha = cfg.get('alpha', 0.15)
    return weight * (alpha * (s - t).abs().mean() + (1 - alpha) * one_minus_ms)


@pytest.mark.parametrize('distill_loss', _config_losses())
def test_feature_loss_is_what_the_config_says_per_level(distill_loss):
    # loss_feat_l = level_weight * the config's loss on different student and teacher maps, level by level
    teacher = dict(
        RETINA_W16,
        backbone=dict(RETINA_W16.backbone, base_channels=32),
        neck=dict(RETINA_W16.neck, in_channels=[32, 64, 128, 256]))
    level_weights = [1.0, 0.5, 2.0, 0.25, 3.0]
    torch.manual_seed(0)
    d = DetFeatureDistiller(
        student=RETINA_W16, teacher_cfg=dict(model=teacher), distill_loss=distill_loss, level_weights=level_weights)
    d.eval()  # batch statistics of BN would differ between the loss pass and the reference pass
    data = _batch(d)
    losses = d.loss(data['inputs'], data['data_samples'])
    with torch.no_grad():
        s_feats, t_feats = d.student.extract_feat(data['inputs']), d.teacher.extract_feat(data['inputs'])
        for level, (s, t) in enumerate(zip(s_feats, t_feats)):
            expected = level_weights[level] * _reference_feature_loss(distill_loss, s, t)
            # different maps: another loss type or weight gives another value (a 1x1 P7 map, min-max normalised,
            # is zero for structural losses)
            assert expected.abs() > 1e-3 or s.shape[-2:] == (1, 1)
            torch.testing.assert_close(losses[f'loss_feat_l{level}'].detach(), expected, rtol=1e-5, atol=1e-6)


def test_pseudo_labels_keep_exactly_the_detections_above_the_threshold():
    teacher = dict(RETINA_W16, test_cfg=dict(RETINA_W16.test_cfg, score_thr=0.0))
    torch.manual_seed(0)
    d = DetFeatureDistiller(student=RETINA_W16, teacher_cfg=teacher, pseudo_label=dict(score_thr=0.5))
    d.train()
    data = _batch(d)
    with torch.no_grad():
        detections = [
            r.pred_instances
            for r in d.teacher.predict(data['inputs'], copy.deepcopy(data['data_samples']), rescale=False)
        ]
    scores = torch.cat([p.scores for p in detections]).unique()  # sorted
    assert len(scores) > 10
    thr = float(scores[len(scores) // 2] + scores[len(scores) // 2 + 1]) / 2  # strictly between two scores
    d.pseudo_label = dict(score_thr=thr)
    d.loss(data['inputs'], data['data_samples'])
    kept = 0
    for sample, pred in zip(data['data_samples'], detections):
        keep = pred.scores > thr
        kept += int(keep.sum())
        assert torch.equal(sample.gt_instances.labels, pred.labels[keep])
        assert torch.equal(sample.gt_instances.bboxes, pred.bboxes[keep])
    assert 0 < kept < sum(len(p) for p in detections)


def test_two_stage_with_adapters():
    d = DetFeatureDistiller(
        student=_faster_rcnn(8),
        teacher_cfg=dict(model=_faster_rcnn(16)),
        distill_loss=dict(type='SSIMLoss'),
        level_weights=[1, 1, 1, 0.5, 0.5])
    d.train()
    losses = _train_step_losses(d)
    assert {'loss_rpn_cls', 'loss_cls', 'loss_feat_l4'} <= set(losses)
    assert all(isinstance(a, torch.nn.Identity) for a in d.adapters)  # both necks give 32 channels


def test_channel_mismatch_gets_adapters():
    teacher = dict(
        RETINA_W16, neck=dict(RETINA_W16.neck, out_channels=96), bbox_head=dict(RETINA_W16.bbox_head, in_channels=96))
    d = DetFeatureDistiller(student=RETINA_W16, teacher_cfg=teacher)
    assert all(isinstance(a, torch.nn.Conv2d) and a.out_channels == 96 for a in d.adapters)
    assert any(k.startswith('adapters.0') for k in d.state_dict())
    _train_step_losses(d)
    with pytest.raises(ValueError, match="level 0: student has 64 channels, teacher 96"):
        DetFeatureDistiller(student=RETINA_W16, teacher_cfg=teacher, adapters='none')


def test_level_mismatch_is_a_build_error():
    teacher = dict(
        RETINA_W16,
        neck=dict(RETINA_W16.neck, num_outs=4),
        bbox_head=dict(
            RETINA_W16.bbox_head, anchor_generator=dict(RETINA_W16.bbox_head.anchor_generator, strides=[8, 16, 32,
                                                                                                        64])))
    with pytest.raises(ValueError, match='5 levels but teacher .* gives 4'):
        DetFeatureDistiller(student=RETINA_W16, teacher_cfg=teacher)
    teacher = dict(RETINA_W16, neck=dict(RETINA_W16.neck, start_level=0, in_channels=[16, 32, 64, 128]))
    with pytest.raises(ValueError, match='level 0: student .* 16x16 but teacher .* 32x32'):
        DetFeatureDistiller(student=RETINA_W16, teacher_cfg=teacher)
    with pytest.raises(ValueError, match='level_weights has 2 entries for 5 levels'):
        DetFeatureDistiller(student=RETINA_W16, teacher_cfg=RETINA_W16, level_weights=[1, 1])
    with pytest.raises(KeyError, match="no submodule 'nek'"):
        DetFeatureDistiller(student=RETINA_W16, teacher_cfg=RETINA_W16, student_module='nek')


def test_pseudo_labels_replace_ground_truth():
    d = DetFeatureDistiller(student=RETINA_W16, teacher_cfg=RETINA_W16, pseudo_label=dict(score_thr=0.0))
    d.train()
    data = _batch(d)
    with torch.no_grad():
        expected = d.teacher.predict(data['inputs'], copy.deepcopy(data['data_samples']), rescale=False)
    d.loss(data['inputs'], data['data_samples'])
    for sample, pred in zip(data['data_samples'], expected):
        assert torch.equal(sample.gt_instances.bboxes, pred.pred_instances.bboxes)
        assert 'pred_instances' not in sample
        assert sample.ignored_instances.bboxes.shape == (0, 4)  # assigners read it
    d.pseudo_label = dict(score_thr=1.0)  # nothing passes: the student learns background only
    data = _batch(d)
    losses = d.loss(data['inputs'], data['data_samples'])
    assert all(len(s.gt_instances) == 0 for s in data['data_samples'])
    assert all(torch.isfinite(v) for v in losses['loss_cls'])


def test_predict_uses_the_student():
    d = DetFeatureDistiller(student=RETINA_W16, teacher_cfg=RETINA_W16)
    d.eval()
    data = _batch(d)
    out = d.predict(data['inputs'], copy.deepcopy(data['data_samples']))
    ref = d.student.predict(data['inputs'], copy.deepcopy(data['data_samples']))
    assert torch.equal(out[0].pred_instances.bboxes, ref[0].pred_instances.bboxes)
    assert MODELS.get('DetFeatureDistiller') is DetFeatureDistiller


def test_pseudo_labels_only_has_no_feature_loss():
    d = DetFeatureDistiller(
        student=RETINA_W16, teacher_cfg=RETINA_W16, distill_loss=None, pseudo_label=dict(score_thr=0.0))
    d.train()
    losses = _train_step_losses(d)
    assert not any(k.startswith('loss_feat') for k in losses)
    assert set(losses) == {'loss_cls', 'loss_bbox'}
    with pytest.raises(ValueError, match='nothing to distill'):
        DetFeatureDistiller(student=RETINA_W16, teacher_cfg=RETINA_W16, distill_loss=None)
