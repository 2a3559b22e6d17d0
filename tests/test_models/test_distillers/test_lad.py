"""LADDistiller / SoLADDistiller against mmdet's LAD and against the formulas of the losses they add."""
import copy
import warnings

import pytest
import torch
from mmdet.models.dense_heads import PAAHead
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from mmkd.models.dense_heads import BatchedLADHead, flatten_head_outputs
from mmkd.models.distillers import LADDistiller, SoLADDistiller
from mmkd.models.losses import SoftLabelKLLoss
from mmkd.utils.build import build_in_scope

pytest.importorskip('sklearn.mixture')
NUM_CLASSES = 10


def paa(width, head_type='PAAHead'):
    return dict(
        type='PAA',
        data_preprocessor=dict(
            type='DetDataPreprocessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            bgr_to_rgb=True,
            pad_size_divisor=32),
        backbone=dict(
            type='ResNet',
            depth=18,
            base_channels=width,
            num_stages=4,
            out_indices=(1, 2, 3),
            norm_cfg=dict(type='BN', requires_grad=True),
            norm_eval=False,
            style='pytorch'),
        neck=dict(
            type='FPN',
            in_channels=[width * 2, width * 4, width * 8],
            out_channels=16,
            start_level=0,
            add_extra_convs='on_output',
            num_outs=5),
        bbox_head=dict(
            type=head_type,
            reg_decoded_bbox=True,
            score_voting=True,
            topk=9,
            num_classes=NUM_CLASSES,
            in_channels=16,
            stacked_convs=1,
            feat_channels=16,
            norm_cfg=dict(type='GN', num_groups=8, requires_grad=True),
            anchor_generator=dict(
                type='AnchorGenerator',
                ratios=[1.0],
                octave_base_scale=8,
                scales_per_octave=1,
                strides=[8, 16, 32, 64, 128]),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]),
            loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
            loss_bbox=dict(type='GIoULoss', loss_weight=1.3),
            loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=0.5)),
        train_cfg=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.1, neg_iou_thr=0.1, min_pos_iou=0, ignore_iof_thr=-1),
            allowed_border=-1,
            pos_weight=-1,
            debug=False),
        test_cfg=dict(
            nms_pre=100, min_bbox_size=0, score_thr=0.05, nms=dict(type='nms', iou_threshold=0.6), max_per_img=20))


def batch(seed=0, num_imgs=2, num_gts=(5, 7), size=(192, 256)):
    g = torch.Generator().manual_seed(seed)
    h, w = size
    inputs = torch.randn(num_imgs, 3, h, w, generator=g)
    samples = []
    for n in num_gts:
        xy = torch.rand(n, 2, generator=g) * torch.tensor([w - 24.0, h - 24.0])
        wh = 16 + torch.rand(n, 2, generator=g) * 100
        boxes = torch.cat([xy, (xy + wh).minimum(torch.tensor([float(w), float(h)]))], 1)
        sample = DetDataSample(metainfo=dict(img_shape=size, pad_shape=size, batch_input_shape=size))
        sample.gt_instances = InstanceData(bboxes=boxes, labels=torch.randint(0, NUM_CLASSES, (n, ), generator=g))
        samples.append(sample)
    return inputs, samples


@pytest.fixture(scope='module')
def mmdet_lad_and_ckpt(tmp_path_factory):
    """mmdet's LAD (student w8, teacher w16) and the teacher's weights saved as a PAA checkpoint."""
    torch.manual_seed(0)
    student, teacher = paa(8, 'LADHead'), paa(16, 'LADHead')
    lad = build_in_scope(
        dict(
            type='LAD',
            data_preprocessor=student['data_preprocessor'],
            backbone=student['backbone'],
            neck=student['neck'],
            bbox_head=student['bbox_head'],
            teacher_backbone=teacher['backbone'],
            teacher_neck=teacher['neck'],
            teacher_bbox_head=teacher['bbox_head'],
            train_cfg=student['train_cfg'],
            test_cfg=student['test_cfg']), MODELS)
    ckpt = tmp_path_factory.mktemp('lad') / 'paa_w16.pth'
    torch.save(dict(state_dict=lad.teacher_model.state_dict()), ckpt)
    return lad, str(ckpt)


