"""PAA label assignment for LAD: mmkd's batched assignment vs mmdet 3.3's ``LADHead``, and one LAD training iteration.

Both sides run in the same process, on the same inputs, taking turns (round-robin, the starting one rotating).

**Assignment.** One batch of ``--num-images`` images (8) of ``--size`` (800x1344, i.e. an 800x1333 image padded to
mmdet's multiple of 32) with ``--num-gts`` (20) GT boxes each: square roots of the areas log-uniform in 16-512 px
(at most 3/4 of the shorter image side), aspect ratios log-uniform in 1/2-2, centres uniform, clipped to the image;
labels uniform over the 80 classes. The head is mmdet's PAA head of ``configs/paa/paa_r50_fpn_1x_coco.py`` (80
classes, 256 input and feature channels, 4 stacked convolutions with GroupNorm(32), one anchor per location,
strides 8-128, topk 9, MaxIoU pre-assignment at 0.1) initialised by its own ``init_weights``; mmdet's ``LADHead``
and mmkd's ``BatchedLADHead`` hold the same weights. Their input is random FPN features N(0, 1) of the shapes that
ResNet-50 + FPN gives for the input (5 levels, 256 channels; 100x168 ... 7x11 for 800x1344), so the head outputs
are those of a real head at initialisation. Cost distributions (``--costs``, the first two by default):

* ``fresh``: the outputs of the freshly initialised head as they are: every classification logit near the prior
  logit log(0.01 / 0.99), box deltas near 0 (boxes = anchors), so the candidates' costs differ mostly through the
  GIoU of their anchor with the GT.
* ``trained-like``: the same outputs made to look like those of a trained detector. Every classification logit
  gets N(0, 1) noise and is lowered by 2 (background scores mostly below 0.01). On every anchor that overlaps a
  GT box (IoU > 0 with its highest-IoU GT box, the box the MaxIoU pre-assignment would give it), the logit of
  that GT's class is set to ``-4.6 + 10 * IoU + N(0, 1)`` (score ~0.03 at IoU 0.1, ~0.6 at 0.5, ~0.97 at 0.8)
  and the box deltas to the head's own encoding of that GT box w.r.t. the anchor plus N(0, 0.5^2) noise (in the
  coder's normalised units: 5 % of the anchor size in position, 10 % in log-size). The IoU predictions are left
  as they are (the assignment does not read them).
* ``uninitialised`` (only with ``--costs``): a head built without ``init_weights``, with its layers' constructor
  defaults (PyTorch's uniform convolution weights, zero classification bias), as a head built outside a runner
  is. Every class score is near 0.5, so every candidate's classification cost is the focal loss of 80 such
  scores (~10) and all costs are nearly equal: the case where scikit-learn's float32 variance breaks down.

Measured per distribution: (a) the GMM step alone, on the costs already computed by mmdet's ``get_pos_loss``:
mmdet's ``multi_apply(head.paa_reassign, ...)`` over the images (one scikit-learn ``GaussianMixture`` per GT box)
against mmkd's ``BatchedPAAHead.reassign(...)`` with the same arguments; (b) the whole
``get_label_assignment`` of each head (pre-assignment, costs, GMM step, outputs), under ``no_grad`` as LAD runs
it. Before timing, mmdet's ``paa_reassign`` runs once per image, catching scikit-learn's "ill-defined empirical
covariance" ``ValueError``: such an image counts as a crash and is excluded from the agreement; mmkd's batched
call runs on the whole batch (a crash of it would be counted too). Agreement: over the images where mmdet does
not crash, |positive anchors equal| / |union of positive anchors| (summed over images), and the fraction of those
images whose labels, label weights and box weights are identical. Since one crashed image makes mmdet's batch
call raise, (a) and (b) are timed, for both sides, on the sub-batch of the images where mmdet does not crash (no
mmdet time when all crash); mmkd's time on the whole batch is reported beside it.

**Training iteration.** One LAD iteration (forward + backward + SGD step with momentum 0.9, weight decay 1e-4;
the teacher frozen and in eval mode) of mmdet's ``LAD`` detector against mmkd's ``LADDistiller``: student PAA
ResNet-18 + FPN, teacher PAA ResNet-50 + FPN, both with the head above, at a reduced input (``--train-size``
256x384, ``--train-images`` 2 images with ``--train-gts`` 20 GT boxes each, random normalised pixels), random
weights (backbones and necks: their default initialisation, heads: ``init_weights``). mmdet's teacher weights are
written to a temporary checkpoint (keys ``backbone.*``, ``neck.*``, ``bbox_head.*``) that is mmkd's
``teacher_ckpt``; the teacher config is given as a dict; mmkd's student loads mmdet's student weights. The losses
of the first iteration are compared before timing. If mmdet's scikit-learn fits raise on a batch, the batch is
drawn again with the next seed (counted and reported).

    python bench/bench_lad.py                        # CPU: assignment (8 x 20 GT, 800x1344) + training iteration
    python bench/bench_lad.py --device cuda --out lad_cuda.json
    python bench/bench_lad.py --num-gts 100 --no-train
    python bench/bench_lad.py --costs uninitialised --no-train   # where mmdet's scikit-learn fits raise
    python bench/bench_lad.py --quick                # smoke run: 2 images x 4 GT, 256x320, 1 timed round
"""
import argparse
import math
import os
import statistics
import tempfile
import warnings
from typing import Dict, List, Optional, Sequence

