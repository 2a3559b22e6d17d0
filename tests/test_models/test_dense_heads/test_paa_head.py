"""mmkd's batched PAA / LAD heads against mmdet's PAAHead / LADHead on the same weights and inputs."""
import copy
import warnings

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

import mmkd  # noqa: F401  (registers the heads)

pytest.importorskip('sklearn.mixture')

STRIDES = (8, 16, 32, 64, 128)
HEAD = dict(
    type='PAAHead',
    reg_decoded_bbox=True,
    score_voting=True,
    topk=9,
    num_classes=80,
    in_channels=16,
    stacked_convs=1,
    feat_channels=16,
    norm_cfg=dict(type='GN', num_groups=8, requires_grad=True),
    anchor_generator=dict(
        type='AnchorGenerator', ratios=[1.0], octave_base_scale=8, scales_per_octave=1, strides=list(STRIDES)),
    bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0], target_stds=[0.1, 0.1, 0.2, 0.2]),
    loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
    loss_bbox=dict(type='GIoULoss', loss_weight=1.3),
    loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=0.5),
    train_cfg=dict(
        assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.1, neg_iou_thr=0.1, min_pos_iou=0, ignore_iof_thr=-1),
        allowed_border=-1,
        pos_weight=-1,
        debug=False),
    test_cfg=dict(
        nms_pre=100, min_bbox_size=0, score_thr=0.05, nms=dict(type='nms', iou_threshold=0.6), max_per_img=20))


def build(head_type, **overrides):
    cfg = copy.deepcopy(HEAD)
    cfg.update(type=head_type, **overrides)
    cfg['train_cfg'] = ConfigDict(cfg['train_cfg'])
    cfg['test_cfg'] = ConfigDict(cfg['test_cfg'])
    return MODELS.build(cfg)