def build_ours(lad, ckpt, cls=LADDistiller, **kwargs):
    model = cls(student=paa(8), teacher_cfg=paa(16), teacher_ckpt=ckpt, **kwargs)
    student_state = {k: v for k, v in lad.state_dict().items() if not k.startswith('teacher_model.')}
    model.student.load_state_dict(student_state, strict=True)
    return model


@pytest.mark.parametrize('gmm_backend', ['torch', 'sklearn'])
def test_losses_equal_mmdets_lad(mmdet_lad_and_ckpt, gmm_backend):
    lad, ckpt = mmdet_lad_and_ckpt
    ours = build_ours(lad, ckpt, gmm_backend=gmm_backend)
    lad.zero_grad(set_to_none=True)
    lad.train(), ours.train()
    inputs, samples = batch()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        expected = lad.loss(inputs, copy.deepcopy(samples))
        got = ours.loss(inputs, copy.deepcopy(samples))
    assert set(got) == set(expected) == {'loss_cls', 'loss_bbox', 'loss_iou'}
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-7, msg=key)
    sum(expected.values()).backward()
    sum(got.values()).backward()
    ref_grads = dict(lad.named_parameters())
    for name, param in ours.student.named_parameters():
        torch.testing.assert_close(param.grad, ref_grads[name].grad, rtol=1e-4, atol=1e-6, msg=name)


def test_teacher_runs_once_without_grad_and_is_not_saved(mmdet_lad_and_ckpt):
    lad, ckpt = mmdet_lad_and_ckpt
    ours = build_ours(lad, ckpt, cls=SoLADDistiller, box_distill_loss=dict(type='GIoULoss', loss_weight=1.0))
    calls = []
    ours.teacher.backbone.register_forward_hook(lambda *_: calls.append(torch.is_grad_enabled()))
    ours.train()
    losses = ours.loss(*batch(1))
    assert calls == [False]
    assert not ours.teacher.training
    assert all(not p.requires_grad for p in ours.teacher.parameters())
    assert not any(k.startswith('teacher') for k in ours.state_dict())
    assert {'loss_soft_cls', 'loss_distill_bbox'} <= set(losses)
    sum(losses.values()).backward()
    assert all(p.grad is None for p in ours.teacher.parameters())