import torch
from bench_utils import check_device, device_name, random_gts, time_round_robin, write_results
from mmdet.models.utils import levels_to_images, multi_apply
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox_overlaps
from mmengine.config import ConfigDict
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

import mmkd  # noqa: F401  (registers mmkd's heads and distillers)
from mmkd.models.dense_heads import flatten_head_outputs
from mmkd.models.distillers import LADDistiller

STRIDES = (8, 16, 32, 64, 128)
NUM_CLASSES = 80
CHANNELS = 256
PRIOR_LOGIT = math.log(0.01 / 0.99)
CRASH_MESSAGE = 'ill-defined empirical covariance'
DISTRIBUTIONS = ('fresh', 'trained-like', 'uninitialised')

# mmdet's configs/paa/paa_r50_fpn_1x_coco.py
HEAD = dict(
    reg_decoded_bbox=True,
    score_voting=True,
    topk=9,
    num_classes=NUM_CLASSES,
    in_channels=CHANNELS,
    stacked_convs=4,
    feat_channels=CHANNELS,
    anchor_generator=dict(
        type='AnchorGenerator', ratios=[1.0], octave_base_scale=8, scales_per_octave=1, strides=list(STRIDES)),
    bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0], target_stds=[0.1, 0.1, 0.2, 0.2]),
    loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
    loss_bbox=dict(type='GIoULoss', loss_weight=1.3),
    loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=0.5))
TRAIN_CFG = dict(
    assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.1, neg_iou_thr=0.1, min_pos_iou=0, ignore_iof_thr=-1),
    allowed_border=-1,
    pos_weight=-1,
    debug=False)