def head_pair(ref_type, our_type, seed=0, num_classes=80, **overrides):
    torch.manual_seed(seed)
    ref = build(ref_type, num_classes=num_classes)
    overrides.setdefault('num_classes', num_classes)
    ours = build(our_type, **overrides)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def random_batch(seed, num_imgs=2, num_gts=(6, 6), size=(256, 320), channels=16, num_classes=80):
    g = torch.Generator().manual_seed(seed)
    h, w = size
    feats = [torch.randn(num_imgs, channels, h // s, w // s, generator=g) for s in STRIDES]
    metas = [dict(img_shape=size, pad_shape=size, batch_input_shape=size) for _ in range(num_imgs)]
    gts = []
    for n in num_gts:
        xy = torch.rand(n, 2, generator=g) * torch.tensor([w - 24.0, h - 24.0])
        wh = 12 + torch.rand(n, 2, generator=g) * 140
        boxes = torch.cat([xy, (xy + wh).minimum(torch.tensor([float(w), float(h)]))], 1)
        gts.append(InstanceData(bboxes=boxes, labels=torch.randint(0, num_classes, (n, ), generator=g)))
    return feats, gts, metas


def assign(head, outs, gts, metas, ignores=None):
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')  # sklearn's ConvergenceWarning
        return head.get_label_assignment(*outs, gts, metas, ignores)


def test_assignment_equals_mmdet_on_random_batches():
    # 10 classes: costs of about 1-2 (80 classes: about 11, where sklearn's float32 squares raise on most batches)
    ref, ours = head_pair('LADHead', 'BatchedLADHead', num_classes=10)
    total = agree = compared = 0
    for seed, num_gts in enumerate([(6, 6), (1, 12), (20, 3), (9, 0), (15, 15), (2, 30), (4, 4), (8, 2), (25, 25),
                                    (3, 7)]):
        feats, gts, metas = random_batch(seed, num_gts=num_gts, num_classes=10)
        outs = ref(feats)
        got = assign(ours, outs, gts, metas)
        try:
            expected = assign(ref, outs, gts, metas)
        except ValueError as e:  # sklearn's ill-defined covariance (see test_many_gt_boxes_where_sklearn_raises)
            assert 'ill-defined empirical covariance' in str(e)
            continue
        compared += 1
        assert got[6] == expected[6], f'batch {seed}: {got[6]} positives, mmdet {expected[6]}'
        torch.testing.assert_close(got[0], expected[0], rtol=0, atol=0)
        torch.testing.assert_close(got[1], expected[1], rtol=0, atol=0)
        torch.testing.assert_close(got[2], expected[2], rtol=0, atol=0)
        torch.testing.assert_close(got[4], expected[4], rtol=0, atol=0)
        torch.testing.assert_close(got[5], expected[5], rtol=0, atol=0)
        for ours_w, ref_w in zip(got[3], expected[3]):
            torch.testing.assert_close(ours_w, ref_w, rtol=0, atol=0)
        total += expected[6]
        agree += len(set(got[4].tolist()) & set(expected[4].tolist()))
    assert compared >= 8 and total > 300 and agree == total


def test_sklearn_backend_runs_mmdets_path():
    ref, ours = head_pair('LADHead', 'BatchedLADHead', gmm_backend='sklearn')
    feats, gts, metas = random_batch(3)
    outs = ref(feats)
    expected, got = assign(ref, outs, gts, metas), assign(ours, outs, gts, metas)
    torch.testing.assert_close(got[0], expected[0], rtol=0, atol=0)
    assert got[6] == expected[6]


@pytest.mark.parametrize('gmm_backend', ['torch', 'sklearn'])
def test_paa_losses_equal_mmdet(gmm_backend):
    ref, ours = head_pair('PAAHead', 'BatchedPAAHead', num_classes=10, gmm_backend=gmm_backend)
    feats, gts, metas = random_batch(4, num_gts=(5, 8), num_classes=10)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        expected = ref.loss_by_feat(*ref(feats), gts, metas)
        got = ours.loss_by_feat(*ours(feats), gts, metas)
    assert set(got) == set(expected) == {'loss_cls', 'loss_bbox', 'loss_iou'}
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-6, atol=0, msg=key)
    # the gradients reach the same parameters with the same values
    sum(expected.values()).backward()
    sum(got.values()).backward()
    for (name, p_ref), (_, p_ours) in zip(ref.named_parameters(), ours.named_parameters()):
        torch.testing.assert_close(p_ours.grad, p_ref.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_lad_losses_on_a_given_assignment_equal_mmdet():
    ref, ours = head_pair('LADHead', 'BatchedLADHead')
    feats, gts, metas = random_batch(5)
    teacher_outs = [[o.detach() * 1.5 for o in level] for level in ref(feats)]
    assignment = assign(ref, teacher_outs, gts, metas)
    expected = ref.loss_by_feat(*ref(feats), gts, metas, label_assignment_results=assignment)
    got = ours.loss_by_feat(*ours(feats), gts, metas, label_assignment_results=assignment)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-6, atol=0, msg=key)


def test_predictions_equal_mmdet():
    ref, ours = head_pair('PAAHead', 'BatchedPAAHead')
    ref.eval(), ours.eval()
    feats, _, metas = random_batch(6)
    metas = [dict(m, scale_factor=(1.0, 1.0), ori_shape=m['img_shape']) for m in metas]
    with torch.no_grad():
        expected = ref.predict_by_feat(*ref(feats), batch_img_metas=metas, rescale=False)
        got = ours.predict_by_feat(*ours(feats), batch_img_metas=metas, rescale=False)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g.bboxes, e.bboxes)
        torch.testing.assert_close(g.scores, e.scores)


def test_degenerate_batches_never_raise():
    ref, ours = head_pair('LADHead', 'BatchedLADHead')
    # no GT in any image
    feats, gts, metas = random_batch(7, num_gts=(0, 0))
    outs = ours(feats)
    result = assign(ours, outs, gts, metas)
    assert result[6] == 0 and result[5] is None and (result[0] == 80).all()
    losses = ours.loss_by_feat(*outs, gts, metas, label_assignment_results=result)
    assert all(torch.isfinite(v) for v in losses.values())
    # a 1-pixel GT box (its candidates are only the anchors of highest IoU) beside an image without GT
    feats, gts, metas = random_batch(8, num_gts=(1, 0))
    gts[0].bboxes = torch.tensor([[100.0, 100.0, 101.0, 101.0]])
    outs = ref(feats)
    expected, got = assign(ref, outs, gts, metas), assign(ours, outs, gts, metas)
    assert got[6] == expected[6]
    torch.testing.assert_close(got[0], expected[0], rtol=0, atol=0)