def test_soft_label_and_box_distillation_formulas(mmdet_lad_and_ckpt):
    lad, ckpt = mmdet_lad_and_ckpt
    ours = build_ours(
        lad,
        ckpt,
        assign_by='student',
        soft_label_loss=dict(type='SoftLabelKLLoss', gamma=2.0, loss_weight=0.7),
        box_distill_loss=dict(type='L1Loss', loss_weight=1.0),
        distill_iou_thr=0.3)
    ours.train()
    inputs, samples = batch(2)
    torch.manual_seed(0)
    losses = ours.loss(inputs, copy.deepcopy(samples))

    # the references: the student's own PAA losses, Eq. (1) over the assignment's weighted anchors, and an L1
    # between decoded boxes on anchors whose teacher box has IoU > 0.3 with a GT box, computed here by hand
    with torch.no_grad():
        s_outs = ours.student.bbox_head(ours.student.extract_feat(inputs))
        t_outs = ours.teacher.bbox_head(ours.teacher.extract_feat(inputs))
        gts = [s.gt_instances for s in samples]
        metas = [s.metainfo for s in samples]
        own = PAAHead.loss_by_feat(ours.student.bbox_head, *s_outs, gts, metas)  # mmdet's PAA losses
        assignment = ours.student.bbox_head.get_label_assignment(*s_outs, gts, metas)
    for key in ('loss_cls', 'loss_bbox', 'loss_iou'):
        torch.testing.assert_close(losses[key], own[key], rtol=1e-5, atol=1e-7, msg=key)
    ps = flatten_head_outputs(s_outs[0], NUM_CLASSES).double().sigmoid()
    pt = flatten_head_outputs(t_outs[0], NUM_CLASSES).double().sigmoid()
    kl = pt * (pt / ps).log() + (1 - pt) * ((1 - pt) / (1 - ps)).log()
    w = ((pt - ps).square() + 1e-6)**(2.0 / 2)
    expected_soft = 0.7 * ((w * kl).sum(1) * assignment[1]).sum() / max(assignment[6], 2)
    torch.testing.assert_close(losses['loss_soft_cls'].double(), expected_soft, rtol=1e-4, atol=1e-8)

    anchors = torch.cat(
        ours.student.bbox_head.prior_generator.grid_priors([o.shape[-2:] for o in s_outs[1]], device='cpu'))
    total, count = 0.0, 0
    for i, gt in enumerate(gts):
        s_boxes = ours.student.bbox_head.bbox_coder.decode(anchors,
                                                           flatten_head_outputs([o[i:i + 1] for o in s_outs[1]], 4))
        t_boxes = ours.teacher.bbox_head.bbox_coder.decode(anchors,
                                                           flatten_head_outputs([o[i:i + 1] for o in t_outs[1]], 4))
        for a in range(len(anchors)):
            tb = t_boxes[a]
            lt = torch.maximum(tb[:2], gt.bboxes[:, :2])
            rb = torch.minimum(tb[2:], gt.bboxes[:, 2:])
            inter = (rb - lt).clamp(min=0).prod(1)
            union = (tb[2:] - tb[:2]).prod() + (gt.bboxes[:, 2:] - gt.bboxes[:, :2]).prod(1) - inter
            if (inter / union).max() > 0.3:
                total += (s_boxes[a] - tb).abs().sum().item()  # mmdet's L1Loss: summed coordinates / boxes
                count += 1
    assert count > 0
    torch.testing.assert_close(losses['loss_distill_bbox'].item(), total / count, rtol=1e-4, atol=1e-6)


def test_soft_label_gradient_reaches_the_student_only(mmdet_lad_and_ckpt):
    lad, ckpt = mmdet_lad_and_ckpt
    ours = build_ours(lad, ckpt, cls=SoLADDistiller)
    assert isinstance(ours.soft_label_loss, SoftLabelKLLoss) and ours.soft_label_loss.gamma == 0.5
    ours.train()
    loss = ours.loss(*batch(3))['loss_soft_cls']
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert ours.student.bbox_head.atss_cls.weight.grad.abs().sum() > 0
    assert ours.student.bbox_head.atss_reg.weight.grad is None


def test_configs_and_errors(mmdet_lad_and_ckpt, tmp_path):
    _, ckpt = mmdet_lad_and_ckpt
    # the exported student is a stock mmdet PAA
    prefix, student_cfg = LADDistiller.deployable(dict(type='LADDistiller', student=paa(8), teacher_cfg=paa(16)))
    assert prefix == 'student' and student_cfg['bbox_head']['type'] == 'PAAHead'
    model = LADDistiller(student=paa(8, 'BatchedPAAHead'), teacher_cfg=paa(16), teacher_ckpt=ckpt)
    assert type(model.student.bbox_head).__name__ == 'BatchedLADHead'
    assert type(model.teacher.bbox_head).__name__ == 'BatchedLADHead'
    retina = paa(8)
    retina['bbox_head']['type'] = 'RetinaHead'
    with pytest.raises(ValueError, match=r"student model.bbox_head.type must be one of .*'RetinaHead'"):
        LADDistiller(student=retina, teacher_cfg=paa(16), teacher_ckpt=ckpt)
    other = paa(16)
    other['bbox_head']['num_classes'] = 3
    with pytest.raises(ValueError, match='num_classes differ: student 10, teacher 3'):
        LADDistiller(student=paa(8), teacher_cfg=other)
    with pytest.raises(ValueError, match="assign_by must be one of .*'self'"):
        LADDistiller(student=paa(8), teacher_cfg=paa(16), assign_by='self')
    with pytest.raises(ValueError, match="assign_by='student' and neither soft_label_loss"):
        LADDistiller(student=paa(8), teacher_cfg=paa(16), assign_by='student')
    with pytest.raises(ValueError, match='use LADDistiller'):
        SoLADDistiller(student=paa(8), teacher_cfg=paa(16), soft_label_loss=None)
    mixed = paa(8)
    mixed['bbox_head']['gmm_backend'] = 'sklearn'
    with pytest.raises(ValueError, match="gmm_backend='sklearn' contradicts"):
        LADDistiller(student=mixed, teacher_cfg=paa(16))
    # a checkpoint of another architecture is refused by the strict key check
    wrong = tmp_path / 'w8.pth'
    torch.save(dict(state_dict=build_in_scope(paa(8), MODELS).state_dict()), wrong)
    with pytest.raises(Exception, match='(?i)teacher checkpoint'):
        LADDistiller(student=paa(8), teacher_cfg=paa(16), teacher_ckpt=str(wrong))