TEST_CFG = dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=dict(type='nms', iou_threshold=0.6), max_per_img=100)
DATA_PREPROCESSOR = dict(
    type='DetDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_size_divisor=32)


def level_sizes(height: int, width: int) -> List[tuple]:
    """FPN output sizes of ResNet + FPN (P3-P7) for a padded input of ``height`` x ``width``."""
    sizes = [(math.ceil(height / 8), math.ceil(width / 8))]
    for _ in STRIDES[1:]:
        h, w = sizes[-1]
        sizes.append((math.ceil(h / 2), math.ceil(w / 2)))
    return sizes


def build_head(head_type: str, **overrides) -> torch.nn.Module:
    cfg = dict(HEAD, type=head_type, train_cfg=ConfigDict(TRAIN_CFG), test_cfg=ConfigDict(TEST_CFG), **overrides)
    return MODELS.build(cfg)


def _flatten(outputs: Sequence[torch.Tensor], channels: int) -> torch.Tensor:
    """Per-level [N, channels, H, W] as [N, sum H W, channels] (anchor order of ``get_anchors``)."""
    return flatten_head_outputs(outputs, channels).view(outputs[0].size(0), -1, channels)


def _unflatten(flat: torch.Tensor, like: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """Inverse of :func:`_flatten`."""
    out, start = [], 0
    for o in like:
        n, c, h, w = o.shape
        out.append(flat[:, start:start + h * w].reshape(n, h, w, c).permute(0, 3, 1, 2).contiguous())
        start += h * w
    return out


def make_trained_like(head, outs: tuple, gts: List[InstanceData], metas: List[dict], gen: torch.Generator) -> tuple:
    """The head outputs made to look trained (see the module docstring); same shapes and device."""
    cls_scores, bbox_preds, iou_preds = outs
    device = cls_scores[0].device
    anchor_list, _ = head.get_anchors([c.shape[-2:] for c in cls_scores], metas, device=device)
    # built on the CPU with the CPU generator: the same outputs whatever the device
    cls = _flatten(cls_scores, NUM_CLASSES).cpu()
    deltas = _flatten(bbox_preds, 4).cpu()
    cls = cls + torch.randn(cls.shape, generator=gen) - 2
    for i, gt in enumerate(gts):
        if len(gt) == 0:
            continue
        anchors, gt_boxes, gt_labels = torch.cat(anchor_list[i]).cpu(), gt.bboxes.cpu(), gt.labels.cpu()
        iou, gt_index = bbox_overlaps(anchors, gt_boxes).max(1)
        hit = torch.nonzero(iou > 0).squeeze(1)
        logit = PRIOR_LOGIT + 10 * iou[hit] + torch.randn(hit.numel(), generator=gen)
        cls[i, hit, gt_labels[gt_index[hit]]] = logit
        target = head.bbox_coder.encode(anchors[hit], gt_boxes[gt_index[hit]])
        deltas[i, hit] = target + 0.5 * torch.randn(target.shape, generator=gen)
    return (_unflatten(cls.to(device), cls_scores), _unflatten(deltas.to(device), bbox_preds), iou_preds)


def reassign_arguments(head, outs: tuple, gts: List[InstanceData], metas: List[dict]) -> List[list]:
    """The per-image arguments of ``paa_reassign`` as mmdet's ``get_label_assignment`` computes them:
    [pos_losses, labels, labels_weight, bboxes_weight, pos_inds, pos_gt_index, anchors], each a list over images."""
    cls_scores, bbox_preds, _ = outs
    anchor_list, valid_flags = head.get_anchors([c.shape[-2:] for c in cls_scores], metas, device=cls_scores[0].device)
    labels, labels_weight, bboxes_target, bboxes_weight, pos_inds, pos_gt_index = head.get_targets(
        anchor_list, valid_flags, gts, metas, None)
    scores = [s.reshape(-1, head.cls_out_channels) for s in levels_to_images(cls_scores)]
    deltas = [d.reshape(-1, 4) for d in levels_to_images(bbox_preds)]
    pos_losses, = multi_apply(head.get_pos_loss, anchor_list, scores, deltas, labels, labels_weight, bboxes_target,
                              bboxes_weight, pos_inds)
    return [list(pos_losses), labels, labels_weight, bboxes_weight, pos_inds, pos_gt_index, anchor_list]


def _is_crash(error: ValueError) -> bool:
    return CRASH_MESSAGE in str(error)


def _subset(items: Sequence, keep: Sequence[int]) -> list:
    return [items[i] for i in keep]


def _batch_subset(outs: tuple, keep: Sequence[int]) -> tuple:
    index = torch.tensor(keep, device=outs[0][0].device)
    return tuple([o.index_select(0, index) for o in level] for level in outs)


def bench_distribution(name: str, ref, ours, outs: tuple, gts: List[InstanceData], metas: List[dict], device: str,
                       warmup: int, repeat: int) -> dict:
    """Crashes, agreement and timings of one cost distribution (see the module docstring)."""
    num_imgs = len(gts)
    args = reassign_arguments(ref, outs, gts, metas)
    mmdet_out, crashed = {}, []
    for i in range(num_imgs):
        try:
            mmdet_out[i] = ref.paa_reassign(*[a[i] for a in args])
        except ValueError as e:
            if not _is_crash(e):
                raise
            crashed.append(i)
    ok = [i for i in range(num_imgs) if i not in crashed]
    mmkd_crashes = 0
    try:
        mmkd_out = ours.reassign(*args)
    except ValueError as e:
        if not _is_crash(e):
            raise
        mmkd_crashes, mmkd_out = 1, None

    union = equal = identical = 0
    num_candidates = sum(int(inds.numel()) for inds in args[4])
    num_pos_mmdet = num_pos_mmkd = 0
    for i in ok:
        label_ref, weight_ref, box_weight_ref, _ = mmdet_out[i]
        pos_ref = set(torch.nonzero(label_ref < NUM_CLASSES).squeeze(1).tolist())
        num_pos_mmdet += len(pos_ref)
        if mmkd_out is None:
            union += len(pos_ref)
            continue
        label, weight, box_weight = mmkd_out[0][i], mmkd_out[1][i], mmkd_out[2][i]
        pos = set(torch.nonzero(label < NUM_CLASSES).squeeze(1).tolist())
        num_pos_mmkd += len(pos)
        union += len(pos_ref | pos)
        equal += len(pos_ref & pos)
        identical += int(
            torch.equal(label, label_ref) and torch.equal(weight, weight_ref)
            and torch.equal(box_weight, box_weight_ref))

    sub_args = [_subset(a, ok) for a in args]
    sub_outs, sub_gts, sub_metas = _batch_subset(outs, ok) if ok else None, _subset(gts, ok), _subset(metas, ok)

    def assign(head, outputs, batch_gts, batch_metas):
        with torch.no_grad():
            return head.get_label_assignment(*outputs, batch_gts, batch_metas)

    # a crashed batched call is counted above, not timed
    fns = {} if mmkd_crashes else {'mmkd GMM step, whole batch': lambda: ours.reassign(*args)}
    if ok:
        fns['mmdet GMM step'] = lambda: multi_apply(ref.paa_reassign, *sub_args)
        fns['mmkd GMM step'] = lambda: ours.reassign(*sub_args)
    gmm_times = time_round_robin(fns, device, warmup, repeat)
    fns = {} if mmkd_crashes else {'mmkd assignment, whole batch': lambda: assign(ours, outs, gts, metas)}
    whole_identical = None
    if ok:
        fns['mmdet assignment'] = lambda: assign(ref, sub_outs, sub_gts, sub_metas)
        fns['mmkd assignment'] = lambda: assign(ours, sub_outs, sub_gts, sub_metas)
        expected, got = fns['mmdet assignment'](), fns['mmkd assignment']()
        whole_identical = (
            all(torch.equal(expected[k], got[k]) for k in (0, 1, 2, 4)) and expected[6] == got[6]
            and all(torch.equal(e, g) for e, g in zip(expected[3], got[3]))
            and (expected[5] is None) == (got[5] is None) and (expected[5] is None or torch.equal(expected[5], got[5])))
    assign_times = time_round_robin(fns, device, warmup, repeat)
    times = {**gmm_times, **assign_times}
    return {
        'distribution': name,
        'images': num_imgs,
        'candidates': num_candidates,
        'sklearn_crashes': len(crashed),
        'crashed_images': crashed,
        'mmkd_crashes': mmkd_crashes,
        'compared_images': len(ok),
        'positives_mmdet': num_pos_mmdet,
        'positives_mmkd': num_pos_mmkd,
        'agreement': equal / union if union else None,
        'identical_images': identical / len(ok) if ok else None,
        'whole_assignment_identical': whole_identical,
        'times_ms': times,
        'median_ms': {
            k: statistics.median(v)
            for k, v in times.items()
        },
    }


def head_pair(initialised: bool, device: str) -> tuple:
    """mmdet's ``LADHead`` and mmkd's ``BatchedLADHead`` with the same weights: those of ``init_weights`` (as a
    runner initialises a model), or the layers' constructor defaults (a head built without ``init_weights``)."""
    ref = build_head('LADHead')
    if initialised:
        ref.init_weights()
    ours = build_head('BatchedLADHead')
    ours.load_state_dict(ref.state_dict())
    return ref.to(device), ours.to(device)


def head_outputs(head, feats: List[torch.Tensor]) -> tuple:
    """The head's (cls_scores, bbox_preds, iou_preds) per level on FPN features, without gradient."""
    with torch.no_grad():
        # one image at a time: the 800x1344 head forward of a whole batch needs several GB on the CPU
        per_image = [head([f[i:i + 1] for f in feats]) for i in range(feats[0].size(0))]
    return tuple([torch.cat([p[k][lvl] for p in per_image]) for lvl in range(len(STRIDES))] for k in range(3))


def bench_assignment(args, device: str) -> List[dict]:
    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    h, w = args.size
    metas = [dict(img_shape=(h, w), pad_shape=(h, w), batch_input_shape=(h, w)) for _ in range(args.num_images)]
    gts = random_gts(args.num_images, args.num_gts, (h, w), NUM_CLASSES, gen)
    feats = [torch.randn(args.num_images, CHANNELS, *hw, generator=gen).to(device) for hw in level_sizes(h, w)]
    gts = [InstanceData(bboxes=g.bboxes.to(device), labels=g.labels.to(device)) for g in gts]
    results, heads, fresh = [], {}, None
    for name in args.costs:
        initialised = name != 'uninitialised'
        if initialised not in heads:
            heads[initialised] = head_pair(initialised, device)
        ref, ours = heads[initialised]
        if name == 'uninitialised':
            outs = head_outputs(ref, feats)
        else:
            fresh = head_outputs(ref, feats) if fresh is None else fresh
            outs = fresh if name == 'fresh' else make_trained_like(ref, fresh, gts, metas, gen)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # scikit-learn's ConvergenceWarning
            results.append(bench_distribution(name, ref, ours, outs, gts, metas, device, args.warmup, args.repeat))
        if args.profile:
            profile_gmm(ours, outs, gts, metas, ref)
    return results


def profile_gmm(ours, outs: tuple, gts: List[InstanceData], metas: List[dict], ref) -> None:
    """torch.profiler table of mmkd's batched GMM step on these outputs."""
    from torch.profiler import ProfilerActivity, profile
    args = reassign_arguments(ref, outs, gts, metas)
    ours.reassign(*args)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        ours.reassign(*args)
    print(prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=20))


# ---------------------------------------------------------------------------------------------- training iteration
def _backbone(depth: int) -> dict:
    return dict(
        type='ResNet',
        depth=depth,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        style='pytorch')


def _neck(depth: int) -> dict:
    widths = [64, 128, 256, 512] if depth < 50 else [256, 512, 1024, 2048]
    return dict(
        type='FPN', in_channels=widths, out_channels=CHANNELS, start_level=1, add_extra_convs='on_output', num_outs=5)


def _paa(depth: int) -> dict:
    return dict(
        type='PAA',
        data_preprocessor=DATA_PREPROCESSOR,
        backbone=_backbone(depth),
        neck=_neck(depth),
        bbox_head=dict(HEAD, type='PAAHead'),
        train_cfg=TRAIN_CFG,
        test_cfg=TEST_CFG)


def build_lad_pair(seed: int, tmpdir: str, device: str) -> tuple:
    """mmdet's ``LAD`` (ResNet-18 student, ResNet-50 teacher) and mmkd's ``LADDistiller`` with the same weights."""
    torch.manual_seed(seed)
    lad = MODELS.build(
        dict(
            type='LAD',
            data_preprocessor=DATA_PREPROCESSOR,
            backbone=_backbone(18),
            neck=_neck(18),
            bbox_head=dict(HEAD, type='LADHead'),
            teacher_backbone=_backbone(50),
            teacher_neck=_neck(50),
            teacher_bbox_head=dict(HEAD, type='LADHead'),
            train_cfg=TRAIN_CFG,
            test_cfg=TEST_CFG))
    lad.init_weights()
    for part in lad.teacher_model.children():  # a plain nn.Module: LAD's init_weights does not reach it
        part.init_weights()
    ckpt = os.path.join(tmpdir, 'teacher.pth')
    torch.save({'state_dict': lad.teacher_model.state_dict()}, ckpt)
    distiller = LADDistiller(student=_paa(18), teacher_cfg=_paa(50), teacher_ckpt=ckpt)
    distiller.student.load_state_dict(lad.state_dict())
    lad.to(device), distiller.to(device)
    lad.train(), distiller.train()
    return lad, distiller


def random_detection_batch(num_imgs: int, num_gts: int, size: Sequence[int], seed: int, device: str) -> tuple:
    """Normalised random images [N, 3, H, W] and their data samples with GT boxes."""
    gen = torch.Generator().manual_seed(seed)
    h, w = size
    inputs = torch.randn(num_imgs, 3, h, w, generator=gen).to(device)
    samples = []
    for gt in random_gts(num_imgs, num_gts, size, NUM_CLASSES, gen):
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), pad_shape=(h, w), batch_input_shape=(h, w)))
        sample.gt_instances = InstanceData(bboxes=gt.bboxes.to(device), labels=gt.labels.to(device))
        samples.append(sample)
    return inputs, samples


