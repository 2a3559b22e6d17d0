"""The side-by-side pictures (mmkd.analysis.qualitative, tools/analysis/det_compare.py): the matching against
hand-made cases and against pycocotools' COCOeval, the colours found at the drawn box edges, the picture sizes, the
choice of images, the tool end to end from two random-weight toy RetinaNets, and its errors."""
import contextlib
import importlib.util
import io
import json
import os
import os.path as osp
import subprocess

import cv2
import numpy as np
import pytest
from mmengine.registry import init_default_scope

from mmkd.analysis.qualitative import (CORRECT_COLOUR, GAP, GT_COLOUR, IGNORED_COLOUR, WRONG_COLOUR, box_iou,
                                       choose_named, choose_random, compare_row, display_scale, line_widths,
                                       match_detections, rank_by_gain, title_height)
from mmkd.datasets import generate_toy_shapes
from ..conftest import PYTHON, ROOT, TOOLS, tool_env
from . import random_toy_retinanets

SCRIPT = osp.join(TOOLS, 'analysis', 'det_compare.py')
_spec = importlib.util.spec_from_file_location('det_compare', SCRIPT)
det_compare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(det_compare)

NAMES = {1: 'circle', 2: 'square', 3: 'triangle'}


def _det(cat, bbox, score, image_id=1):
    return dict(image_id=image_id, category_id=cat, bbox=list(map(float, bbox)), score=score)


def _gt(cat, bbox, crowd=0, image_id=1):
    return dict(image_id=image_id, category_id=cat, bbox=list(map(float, bbox)), iscrowd=crowd, area=bbox[2] * bbox[3])


# ---------------------------------------------------------------------------------------------- matching
def test_box_iou_equals_pycocotools():
    from pycocotools import mask as mask_utils
    rng = np.random.default_rng(0)
    boxes = np.concatenate([rng.uniform(0, 50, (7, 2)), rng.uniform(1, 40, (7, 2))], axis=1)
    others = np.concatenate([rng.uniform(0, 50, (5, 2)), rng.uniform(1, 40, (5, 2))], axis=1)
    crowd = np.array([0, 1, 0, 1, 0], bool)
    expected = mask_utils.iou(boxes.tolist(), others.tolist(), crowd.astype(np.uint8).tolist())
    np.testing.assert_allclose(box_iou(boxes, others, crowd), expected, rtol=1e-12)
    assert (expected > 0).sum() > 5  # the boxes overlap: the test compares real overlaps


def test_match_hand_made_cases():
    gts = [
        _gt(1, [10, 10, 20, 20]),  # 0: found by the best circle
        _gt(2, [50, 10, 20, 20]),  # 1: a square, only found below the score threshold
        _gt(1, [100, 10, 20, 20]),  # 2: a circle found with a poor box
        _gt(1, [0, 100, 60, 60], crowd=1),  # 3: a crowd of circles
        _gt(3, [150, 150, 20, 20]),  # 4: a triangle nobody finds
    ]
    dets = [
        _det(1, [12, 10, 20, 20], 0.9),  # IoU 0.82 with 0 -> correct
        _det(1, [10, 10, 20, 20], 0.8),  # IoU 1.0 with 0, taken by the better score -> duplicate
        _det(1, [50, 10, 20, 20], 0.7),  # on the square -> wrong class
        _det(1, [110, 15, 20, 20], 0.6),  # IoU 0.23 with 2 -> poor localisation
        _det(1, [200, 200, 10, 10], 0.5),  # nothing there -> background
        _det(1, [10, 110, 20, 20], 0.45),  # inside the crowd of circles -> ignored
        _det(2, [50, 10, 20, 20], 0.2),  # the square, below the threshold -> not shown
        _det(3, [150, 150, 20, 20], 0.29999),  # the triangle, just below the threshold
    ]
    match = match_detections(dets[::-1], gts, score_thr=0.3, iou_thr=0.5)
    got = [(d.detection['score'], d.status, d.error, d.gt_index) for d in match.detections]
    assert got == [(0.9, 'correct', None, 0), (0.8, 'wrong', 'duplicate', 0), (0.7, 'wrong', 'class', 1),
                   (0.6, 'wrong', 'localisation', 2), (0.5, 'wrong', 'background', None), (0.45, 'ignored', None, 3)]
    assert match.matched_by == [0, None, None, None, None]
    assert match.counts() == {
        'correct': 1,
        'wrong': 4,
        'ignored': 1,
        'missed': 3,
        'duplicate': 1,
        'class': 1,
        'localisation': 1,
        'background': 1
    }
    # IoU exactly at the threshold counts, as in COCO (>=)
    edge = match_detections([_det(1, [0, 0, 10, 10], 0.9)], [_gt(1, [0, 0, 20, 10])], iou_thr=0.5)
    assert edge.detections[0].status == 'correct'
    # the crowd region only excuses its own class, and never makes a prediction correct
    other = match_detections([_det(2, [10, 110, 20, 20], 0.9)], gts, iou_thr=0.5)
    assert [(d.status, d.error) for d in other.detections] == [('wrong', 'background')]
    # without a threshold every prediction is shown, and the square and triangle are found
    everything = match_detections(dets, gts, score_thr=0.0)
    assert everything.count('correct') == 3 and everything.missed == 1