def test_bfloat16_autocast(mmdet_lad_and_ckpt):
    """Under CPU bfloat16 autocast (tools/train.py --amp on a CPU) the costs are bfloat16; the assignment still
    runs (in float64) and every loss is finite and float32 or bfloat16."""
    lad, ckpt = mmdet_lad_and_ckpt
    ours = build_ours(lad, ckpt, cls=SoLADDistiller, box_distill_loss=dict(type='GIoULoss', loss_weight=1.0))
    ours.train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = ours.loss(*batch(4))
    assert set(losses) == {'loss_cls', 'loss_bbox', 'loss_iou', 'loss_soft_cls', 'loss_distill_bbox'}
    for key, value in losses.items():
        assert torch.isfinite(value), key
    assert losses['loss_soft_cls'].dtype == torch.float32
    sum(losses.values()).backward()


def test_teacher_with_other_anchor_sizes_is_refused():
    """Same strides and anchors per location but anchors of half the size: the teacher's assignment would hand its
    anchors (``pos_anchors``) to the student's box loss, training the student's deltas for the wrong anchors."""
    smaller = paa(16)
    smaller['bbox_head']['anchor_generator']['octave_base_scale'] = 4
    message = r'different base anchors at level 0: student \[\[-32.0, -32.0, 32.0, 32.0\]\], teacher \[\[-16.0, '
    with pytest.raises(ValueError, match=message):
        LADDistiller(student=paa(8), teacher_cfg=smaller)
    # another box coder is fine: each network decodes its own deltas
    other_coder = paa(16)
    other_coder['bbox_head']['bbox_coder']['target_stds'] = [1.0] * 4
    LADDistiller(student=paa(8), teacher_cfg=other_coder)


def test_head_type_given_as_a_class():
    """mmengine's pure-Python configs give ``type`` as the class itself: a PAA head class is accepted like its
    registry name, and another class is refused with the same message."""
    from mmdet.models.dense_heads import LADHead, PAAHead, RetinaHead
    student, teacher = paa(8), paa(16)
    student['bbox_head']['type'], teacher['bbox_head']['type'] = PAAHead, LADHead
    model = LADDistiller(student=student, teacher_cfg=teacher)
    assert isinstance(model.student_head, BatchedLADHead) and isinstance(model.teacher_head, BatchedLADHead)
    student['bbox_head']['type'] = RetinaHead
    with pytest.raises(ValueError, match=r'student model.bbox_head.type must be one of .*RetinaHead'):
        LADDistiller(student=student, teacher_cfg=teacher)