def _sgd(params) -> torch.optim.Optimizer:
    return torch.optim.SGD([p for p in params if p.requires_grad], lr=0.01, momentum=0.9, weight_decay=1e-4)


def bench_training(args, device: str) -> dict:
    with tempfile.TemporaryDirectory() as tmpdir, warnings.catch_warnings():
        warnings.simplefilter('ignore')
        lad, distiller = build_lad_pair(args.seed, tmpdir, device)
    optims = {'mmdet': _sgd(lad.parameters()), 'mmkd': _sgd(distiller.parameters())}
    models = {'mmdet': lad, 'mmkd': distiller}
    crashed_seeds = []
    for seed in range(args.seed, args.seed + args.max_seeds):
        inputs, samples = random_detection_batch(args.train_images, args.train_gts, args.train_size, seed, device)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter('ignore')
                expected = lad.loss(inputs, samples)
        except ValueError as e:
            if not _is_crash(e):
                raise
            crashed_seeds.append(seed)
            continue
        break
    else:
        return {'crashed_seeds': crashed_seeds, 'times_ms': None}
    with torch.no_grad():
        got = distiller.loss(inputs, samples)
    loss_diff = {k: abs(float(got[k]) - float(expected[k])) / max(abs(float(expected[k])), 1e-12) for k in expected}

    def step(name):
        model, optim = models[name], optims[name]
        loss, _ = model.parse_losses(model.loss(inputs, samples))
        optim.zero_grad()
        loss.backward()
        optim.step()

    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        times = time_round_robin({name: (lambda n=name: step(n)) for name in models}, device, args.warmup, args.repeat)
    return {
        'seed': seed,
        'crashed_seeds': crashed_seeds,
        'relative_loss_difference': loss_diff,
        'times_ms': times,
        'median_ms': {
            k: statistics.median(v)
            for k, v in times.items()
        },
    }