def test_match_ties_go_to_the_last_box_as_in_coco():
    """A prediction between two boxes (IoU 1/3 with each) takes the second, so the next one finds the first."""
    gts = [_gt(1, [0, 0, 10, 10]), _gt(1, [10, 0, 10, 10])]
    dets = [_det(1, [5, 0, 10, 10], 0.9), _det(1, [0, 0, 10, 10], 0.8)]
    match = match_detections(dets, gts, score_thr=0.0, iou_thr=0.3)
    assert [(d.status, d.gt_index) for d in match.detections] == [('correct', 1), ('correct', 0)]
    assert _coco_matches([1], gts, dets, 0.3) == {1: 'correct', 2: 'correct'}


def _coco_matches(images, gts, dets, iou_thr):
    """pycocotools' matching at one IoU threshold: detection id -> 'correct' / 'ignored' / 'wrong'."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    coco = COCO()
    coco.dataset = dict(
        images=[dict(id=i) for i in images],
        annotations=[dict(g, id=k + 1) for k, g in enumerate(gts)],
        categories=[dict(id=c, name=n) for c, n in NAMES.items()])
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        results = coco.loadRes([dict(d) for d in dets])  # ids 1..N in this order
        evaluator = COCOeval(coco, results, 'bbox')
        evaluator.params.iouThrs = np.array([iou_thr])
        evaluator.params.areaRng, evaluator.params.areaRngLbl = [[0, 1e10]], ['all']
        evaluator.params.maxDets = [1000]
        evaluator.evaluate()
    status = {}
    for entry in evaluator.evalImgs:
        if entry is None:
            continue
        for det_id, gt_id, ignored in zip(entry['dtIds'], entry['dtMatches'][0], entry['dtIgnore'][0]):
            status[det_id] = 'ignored' if ignored else 'correct' if gt_id > 0 else 'wrong'
    return status


@pytest.mark.parametrize('iou_thr', [0.5, 0.75])
def test_match_agrees_with_cocoeval(iou_thr):
    """Many random, crowded boxes of three classes on four images, crowd regions among them."""
    rng = np.random.default_rng(1)
    images, gts, dets = [1, 2, 3, 4], [], []
    for image_id in images:
        for _ in range(12):
            box = [*rng.uniform(0, 60, 2), *rng.uniform(5, 30, 2)]
            gts.append(_gt(int(rng.integers(1, 4)), box, crowd=int(rng.random() < 0.15), image_id=image_id))
            for _ in range(3):  # jittered copies, some of another class
                jitter = box + rng.normal(0, 3, 4) * [1, 1, 0.5, 0.5]
                cat = gts[-1]['category_id'] if rng.random() < 0.8 else int(rng.integers(1, 4))
                dets.append(_det(cat, np.abs(jitter), float(rng.uniform(0.3, 1)), image_id))
    status = _coco_matches(images, gts, dets, iou_thr)
    ours = {}
    for image_id in images:
        mine = [(k + 1, d) for k, d in enumerate(dets) if d['image_id'] == image_id]
        match = match_detections([d for _, d in mine], [g for g in gts if g['image_id'] == image_id], 0.0, iou_thr)
        ids = {id(d): k for k, d in mine}
        ours.update({ids[id(m.detection)]: m.status for m in match.detections})
    assert ours == status
    assert sorted(set(status.values())) == ['correct', 'ignored', 'wrong']


# ---------------------------------------------------------------------------------------------- drawing
def _colour_at(picture, x, y):
    return tuple(int(v) for v in picture[y, x])


def _has(picture, colour):
    return bool(np.all(picture == np.array(colour, np.uint8), axis=-1).any())


def test_picture_colours_at_box_edges_and_size():
    height, width = 80, 100
    image = np.full((height, width, 3), 90, np.uint8)
    gts = [_gt(1, [10, 20, 20, 20]), _gt(2, [60, 20, 20, 20]), _gt(3, [35, 55, 15, 15])]
    good = match_detections([_det(1, [10, 20, 20, 20], 0.9), _det(2, [40, 50, 12, 12], 0.8)], gts)
    bad = match_detections([_det(3, [10, 20, 20, 20], 0.9), _det(3, [85, 5, 10, 10], 0.1)], gts)
    scale = display_scale(height, width, 512)
    assert scale == pytest.approx(5.12)
    picture, boxes = compare_row(image, [good, bad], ['good', 'bad'], NAMES, scale, gt_title='ground truth')
    panel_h, panel_w = round(height * scale), round(width * scale)
    strip = title_height(panel_w)
    assert picture.shape == (strip + panel_h, 3 * panel_w + 2 * GAP, 3)
    assert [(b.left, b.top) for b in boxes] == [(0, strip), (panel_w + GAP, strip), (2 * (panel_w + GAP), strip)]
    pred_width, gt_width = line_widths(panel_w)
    assert (pred_width, gt_width) == (2, 1)

    def edge(panel, bbox, dx=0):
        """The colour on the left edge of ``bbox``, half way down, ``dx`` pixels to the right."""
        left, top, _ = boxes[panel]
        return _colour_at(picture, left + round(bbox[0] * scale) + dx, top + round((bbox[1] + bbox[3] / 2) * scale))

    # ground truth panel: every box white, one pixel wide, and no prediction colour anywhere
    gt_panel = picture[:, :panel_w]
    for g in gts:
        assert edge(0, g['bbox']) == GT_COLOUR and edge(0, g['bbox'], dx=gt_width) == (90, 90, 90)
    assert not any(_has(gt_panel, c) for c in (CORRECT_COLOUR, WRONG_COLOUR, IGNORED_COLOUR))
    # good: the correct circle yellow (two pixels, over the white ground truth), the stray square red, the other
    # ground truth white
    assert edge(1, [10, 20, 20, 20]) == CORRECT_COLOUR and edge(1, [10, 20, 20, 20], dx=1) == CORRECT_COLOUR
    assert edge(1, [10, 20, 20, 20], dx=2) == (90, 90, 90)
    assert edge(1, [40, 50, 12, 12]) == WRONG_COLOUR
    assert edge(1, [60, 20, 20, 20]) == GT_COLOUR and edge(1, [35, 55, 15, 15]) == GT_COLOUR
    # bad: a triangle on the circle is red; the 0.1 box is not drawn; no yellow at all
    assert edge(2, [10, 20, 20, 20]) == WRONG_COLOUR
    assert edge(2, [85, 5, 10, 10]) == (90, 90, 90)
    assert not _has(picture[:, 2 * (panel_w + GAP):], CORRECT_COLOUR)
    assert _has(picture[:, panel_w + GAP:2 * panel_w + GAP], CORRECT_COLOUR)


def test_large_images_keep_their_size_with_wider_lines():
    image = np.full((800, 1333, 3), 60, np.uint8)
    match = match_detections([_det(1, [100, 100, 300, 200], 0.9)], [_gt(1, [100, 100, 300, 200])])
    scale = display_scale(800, 1333, 512)
    picture, boxes = compare_row(image, [match], ['m'], NAMES, scale)
    assert scale == 1.0 and picture.shape == (title_height(1333) + 800, 1333, 3)
    assert line_widths(1333) == (3, 2)
    left, top, _ = boxes[0]
    row = picture[top + 200, left + 95:left + 110]
    assert [tuple(p) for p in row].count(CORRECT_COLOUR) == 3


# ---------------------------------------------------------------------------------------------- choosing images
IMAGES = [dict(id=i, file_name=f'val/{i:06d}.png') for i in (5, 1, 9, 3, 7)]


def test_choose_named_by_id_and_file_name():
    chosen = choose_named(IMAGES, ['9', '000001.png', 'val/000007.png', '1'])
    assert [img['id'] for img in chosen] == [9, 1, 7]
    with pytest.raises(ValueError, match=r"--images '42': no image .* 5 images, e\.g\. 5 \(val/000005\.png\)"):
        choose_named(IMAGES, ['42'])


def test_choose_random_is_reproducible():
    first = [img['id'] for img in choose_random(IMAGES, 3, seed=4)]
    assert first == [img['id'] for img in choose_random(list(reversed(IMAGES)), 3, seed=4)]
    assert len(set(first)) == 3 and first == sorted(first)
    draws = {tuple(img['id'] for img in choose_random(IMAGES, 2, seed=s)) for s in range(20)}
    assert len(draws) > 3  # the seed matters
    assert [img['id'] for img in choose_random(IMAGES, 9, seed=0)] == [1, 3, 5, 7, 9]


def test_rank_by_gain():
    gts = [_gt(1, [0, 0, 10, 10]), _gt(1, [20, 0, 10, 10])]
    hit, miss = _det(1, [0, 0, 10, 10], 0.9), _det(1, [50, 50, 10, 10], 0.9)
    hit2 = _det(1, [20, 0, 10, 10], 0.9)
    before = {1: [], 2: [hit], 3: [hit, hit2], 4: [miss]}
    after = {1: [hit, hit2], 2: [hit, miss], 3: [], 4: []}
    a = {i: match_detections(d, gts) for i, d in before.items()}
    b = {i: match_detections(d, gts) for i, d in after.items()}
    # gains: image 1 +2, 2 0 (one more wrong), 3 -2, 4 0 (one fewer wrong)
    assert rank_by_gain(a, b, 4) == [1, 4, 2, 3]
    assert rank_by_gain(a, b, 2, largest=False) == [3, 2]


# ---------------------------------------------------------------------------------------------- the tool
@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    """A toy tree of four 64x64 validation images and two random-weight toy RetinaNets (w16, w32) whose
    classifier bias is zeroed, so that they make confident (if wrong) predictions."""
    tmp = tmp_path_factory.mktemp('det_compare')
    root = str(tmp / 'toy_shapes')
    generate_toy_shapes(root, seed=3, num_train=1, num_val=4, image_size=64)
    init_default_scope('mmdet')

    def edit(cfg):
        cfg.test_dataloader.num_workers = 0
        cfg.test_dataloader.persistent_workers = False
        cfg.model.test_cfg.max_per_img = 8

    return dict(tmp=tmp, root=root, **random_toy_retinanets(str(tmp), root, edit, zero_cls_bias=True))


def _models(toy):
    return ['--model', 'baseline', *toy['w16'], '--model', 'teacher', *toy['w32']]


def _run(argv):
    stream = io.StringIO()
    return det_compare.main(argv, stream), stream.getvalue()


def _png(path):
    picture = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    assert picture is not None, f'{path} is no image'
    return picture


def test_tool_end_to_end(toy, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    out, work = str(tmp_path / 'out'), str(tmp_path / 'work')
    ann = osp.join(toy['root'], 'annotations', 'instances_val.json')
    # a third column between the two models: an oracle that finds every object (ground truth as results)
    oracle = [
        dict(image_id=a['image_id'], category_id=a['category_id'], bbox=a['bbox'], score=0.95)
        for a in json.load(open(ann))['annotations']
    ]
    json.dump(oracle, open(str(tmp_path / 'oracle.json'), 'w'))
    proc = subprocess.run([
        PYTHON, SCRIPT, '--model', 'baseline', *toy['w16'], '--results', 'oracle',
        str(tmp_path / 'oracle.json'), '--model', 'teacher', *toy['w32'], '--out-dir', out, '--random', '2', '--seed',
        '3', '--gt-panel', '--grid', '--work-dir', work
    ],
                          cwd=ROOT,
                          env=tool_env(),
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    progress = [line.split(':')[0] for line in lines if line.startswith('[')]
    assert progress == ['[1/3] baseline', '[2/3] oracle', '[3/3] teacher']
    record = json.load(open(osp.join(out, 'det_compare.json')))
    assert [c['name'] for c in record['columns']] == ['baseline', 'oracle', 'teacher']
    ids = [img['id'] for img in record['images']]
    expected = choose_random(json.load(open(ann))['images'], 2, 3)
    assert ids == [img['id'] for img in expected]
    strip = title_height(512)
    for img in record['images']:
        path = osp.join(out, osp.splitext(img['file_name'])[0] + '.png')
        assert f'Saved {path} (2072x{strip + 512} px)' in lines
        assert _png(path).shape == (strip + 512, 4 * 512 + 3 * GAP, 3)  # ground truth + 3 columns, 64 px * 8
        objects = sum(a['image_id'] == img['id'] for a in json.load(open(ann))['annotations'])
        assert img['counts']['oracle'] == dict(
            correct=objects, wrong=0, ignored=0, missed=0, duplicate=0, localisation=0, background=0, **{'class': 0})
    assert _png(osp.join(out, 'grid.png')).shape == (2 * (strip + 512) + GAP, 4 * 512 + 3 * GAP, 3)

    # the counts against pycocotools' matching of the detections the tool predicted (and cached)
    coco = det_compare.load_coco(ann)
    for name in ('baseline', 'teacher'):
        [cache] = [f for f in os.listdir(osp.join(work, 'detections', name)) if f.startswith('images-')]
        dets = json.load(open(osp.join(work, 'detections', name, cache)))['detections']
        assert {d['image_id'] for d in dets} == set(ids)
        shown = [d for d in dets if d['score'] >= 0.3]
        assert shown, 'the zeroed classifier bias makes confident predictions'
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator = COCOeval(coco, COCO.loadRes(coco, shown), 'bbox')
            evaluator.params.iouThrs, evaluator.params.maxDets = np.array([0.5]), [1000]
            evaluator.params.areaRng, evaluator.params.areaRngLbl = [[0, 1e10]], ['all']
            evaluator.evaluate()
        for img in record['images']:
            entries = [e for e in evaluator.evalImgs if e is not None and e['image_id'] == img['id']]
            correct = sum(int((e['dtMatches'][0] > 0).sum()) for e in entries)
            found = sum(int((e['gtMatches'][0] > 0).sum()) for e in entries)
            objects = len(coco.getAnnIds(imgIds=[img['id']]))
            counts = img['counts'][name]
            assert (counts['correct'], counts['missed']) == (correct, objects - found)
            assert counts['correct'] + counts['wrong'] == sum(d['image_id'] == img['id'] for d in shown)


def test_tool_chosen_images_by_id_and_name(toy, tmp_path):
    record, text = _run([*_models(toy), '--out-dir', str(tmp_path / 'a'), '--images', '3', '000000.png'])
    assert [img['id'] for img in record['images']] == [3, 1]
    assert record['chosen'] == 'chosen'
    for name in ('000002.png', '000000.png'):
        assert _png(str(tmp_path / 'a' / name)).shape == (title_height(512) + 512, 2 * 512 + GAP, 3)
    assert not osp.exists(tmp_path / 'a' / 'grid.png')
    # the same detections read back from result files: the same counts
    files = []
    for name in ('baseline', 'teacher'):
        dets = det_compare.model_detections(
            det_compare.ModelSpec(name, *toy['w16' if name == 'baseline' else 'w32']), [3, 1],
            det_compare.parse_args([*_models(toy), '--out-dir', 'x']), False, print)
        files += ['--results', name, str(tmp_path / f'{name}.json')]
        json.dump(dets, open(files[-1], 'w'))
    again, _ = _run([
        *files, '--out-dir',
        str(tmp_path / 'b'), '--images', '000002.png', '1', '--ann-file',
        osp.join(toy['root'], 'annotations', 'instances_val.json'), '--img-dir',
        osp.join(toy['root'], 'val')
    ])
    assert [img['counts'] for img in again['images']] == [img['counts'] for img in record['images']]


def test_tool_random_choice_is_reproducible(toy, tmp_path):
    json.dump([], open(str(tmp_path / 'none.json'), 'w'))
    common = [
        '--results', 'none',
        str(tmp_path / 'none.json'), '--ann-file', 'annotations/instances_val.json', '--data-root', toy['root'],
        '--img-dir', 'val'
    ]
    chosen = [[
        img['id']
        for img in _run([*common, '--out-dir',
                         str(tmp_path / str(seed)), '--random', '2', '--seed',
                         str(seed)])[0]['images']
    ] for seed in (5, 5, 6, 7, 8)]
    assert chosen[0] == chosen[1] and len(set(chosen[0])) == 2
    assert len({tuple(c) for c in chosen}) > 1  # the seed matters


def test_tool_best_and_worst(toy, tmp_path):
    ann = osp.join(toy['root'], 'annotations', 'instances_val.json')
    coco = json.load(open(ann))
    objects = {img['id']: [a for a in coco['annotations'] if a['image_id'] == img['id']] for img in coco['images']}
    hits = {
        i: [dict(image_id=i, category_id=a['category_id'], bbox=a['bbox'], score=0.9) for a in anns]
        for i, anns in objects.items()
    }
    assert all(len(hits[i]) >= 1 for i in (1, 2))
    before = hits[1] + hits[3]  # baseline finds images 1 and 3
    after = hits[2] + hits[3]  # distilled finds 2 and 3, misses 1
    paths = [str(tmp_path / 'before.json'), str(tmp_path / 'after.json')]
    for path, dets in zip(paths, (before, after)):
        json.dump(dets, open(path, 'w'))
    common = [
        '--results', 'baseline', paths[0], '--results', 'distilled', paths[1], '--ann-file', ann, '--img-dir',
        osp.join(toy['root'], 'val')
    ]
    best, text = _run([*common, '--out-dir', str(tmp_path / 'best'), '--best', '1'])
    worst, _ = _run([*common, '--out-dir', str(tmp_path / 'worst'), '--worst', '1'])
    assert [img['id'] for img in best['images']] == [2] and [img['id'] for img in worst['images']] == [1]
    assert best['images'][0]['counts']['distilled']['correct'] == len(hits[2])
    assert 'most more correct predictions of distilled than baseline' in text
    swapped, _ = _run([*common, '--out-dir', str(tmp_path / 's'), '--best', '1', '--compare', 'distilled', 'baseline'])
    assert [img['id'] for img in swapped['images']] == [1]


def test_tool_errors(toy, tmp_path, capsys):
    out = ['--out-dir', str(tmp_path / 'out')]
    with pytest.raises(ValueError, match=r"--images '99': no image of the test set"):
        _run([*_models(toy), *out, '--images', '99'])
    with pytest.raises(FileNotFoundError, match=r"model 'teacher': checkpoint '.*missing\.pth' does not exist"):
        _run(['--model', 'baseline', *toy['w16'], '--model', 'teacher', toy['w32'][0], 'missing.pth', *out])
    with pytest.raises(FileNotFoundError, match=r"--results 'x': 'nothing\.json' does not exist"):
        _run(['--results', 'x', 'nothing.json', *out])
    five = [a for k in range(5) for a in ('--model', f'm{k}', *toy['w16'])]
    with pytest.raises(SystemExit):
        _run([*five, *out])
    assert '5 columns given (--model / --results); det_compare shows 1 to 4' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _run(['--model', 'a', *toy['w16'], *out, '--best', '2'])
    assert 'give at least two' in capsys.readouterr().err
    # from the command line: one line, no traceback
    proc = subprocess.run([PYTHON, SCRIPT, *_models(toy), *out, '--images', '99'],
                          cwd=ROOT,
                          env=tool_env(),
                          capture_output=True,
                          text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("det_compare: error: --images '99': no image")
    assert 'Traceback' not in proc.stderr