def test_export_of_a_batched_head_student_is_stock_paa(tmp_path):
    """A student configured with mmkd's BatchedPAAHead (the drop-in) exports as mmdet's PAAHead: the exported
    config names no mmkd type, and stock mmdet builds it and predicts what the distiller's student predicts."""
    from mmengine.config import Config

    from mmkd.utils.export import export_student
    model_cfg = dict(type='LADDistiller', student=paa(8, 'BatchedPAAHead'), teacher_cfg=paa(16))
    torch.manual_seed(0)
    model = LADDistiller(**{k: v for k, v in model_cfg.items() if k != 'type'}).eval()
    Config(dict(model=model_cfg, default_scope='mmdet')).dump(str(tmp_path / 'lad.py'))
    torch.save(dict(state_dict=model.state_dict(), meta={}), tmp_path / 'epoch_1.pth')
    exported = export_student(str(tmp_path / 'epoch_1.pth'), str(tmp_path / 'out'), config=str(tmp_path / 'lad.py'))
    assert exported.mmkd_types == []
    student_cfg = Config.fromfile(exported.config).model
    assert student_cfg.bbox_head.type == 'PAAHead' and 'gmm_backend' not in student_cfg.bbox_head
    stock = build_in_scope(student_cfg, MODELS).eval()
    assert type(stock.bbox_head).__module__.startswith('mmdet.')
    stock.load_state_dict(torch.load(exported.checkpoint, map_location='cpu')['state_dict'], strict=True)
    inputs, samples = batch(6, num_imgs=1, num_gts=(1, ))
    samples[0].set_metainfo(dict(scale_factor=(1.0, 1.0), ori_shape=(192, 256)))
    with torch.no_grad():
        expected = model.predict(inputs, copy.deepcopy(samples))[0].pred_instances
        got = stock.predict(inputs, copy.deepcopy(samples))[0].pred_instances
    assert len(got) > 0
    torch.testing.assert_close(got.bboxes, expected.bboxes, rtol=0, atol=0)
    torch.testing.assert_close(got.scores, expected.scores, rtol=0, atol=0)


def test_teacher_from_an_earlier_lad_run(tmp_path):
    """The config and checkpoint of an earlier LAD run as teacher: the teacher is that run's student (the network
    the run deploys), with the ``student.`` weights of its checkpoint."""
    from mmengine.config import Config
    earlier_cfg = dict(type='LADDistiller', student=paa(16), teacher_cfg=paa(16))
    torch.manual_seed(1)
    earlier = LADDistiller(**{k: v for k, v in earlier_cfg.items() if k != 'type'})
    ckpt = tmp_path / 'epoch_1.pth'
    meta = dict(cfg=Config(dict(model=earlier_cfg, default_scope='mmdet')).pretty_text)
    torch.save(dict(state_dict=earlier.state_dict(), meta=meta), ckpt)
    config = tmp_path / 'lad_run.py'
    Config(dict(model=earlier_cfg, default_scope='mmdet')).dump(str(config))
    for teacher_cfg in (str(config), earlier_cfg):
        model = LADDistiller(student=paa(8), teacher_cfg=teacher_cfg, teacher_ckpt=str(ckpt))
        expected = earlier.student.state_dict()
        got = model.teacher.state_dict()
        assert set(got) == set(expected)
        for key, value in expected.items():
            torch.testing.assert_close(got[key], value, rtol=0, atol=0, msg=key)


@pytest.mark.parametrize('layer,value,what', [('atss_cls', float('nan'), 'classification scores'),
                                              ('atss_reg', float('inf'), 'box deltas')])
def test_non_finite_teacher_is_refused(layer, value, what):
    """A diverged teacher (NaN / inf outputs) used to give every GT box no positive while the student's losses
    stayed finite (loss_bbox 0: the student silently learnt background); mmdet's sklearn fit raises on it."""
    torch.manual_seed(0)
    model = SoLADDistiller(student=paa(8), teacher_cfg=paa(16))
    model.train()
    with torch.no_grad():
        getattr(model.teacher.bbox_head, layer).weight.fill_(value)
    with pytest.raises(FloatingPointError, match=f"teacher's {what} are not finite"):
        model.loss(*batch(0))


def test_the_students_topk_rules_the_assignment(mmdet_lad_and_ckpt):
    _, ckpt = mmdet_lad_and_ckpt
    student = paa(8)
    student['bbox_head']['topk'] = 4
    model = LADDistiller(student=student, teacher_cfg=paa(16), teacher_ckpt=ckpt)
    assert model.teacher.bbox_head.topk == 4