# ---------------------------------------------------------------------------------------------- report
def _ms(times: Dict[str, float], key: str) -> str:
    return f'{times[key]:.1f}' if key in times else 'n/a'


def _ratio(times: Dict[str, float], slow: str, fast: str) -> Optional[float]:
    return times[slow] / times[fast] if slow in times and fast in times else None


def _fmt_ratio(ratio: Optional[float]) -> str:
    return 'n/a' if ratio is None else f'{ratio:.1f}x'


def print_assignment(results: List[dict]) -> None:
    print('| costs | sklearn crashes | mmkd crashes | agreement | identical images | GMM step mmdet | mmkd | '
          'mmdet / mmkd | assignment mmdet | mmkd | mmdet / mmkd | mmkd whole batch: GMM step, assignment |')
    print('|---|---|---|---|---|---|---|---|---|---|---|---|')
    for r in results:
        med = r['median_ms']
        agreement = 'n/a' if r['agreement'] is None else f'{100 * r["agreement"]:.2f} %'
        identical = 'n/a' if r['identical_images'] is None else f'{100 * r["identical_images"]:.0f} %'
        print(f'| {r["distribution"]} | {r["sklearn_crashes"]}/{r["images"]} images | {r["mmkd_crashes"]} | '
              f'{agreement} | {identical} | {_ms(med, "mmdet GMM step")} ms | {_ms(med, "mmkd GMM step")} ms | '
              f'{_fmt_ratio(_ratio(med, "mmdet GMM step", "mmkd GMM step"))} | {_ms(med, "mmdet assignment")} ms | '
              f'{_ms(med, "mmkd assignment")} ms | '
              f'{_fmt_ratio(_ratio(med, "mmdet assignment", "mmkd assignment"))} | '
              f'{_ms(med, "mmkd GMM step, whole batch")} ms, {_ms(med, "mmkd assignment, whole batch")} ms |')
    for r in results:
        print(f'  {r["distribution"]}: {r["candidates"]} candidates; positives mmdet {r["positives_mmdet"]}, mmkd '
              f'{r["positives_mmkd"]} on the {r["compared_images"]} compared images; whole get_label_assignment '
              f'outputs identical on them: {r["whole_assignment_identical"]}; min-max ms: ' +
              ', '.join(f'{k} [{min(v):.1f}-{max(v):.1f}]' for k, v in r['times_ms'].items()))


