"""COPHead (CoLAD appendix A, Eq. (4)): the score formula against a direct loop, borders, saturated logits, mixed
precision, the three ``iou_branch`` modes at training and inference, the COCO configs, and a toy training."""
import copy
import glob
import json
import math
import os.path as osp

import pytest
import torch
from mmdet.models.dense_heads import PAAHead
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config, ConfigDict
from mmengine.structures import InstanceData

from mmkd.models.dense_heads.cop_head import COPHead, cop_logits
from ...conftest import CONFIGS, PYTHON, TOOLS
from ...test_tools.test_train_tools import _run

STRIDES = (8, 16, 32)
NUM_CLASSES = 4
HEAD = dict(
    type='COPHead',
    reg_decoded_bbox=True,
    score_voting=True,
    topk=9,
    num_classes=NUM_CLASSES,
    in_channels=16,
    stacked_convs=1,
    feat_channels=16,
    norm_cfg=dict(type='GN', num_groups=8, requires_grad=True),
    anchor_generator=dict(
        type='AnchorGenerator', ratios=[1.0], octave_base_scale=4, scales_per_octave=1, strides=list(STRIDES)),
    bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0], target_stds=[0.1, 0.1, 0.2, 0.2]),
    loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
    loss_bbox=dict(type='GIoULoss', loss_weight=1.3),
    loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=0.5),
    train_cfg=dict(
        assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.1, neg_iou_thr=0.1, min_pos_iou=0, ignore_iof_thr=-1),
        allowed_border=-1,
        pos_weight=-1,
        debug=False),
    test_cfg=dict(nms_pre=50, min_bbox_size=0, score_thr=0.05, nms=dict(type='nms', iou_threshold=0.6), max_per_img=20))
SIZE = (96, 128)


def build(seed=0, **overrides):
    cfg = copy.deepcopy(HEAD)
    cfg.update(overrides)
    cfg['train_cfg'] = ConfigDict(cfg['train_cfg'])
    cfg['test_cfg'] = ConfigDict(cfg['test_cfg'])
    torch.manual_seed(seed)
    head = MODELS.build(cfg)
    head.init_weights()
    return head