def test_ignored_regions_as_mmdet():
    """GT boxes inside an ignored region (assigner ignore_iof_thr): the same assignment as mmdet's, most anchors
    ignored (weight 0), and no error."""
    train_cfg = dict(
        assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.1, neg_iou_thr=0.1, min_pos_iou=0, ignore_iof_thr=0.5),
        allowed_border=-1,
        pos_weight=-1,
        debug=False)
    torch.manual_seed(0)
    ref = build('LADHead', num_classes=10, train_cfg=train_cfg)
    ours = build('BatchedLADHead', num_classes=10, train_cfg=train_cfg)
    ours.load_state_dict(ref.state_dict())
    feats, gts, metas = random_batch(9, num_gts=(4, 4), num_classes=10)
    ignores = [InstanceData(bboxes=torch.tensor([[0.0, 0.0, 320.0, 256.0]])) for _ in range(2)]
    outs = ref(feats)
    expected, got = assign(ref, outs, gts, metas, ignores), assign(ours, outs, gts, metas, ignores)
    assert got[6] == expected[6]
    torch.testing.assert_close(got[0], expected[0], rtol=0, atol=0)
    torch.testing.assert_close(got[1], expected[1], rtol=0, atol=0)
    assert (got[1] == 0).float().mean() > 0.8


def test_many_gt_boxes_where_sklearn_raises():
    """Freshly initialised predictions with 100 GT boxes per image: mmdet's sklearn fits raise (ill-defined
    covariance); the batched assignment gives positives to the GT boxes."""
    ref, ours = head_pair('LADHead', 'BatchedLADHead')
    feats, gts, metas = random_batch(10, num_imgs=1, num_gts=(100, ), size=(512, 640))
    outs = ref(feats)
    try:
        assign(ref, outs, gts, metas)
        sklearn_raised = False
    except ValueError as e:
        assert 'ill-defined empirical covariance' in str(e)
        sklearn_raised = True
    result = assign(ours, outs, gts, metas)
    assert result[6] > 100
    if not sklearn_raised:
        pytest.skip('sklearn fitted every GT box of this batch (no crash to compare with)')


def test_bad_arguments():
    with pytest.raises(ValueError, match="gmm_backend must be one of .*got 'cuda'"):
        build('BatchedPAAHead', gmm_backend='cuda')
    with pytest.raises(ValueError, match="covariance_type 'diag'"):
        build('BatchedPAAHead', covariance_type='full')
    build('BatchedPAAHead', covariance_type='full', gmm_backend='sklearn')


def test_gather_head_outputs_reads_the_flattened_rows():
    from mmkd.models.dense_heads import flatten_head_outputs
    from mmkd.models.dense_heads.paa_head import gather_head_outputs
    g = torch.Generator().manual_seed(0)
    outputs = [torch.randn(3, 3 * 5, h, w, generator=g) for h, w in ((8, 10), (4, 5), (2, 3))]  # 3 anchors x 5
    flat = flatten_head_outputs(outputs, 5)
    num_anchors = flat.shape[0] // 3
    image = torch.randint(0, 3, (50, ), generator=g)
    anchor = torch.randint(0, num_anchors, (50, ), generator=g)
    torch.testing.assert_close(
        gather_head_outputs(outputs, 5, image, anchor), flat[image * num_anchors + anchor], rtol=0, atol=0)


@pytest.mark.parametrize('label', [-1, 10])
def test_gt_label_outside_the_classes_is_named(label):
    """A GT label outside [0, num_classes) (mmdet fails later on mismatched tensor sizes) is refused with an error
    that names the image and its labels."""
    _, ours = head_pair('LADHead', 'BatchedLADHead', num_classes=10)
    feats, gts, metas = random_batch(11, num_gts=(3, 4), num_classes=10)
    gts[1].labels[2] = label
    with pytest.raises(ValueError, match=rf'batch_gt_instances\[1\]\.labels must be in \[0, 10\), got .*{label}'):
        assign(ours, ours(feats), gts, metas)