def print_training(result: dict, args) -> None:
    h, w = args.train_size
    print(f'LAD training iteration ({args.train_images} images x {args.train_gts} GT, {h}x{w}; student PAA R-18, '
          f'teacher PAA R-50; forward + backward + SGD step); batches where mmdet crashed: '
          f'{len(result["crashed_seeds"])} (seeds {result["crashed_seeds"]})')
    if result['times_ms'] is None:
        print(f'  mmdet crashed on all {args.max_seeds} batches: no timing')
        return
    med = result['median_ms']
    print('  first-iteration losses, |mmkd - mmdet| / |mmdet|: ' +
          ', '.join(f'{k} {v:.1e}' for k, v in result['relative_loss_difference'].items()))
    print('| iteration | mmdet | mmkd | mmdet / mmkd |')
    print('|---|---|---|---|')
    print(f'| median [min-max] | {med["mmdet"]:.1f} ms [{min(result["times_ms"]["mmdet"]):.1f}-'
          f'{max(result["times_ms"]["mmdet"]):.1f}] | {med["mmkd"]:.1f} ms [{min(result["times_ms"]["mmkd"]):.1f}-'
          f'{max(result["times_ms"]["mmkd"]):.1f}] | {med["mmdet"] / med["mmkd"]:.2f}x |')