def random_batch(seed=0, num_imgs=2, num_gts=4):
    g = torch.Generator().manual_seed(seed)
    h, w = SIZE
    feats = [torch.randn(num_imgs, 16, h // s, w // s, generator=g) for s in STRIDES]
    metas = [dict(img_shape=SIZE, pad_shape=SIZE, batch_input_shape=SIZE, scale_factor=(1., 1.))] * num_imgs
    gts = []
    for _ in range(num_imgs):
        xy = torch.rand(num_gts, 2, generator=g) * torch.tensor([w - 32.0, h - 32.0])
        boxes = torch.cat([xy, xy + 16 + torch.rand(num_gts, 2, generator=g) * 40], 1)
        gts.append(InstanceData(bboxes=boxes, labels=torch.randint(0, NUM_CLASSES, (num_gts, ), generator=g)))
    return feats, gts, metas


def reference_logits(cls_logits, obj_logits, num_anchors):
    """Eq. (4) by a direct loop over images, anchors, classes, positions and neighbours, in float64."""
    s, o = cls_logits.detach().double(), obj_logits.detach().double()
    num_imgs, channels, height, width = s.shape
    num_classes = channels // num_anchors
    out = torch.empty_like(s)
    for n in range(num_imgs):
        for a in range(num_anchors):
            for c in range(num_classes):
                for y in range(height):
                    for x in range(width):
                        p = 0.
                        for k in range(9):
                            ny, nx = y + k // 3 - 1, x + k % 3 - 1
                            if 0 <= ny < height and 0 <= nx < width:
                                p += float(torch.sigmoid(o[n, a * 9 + k, y, x])) * float(
                                    torch.sigmoid(s[n, a * num_classes + c, ny, nx]))
                        p /= 9
                        out[n, a * num_classes + c, y, x] = math.log(p) - math.log1p(-p)
    return out


@pytest.mark.parametrize('num_anchors', [1, 2])
def test_cop_logits_equal_a_direct_loop(num_anchors):
    g = torch.Generator().manual_seed(num_anchors)
    cls_logits = 3 * torch.randn(2, num_anchors * 3, 4, 5, generator=g, dtype=torch.float64)
    obj_logits = 3 * torch.randn(2, num_anchors * 9, 4, 5, generator=g, dtype=torch.float64)
    expected = reference_logits(cls_logits, obj_logits, num_anchors)
    torch.testing.assert_close(cop_logits(cls_logits, obj_logits, num_anchors), expected, rtol=1e-10, atol=1e-10)
    in_float32 = cop_logits(cls_logits.float(), obj_logits.float(), num_anchors)
    assert in_float32.dtype == torch.float32
    torch.testing.assert_close(in_float32.double(), expected, rtol=1e-5, atol=1e-5)


def test_neighbours_outside_the_map_contribute_zero_of_nine():
    # sigmoid(0) = 1/2 everywhere: p = (in-map neighbours) / 9 * 1/4
    p = torch.sigmoid(cop_logits(torch.zeros(1, 1, 3, 4), torch.zeros(1, 9, 3, 4)))[0, 0]
    counts = torch.tensor([[4., 6, 6, 4], [6, 9, 9, 6], [4, 6, 6, 4]])
    torch.testing.assert_close(p, counts / 36)
    # saturated: p = in-map / 9 at the border; inside, 1 - p = 2 exp(-50) (its logit 50 - log 2 stays exact)
    logits = cop_logits(torch.full((1, 1, 3, 4), 50.), torch.full((1, 9, 3, 4), 50.))[0, 0]
    expected = torch.log(counts / (9 - counts))
    expected[1, 1:3] = 50 - math.log(2)
    torch.testing.assert_close(logits, expected)


@pytest.mark.parametrize('s,o', [(50., 50.), (-50., -50.), (1e4, 1e4), (-1e4, -1e4), (1e4, -1e4), (-1e4, 1e4)])
def test_saturated_logits_give_finite_scores_and_gradients(s, o):
    cls_logits = torch.full((1, 2, 3, 4), s, requires_grad=True)
    obj_logits = torch.full((1, 18, 3, 4), o, requires_grad=True)
    out = cop_logits(cls_logits, obj_logits, num_anchors=2)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(cls_logits.grad).all() and torch.isfinite(obj_logits.grad).all()
    counts = torch.tensor([[4., 6, 6, 4], [6, 9, 9, 6], [4, 6, 6, 4]])
    if s < 0 or o < 0:
        # p = n/9 sigmoid(s) sigmoid(o), the sigmoid of a negative logit being exp(logit) at this size
        expected = torch.log(counts / 9) + min(s, 0) + min(o, 0)
    else:
        expected = torch.log(counts / (9 - counts))
        expected[1, 1:3] = s - math.log(2)
    torch.testing.assert_close(out[0], expected.expand(2, 3, 4), rtol=1e-6, atol=2e-3)


def test_mixed_saturated_logits_have_finite_gradients():
    g = torch.Generator().manual_seed(0)
    pick = torch.tensor([-1e4, -50., 0., 50., 1e4])
    cls_logits = pick[torch.randint(0, 5, (2, 3, 5, 6), generator=g)].requires_grad_()
    obj_logits = pick[torch.randint(0, 5, (2, 9, 5, 6), generator=g)].requires_grad_()
    out = cop_logits(cls_logits, obj_logits)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(cls_logits.grad).all() and torch.isfinite(obj_logits.grad).all()


def test_cop_logits_gradients_against_finite_differences():
    g = torch.Generator().manual_seed(0)
    cls_logits = torch.randn(1, 4, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    obj_logits = torch.randn(1, 18, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s, o: cop_logits(s, o, 2), (cls_logits, obj_logits))


def test_invalid_arguments_are_named():
    with pytest.raises(
            ValueError, match=r"COPHead: iou_branch must be one of \('train_test', 'train', 'none'\), "
            r"got 'test'"):
        build(iou_branch='test')
    with pytest.raises(ValueError, match=r'obj_logits must have shape \(1, 9, 3, 4\)'):
        cop_logits(torch.zeros(1, 2, 3, 4), torch.zeros(1, 18, 3, 4))


@pytest.mark.parametrize('ratios', [[1.0], [1.0, 2.0]])
def test_head_outputs_are_eq4_of_its_two_branches(ratios):
    head = build(anchor_generator=dict(HEAD['anchor_generator'], ratios=ratios))
    num_anchors = len(ratios)
    feats, _, _ = random_batch()
    cls_scores, bbox_preds, iou_preds = head(feats)
    for feat, cls_score, bbox_pred, iou_pred in zip(feats, cls_scores, bbox_preds, iou_preds):
        n, _, h, w = feat.shape
        assert cls_score.shape == (n, num_anchors * NUM_CLASSES, h, w) and cls_score.dtype == torch.float32
        assert bbox_pred.shape == (n, num_anchors * 4, h, w) and iou_pred.shape == (n, num_anchors, h, w)
        # the class logits from the classification tower, the objectness from the regression tower
        cls_feat, reg_feat = head.cls_convs[0](feat), head.reg_convs[0](feat)
        expected = reference_logits(head.atss_cls(cls_feat), head.cop_obj(reg_feat), num_anchors)
        torch.testing.assert_close(cls_score.double(), expected.double(), rtol=1e-5, atol=1e-5)


def test_initial_scores_are_near_the_focal_prior():
    head = build()
    feats, _, _ = random_batch()
    interior = torch.sigmoid(head(feats)[0][0][..., 1:-1, 1:-1])
    # class prior 0.02 x objectness 0.5
    torch.testing.assert_close(interior.mean(), torch.tensor(0.01), rtol=0.05, atol=0)


def test_autocast_bfloat16_gives_float32_finite_scores():
    head = build()
    feats, gts, metas = random_batch()
    reference = head(feats)[0]
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs = head(feats)
        losses = head.loss_by_feat(*outs, gts, metas)
    for score, ref in zip(outs[0], reference):
        assert score.dtype == torch.float32 and torch.isfinite(score).all()
        torch.testing.assert_close(score, ref, rtol=0, atol=0.05)
    assert all(torch.isfinite(loss) for loss in losses.values())


def three_heads():
    """The three iou_branch modes with the same weights ('none' has no IoU conv)."""
    heads = {mode: build(iou_branch=mode) for mode in ('train_test', 'train', 'none')}
    state = heads['train_test'].state_dict()
    heads['train'].load_state_dict(state)
    result = heads['none'].load_state_dict(state, strict=False)
    assert not result.missing_keys and sorted(
        result.unexpected_keys) == ['atss_centerness.bias', 'atss_centerness.weight']
    return heads


def test_iou_branch_modes_at_training():
    heads = three_heads()
    feats, gts, metas = random_batch()
    losses, assignments = {}, {}
    for mode, head in heads.items():
        outs = head(feats)
        assert all(iou.shape[1] == (0 if mode == 'none' else 1) for iou in outs[2])
        # the outputs stay tensors (the distillers detach them all)
        assert all(isinstance(level, torch.Tensor) for out in outs for level in out)
        assignments[mode] = head.get_label_assignment(*outs, gts, metas)
        losses[mode] = head.loss_by_feat(*outs, gts, metas)
        sum(losses[mode].values()).backward()
        # every parameter takes part in the loss (DistributedDataParallel without find_unused_parameters)
        for name, param in head.named_parameters():
            assert param.grad is not None and torch.isfinite(param.grad).all(), (mode, name)
    assert not hasattr(heads['none'], 'atss_centerness')
    assert set(losses['train_test']) == set(losses['train']) == {'loss_cls', 'loss_bbox', 'loss_iou'}
    assert set(losses['none']) == {'loss_cls', 'loss_bbox'}
    assert assignments['none'][-1] > 0
    for mode in ('train', 'none'):
        for ours, ref in zip(assignments[mode], assignments['train_test']):
            if isinstance(ref, torch.Tensor):
                torch.testing.assert_close(ours, ref, rtol=0, atol=0)
            elif isinstance(ref, list):
                for a, b in zip(ours, ref):
                    torch.testing.assert_close(a, b, rtol=0, atol=0)
            else:
                assert ours == ref
        for key, loss in losses[mode].items():
            torch.testing.assert_close(loss, losses['train_test'][key], rtol=0, atol=0)
    # the IoU branch is trained in 'train' as in 'train_test'
    torch.testing.assert_close(heads['train'].atss_centerness.weight.grad,
                               heads['train_test'].atss_centerness.weight.grad)


@pytest.mark.parametrize('mode', ['train_test', 'train', 'none'])
def test_batch_without_objects_keeps_every_parameter_in_the_loss(mode):
    head = build(iou_branch=mode)
    feats, _, metas = random_batch()
    empty = [InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long)) for _ in metas]
    losses = head.loss_by_feat(*head(feats), empty, metas)
    assert set(losses) == ({'loss_cls', 'loss_bbox'} if mode == 'none' else {'loss_cls', 'loss_bbox', 'loss_iou'})
    sum(losses.values()).backward()
    for name, param in head.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


def test_classification_loss_trains_both_branches_through_the_product():
    head = build(iou_branch='none')
    feats, gts, metas = random_batch()
    head.loss_by_feat(*head(feats), gts, metas)['loss_cls'].backward()
    # the regression tower gets gradients from every anchor's classification loss, through the objectness
    for module in (head.cop_obj, head.atss_cls, head.reg_convs[0].conv, head.cls_convs[0].conv):
        assert module.weight.grad.abs().sum() > 0
    assert head.atss_reg.weight.grad is None


def synthetic_outputs(seed=0):
    """Head outputs with many scores above the threshold: [N, C, H, W] logits, deltas, IoU logits per level."""
    g = torch.Generator().manual_seed(seed)
    h, w = SIZE
    cls_scores = [torch.randn(1, NUM_CLASSES, h // s, w // s, generator=g) * 2 - 1 for s in STRIDES]
    bbox_preds = [torch.randn(1, 4, h // s, w // s, generator=g) * 0.5 for s in STRIDES]
    iou_preds = [torch.randn(1, 1, h // s, w // s, generator=g) for s in STRIDES]
    return cls_scores, bbox_preds, iou_preds


def stock_paa():
    cfg = copy.deepcopy(HEAD)
    cfg.update(type=PAAHead)
    cfg['test_cfg'] = ConfigDict(cfg['test_cfg'])
    cfg.pop('train_cfg')
    return MODELS.build(cfg)


def assert_same_detections(ours, ref):
    assert len(ref.scores) > 5
    torch.testing.assert_close(ours.scores, ref.scores, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.bboxes, ref.bboxes, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(ours.labels, ref.labels)


def test_inference_with_the_iou_branch_is_paas():
    cls_scores, bbox_preds, iou_preds = synthetic_outputs()
    metas = [dict(img_shape=SIZE, scale_factor=(1., 1.))]
    ours = build(iou_branch='train_test').predict_by_feat(cls_scores, bbox_preds, iou_preds, metas)[0]
    ref = stock_paa().predict_by_feat(cls_scores, bbox_preds, iou_preds, metas)[0]
    assert_same_detections(ours, ref)


@pytest.mark.parametrize('mode', ['train', 'none'])
def test_inference_without_the_iou_branch_scores_p_alone(mode):
    cls_scores, bbox_preds, iou_preds = synthetic_outputs()
    metas = [dict(img_shape=SIZE, scale_factor=(2., 2.))]
    head = build(iou_branch=mode)
    ours = head.predict_by_feat(
        cls_scores,
        bbox_preds,
        iou_preds if mode == 'train' else [iou[:, :0] for iou in iou_preds],
        metas,
        rescale=True)[0]
    # reference: mmdet's PAA post-processing (top-k, NMS, score voting on sqrt(score x IoU)) given scores p^2 and
    # IoU 1, so that its NMS scores are p
    p = [torch.sigmoid(score.double()) for score in cls_scores]
    squared = [torch.logit(prob**2).float() for prob in p]
    certain = [torch.full_like(iou, 100.) for iou in iou_preds]
    ref = stock_paa().predict_by_feat(squared, bbox_preds, certain, metas, rescale=True)[0]
    assert_same_detections(ours, ref)
    if mode == 'train':
        other = head.predict_by_feat(cls_scores, bbox_preds, [-iou for iou in iou_preds], metas, rescale=True)[0]
        assert_same_detections(other, ours)


@pytest.mark.parametrize('mode', ['train_test', 'train', 'none'])
def test_predict_from_features(mode):
    head = build(iou_branch=mode).eval()
    head.test_cfg.score_thr = 0.005  # below the initial scores (about 0.01)
    feats, _, metas = random_batch()
    samples = [DetDataSample(metainfo=dict(meta, ori_shape=SIZE)) for meta in metas]
    with torch.no_grad():
        results = head.predict(feats, samples, rescale=True)
        cls_scores, bbox_preds, iou_preds = head(feats)
    assert len(results) == 2
    # the best detection's score: sqrt(p x IoU) with the IoU branch at inference, p otherwise
    p = torch.cat([torch.sigmoid(score[0]).flatten(1) for score in cls_scores], 1)
    if mode == 'train_test':
        iou = torch.cat([torch.sigmoid(iou[0]).flatten(1) for iou in iou_preds], 1)
        best = (p * iou).sqrt().max()
    else:
        best = p.max()
    assert best > head.test_cfg.score_thr
    torch.testing.assert_close(results[0].scores.max(), best)


COCO_CONFIGS = {
    'cop_paa-r50_fpn_1x_coco.py': (50, 'train_test'),
    'cop-iou-train_paa-r50_fpn_1x_coco.py': (50, 'train'),
    'cop-no-iou_paa-r50_fpn_1x_coco.py': (50, 'none'),
    'cop_paa-r18_fpn_1x_coco.py': (18, 'train_test'),
    'cop-iou-train_paa-r18_fpn_1x_coco.py': (18, 'train'),
    'cop-no-iou_paa-r18_fpn_1x_coco.py': (18, 'none'),
}


def test_table10_coco_configs_build():
    assert sorted(osp.basename(f) for f in glob.glob(osp.join(CONFIGS, 'colad', 'cop*.py'))) == sorted(COCO_CONFIGS)
    for name, (depth, mode) in COCO_CONFIGS.items():
        cfg = Config.fromfile(osp.join(CONFIGS, 'colad', name))
        assert cfg.train_cfg.max_epochs == 12 and cfg.optim_wrapper.optimizer.lr == 0.01
        model = MODELS.build(cfg.model)
        assert isinstance(model.bbox_head, COPHead) and model.bbox_head.iou_branch == mode, name
        assert model.backbone.depth == depth and model.bbox_head.num_classes == 80
        assert hasattr(model.bbox_head, 'atss_centerness') == (mode != 'none')


def test_toy_cop_detector_trains_from_config(toy_root, tmp_path):
    work = tmp_path / 'work'
    options = [
        'train_cfg.max_epochs=2', 'train_cfg.val_interval=2', 'train_dataloader.batch_size=4',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False', f'train_dataloader.dataset.data_root={toy_root}/',
        f'val_dataloader.dataset.data_root={toy_root}/', f'val_evaluator.ann_file={toy_root}/annotations/'
        'instances_val.json', 'default_hooks.logger.interval=1', 'randomness.seed=0'
    ]
    config = osp.join(CONFIGS, 'toy', 'paa-cop_tiny-w16_toy.py')
    _run([PYTHON, osp.join(TOOLS, 'train.py'), config, '--work-dir', str(work), '--cfg-options'] + options, tmp_path)
    records = [json.loads(line) for line in open(next(work.glob('*/vis_data/scalars.json')))]
    train = [r for r in records if 'loss' in r]
    assert [r['iter'] for r in train] == list(range(1, 9))
    assert all(math.isfinite(r[key]) for r in train for key in ('loss', 'loss_cls', 'loss_bbox', 'loss_iou'))
    assert train[-1]['loss_cls'] < train[0]['loss_cls']
    assert any('coco/bbox_mAP' in r for r in records)