def summary(assignment: List[dict], training: Optional[dict]) -> str:
    parts = []
    for r in assignment:
        med = r['median_ms']
        agreement = 'n/a' if r['agreement'] is None else f'{100 * r["agreement"]:.2f} %'
        parts.append(f'{r["distribution"]}: GMM step {_fmt_ratio(_ratio(med, "mmdet GMM step", "mmkd GMM step"))}, '
                     f'assignment {_fmt_ratio(_ratio(med, "mmdet assignment", "mmkd assignment"))} faster, '
                     f'agreement {agreement}, sklearn crashes {r["sklearn_crashes"]}/{r["images"]}, '
                     f'mmkd crashes {r["mmkd_crashes"]}')
    if training is not None and training['times_ms'] is not None:
        med = training['median_ms']
        parts.append(f'training iteration {med["mmdet"] / med["mmkd"]:.2f}x')
    return 'result: ' + '; '.join(parts)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cpu', help='cpu or cuda')
    parser.add_argument('--num-images', type=int, default=8)
    parser.add_argument('--num-gts', type=int, default=20, help='GT boxes per image (the issue also names 100)')
    parser.add_argument('--size', type=int, nargs=2, default=[800, 1344], metavar=('H', 'W'))
    parser.add_argument('--train-images', type=int, default=2)
    parser.add_argument('--train-gts', type=int, default=20)
    parser.add_argument('--train-size', type=int, nargs=2, default=[256, 384], metavar=('H', 'W'))
    parser.add_argument('--max-seeds', type=int, default=10, help='batches to draw when mmdet crashes in training')
    parser.add_argument(
        '--costs',
        nargs='+',
        choices=DISTRIBUTIONS,
        default=list(DISTRIBUTIONS[:2]),
        help='cost distributions of the assignment benchmark (see the module docstring)')
    parser.add_argument('--no-train', action='store_true', help='skip the training iteration')
    parser.add_argument('--warmup', type=int, default=1, help='unrecorded rounds before timing')
    parser.add_argument('--repeat', type=int, default=5, help='recorded rounds')
    parser.add_argument('--threads', type=int, default=None, help='CPU threads (default: torch default)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--profile', action='store_true', help="print torch.profiler's table of mmkd's GMM step")
    parser.add_argument('--quick', action='store_true', help='smoke run: 2 images x 4 GT, 256x320, 1 timed round')
    parser.add_argument('--out', help='also write the results as JSON here')
    args = parser.parse_args()
    if args.quick:
        args.num_images, args.num_gts, args.size = 2, 4, [256, 320]
        args.train_images, args.train_gts, args.train_size = 1, 4, [128, 160]
        args.warmup, args.repeat = 0, 1
    check_device(parser, args.device)
    return args


def main():
    args = parse_args()
    init_default_scope('mmdet')  # mmdet's LAD builds its data preprocessor by a bare type name
    MMLogger.get_current_instance().setLevel('WARNING')  # init_weights' per-parameter report
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    name = device_name(device)
    h, w = args.size
    print(
        f'== {name}; torch {torch.__version__}; {args.warmup} warm-up round(s), {args.repeat} timed rounds, '
        'round-robin',
        flush=True)
    levels = ', '.join(f'{a}x{b}' for a, b in level_sizes(h, w))
    print(
        f'assignment: {args.num_images} images x {args.num_gts} GT, {h}x{w} ({levels}); PAA head {NUM_CLASSES} '
        f'classes, {CHANNELS} channels, 4 convs, GN',
        flush=True)
    load_before = os.getloadavg()[0]
    assignment = bench_assignment(args, device)
    print_assignment(assignment)
    training = None
    if not args.no_train:
        training = bench_training(args, device)
        print_training(training, args)
    load_after = os.getloadavg()[0]
    print(f'1-minute load average {load_before:.2f} before, {load_after:.2f} after')
    print(summary(assignment, training))
    if args.out:
        write_results(args.out, name, args, (load_before, load_after), dict(assignment=assignment, training=training))


if __name__ == '__main__':
    main()
