"""The COCO PR-curve error breakdown (mmkd.analysis.error_breakdown) on a hand-made set of boxes.

Ground truth (3 categories: circle and ring in supercategory ``round``, square in ``angular``; area = w * h; COCO
sizes: small < 32^2, medium 32^2..96^2, large > 96^2):

    image 1: A circle [10, 10, 40, 40] (1600, medium), B ring [100, 100, 20, 20] (400, small),
             C square [0, 100, 100, 100] (10000, large)
    image 2: D square [10, 10, 20, 20] (400, small), E circle [100, 100, 30, 30] (900, small)

Detections (score):

    d1 circle on A, exact (0.9)                          d2 ring [100, 100, 20, 12]: IoU 240/400 = .6 with B (0.8)
    d3 square [0, 100, 100, 30]: IoU .3 with C (0.7)     d4 ring on A, exact: a confusion inside ``round`` (0.95)
    d5 square on E, exact: a confusion across supercategories (0.85)
    d6 circle [150, 150, 20, 20] in image 2: background (0.95)
    d7 circle [12, 10, 40, 40]: IoU 1520/1680 = .90 with A, a duplicate of d1 (0.5)
    D is found by nothing (FN).

pycocotools' AP: detections by descending score; precision made non-increasing from the right; at each of the 101
recall thresholds 0, .01, ..., 1 the precision of the first detection whose recall reaches it, 0 past the last
recall; AP = the mean of the 101 values. A category whose only hit comes after one higher-scoring false positive at
recall 1/2 has precision 1/2 at the 51 thresholds 0 ... .5: AP 25.5/101; with no false positive before it 51/101.

Per category, all sizes:

    circle (A, E): d6 FP, d1 TP, d7 FP; recall .5 at precision 1/2 -> 25.5/101 in C75 ... Oth (d6 is background,
        d7 a duplicate after the last hit); BG: precision 1 wherever Oth's is > 0, i.e. up to recall .5 -> 51/101.
    ring (B): C75: d4, d2 both FP -> 0; C50 / Loc: d4 FP, d2 TP, recall 1 at precision 1/2 -> .5; Sim: A becomes an
        ignored region for ring, d4 falls on it and is dropped -> 1; Oth, BG -> 1.
    square (C, D): C75 / C50: nothing matches -> 0; Loc: d5 FP then d3 TP at IoU .3, recall .5 -> 25.5/101; Sim:
        E is not ``angular`` -> as Loc; Oth: d5 dropped on E -> 51/101; BG -> 51/101.
    FN: 1 everywhere.

By size (a detection left unmatched outside the size range is ignored; one matched to an object outside it too):

    small (B, D, E): circle: d6 FP only -> 0 everywhere but FN (BG is 1 only where Oth's precision is > 0); ring:
        C75 0 (d2 FP, d4 out of range), C50 ... BG 1; square: d5 FP (dropped in Oth), nothing else -> 0 ... 0
        -> means 0, 1/3, 1/3, 1/3, 1/3, 1/3, 1.
    medium (A): only circle has objects: d1 TP, d7 FP after it -> 1 everywhere. mmdet's script averages over every
        category, counting ring and square (no medium objects) as 0: C75 1/3 ... BG 1/3, FN 1.
    large (C): only square: C75 / C50 0 (d3 and d5 out of range), Loc ... FN 1.
"""
import importlib.util
import io
import json
import os.path as osp

import numpy as np
import pytest
from pycocotools.coco import COCO

from mmkd.analysis import coco_evaluate, load_coco
from mmkd.analysis.error_breakdown import (SETTINGS, breakdown_table, check_results, load_coco_error_analysis,
                                           parse_supercategories, plot_breakdown_comparison, plot_pr_panels,
                                           pr_breakdown)
from mmkd.datasets import generate_toy_shapes
from mmkd.datasets.toy_shapes import SUPERCATEGORIES
from ..conftest import TOOLS
from . import random_toy_retinanets

_spec = importlib.util.spec_from_file_location('error_breakdown_tool', osp.join(TOOLS, 'analysis',
                                                                                'error_breakdown.py'))
tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tool)

A, B, C = [10, 10, 40, 40], [100, 100, 20, 20], [0, 100, 100, 100]
D, E = [10, 10, 20, 20], [100, 100, 30, 30]


def hand_made_gt(supercategories=('round', 'round', 'angular'), reverse_categories=False) -> COCO:
    boxes = [(1, 1, A), (1, 2, B), (1, 3, C), (2, 3, D), (2, 1, E)]
    cats = [
        dict(id=i + 1, name=n, supercategory=s)
        for i, (n, s) in enumerate(zip(('circle', 'ring', 'square'), supercategories))
    ]
    dataset = dict(
        images=[dict(id=i, file_name=f'{i}.png', width=200, height=200) for i in (1, 2)],
        annotations=[
            dict(id=k + 1, image_id=im, category_id=c, bbox=list(b), area=b[2] * b[3], iscrowd=0)
            for k, (im, c, b) in enumerate(boxes)
        ],
        categories=cats[::-1] if reverse_categories else cats)
    coco = COCO()
    coco.dataset = dataset
    coco.createIndex()
    return coco


def hand_made_detections():
    return [
        dict(image_id=1, category_id=1, bbox=list(A), score=0.9),  # d1
        dict(image_id=1, category_id=2, bbox=[100, 100, 20, 12], score=0.8),  # d2
        dict(image_id=1, category_id=3, bbox=[0, 100, 100, 30], score=0.7),  # d3
        dict(image_id=1, category_id=2, bbox=list(A), score=0.95),  # d4
        dict(image_id=2, category_id=3, bbox=list(E), score=0.85),  # d5
        dict(image_id=2, category_id=1, bbox=[150, 150, 20, 20], score=0.95),  # d6
        dict(image_id=1, category_id=1, bbox=[12, 10, 40, 40], score=0.5),  # d7
    ]


H, F = 25.5 / 101, 51 / 101  # precision 1/2 up to recall .5; precision 1 up to recall .5
EXPECTED = {
    # C75, C50, Loc, Sim, Oth, BG, FN: means over the categories with objects of that size
    'all': ((H + 0 + 0) / 3, (H + .5 + 0) / 3, (H + .5 + H) / 3, (H + 1 + H) / 3, (H + 1 + F) / 3, (F + 1 + F) / 3, 1),
    'small': (0, 1 / 3, 1 / 3, 1 / 3, 1 / 3, 1 / 3, 1),
    'medium': (1, 1, 1, 1, 1, 1, 1),
    'large': (0, 0, 1, 1, 1, 1, 1),
}


def assert_breakdown(result, expected=EXPECTED):
    for area, values in expected.items():
        got = result['ap'][area]
        for setting, value in zip(SETTINGS, values):
            assert got[setting] == pytest.approx(value, abs=1e-9), (area, setting)


def test_hand_made_breakdown():
    result = pr_breakdown(hand_made_gt(), hand_made_detections())
    assert_breakdown(result)
    assert result['num_gt'] == dict(all=5, small=3, medium=1, large=1)
    assert result['categories'] == dict(all=3, small=3, medium=1, large=1)
    # the strict settings are COCO's AP75 / AP50 by pycocotools' own summary
    stats = coco_evaluate(hand_made_gt(), hand_made_detections())
    assert result['ap']['all']['C75'] == pytest.approx(stats['AP75'])
    assert result['ap']['all']['C50'] == pytest.approx(stats['AP50'])
    # curves: 101 precisions each, their mean is the AP
    for area in ('all', 'small'):
        for s in SETTINGS:
            assert len(result['curves'][area][s]) == 101
            assert np.mean(result['curves'][area][s]) == pytest.approx(result['ap'][area][s])


def test_mmdet_zero_averaging_differs():
    """mmdet's precision array, averaged as its makeplot does (categories without objects of a size as 0), gives
    1/3 where the categories with objects give 1: the wrapper averages over those only."""
    from mmkd.analysis.error_breakdown import _run_mmdet_analysis, gt_dataset
    ps = _run_mmdet_analysis(gt_dataset(hand_made_gt()), hand_made_detections())
    assert ps.shape == (7, 101, 3, 4)
    mmdet_medium = ps[:, :, :, 2].mean(axis=(1, 2))
    np.testing.assert_allclose(mmdet_medium, [1 / 3] * 6 + [1])


def test_supercategories():
    # one supercategory for all: Sim forgives d4 and d5 alike, so Sim equals Oth
    one = pr_breakdown(hand_made_gt(('shape', ) * 3), hand_made_detections())
    assert one['ap']['all']['Sim'] == pytest.approx(one['ap']['all']['Oth'])
    assert one['ap']['all']['Sim'] == pytest.approx(EXPECTED['all'][4])
    # the override restores the hand-made supercategories
    mapping = parse_supercategories(['round=circle,ring', 'angular=square'])
    assert mapping == dict(circle='round', ring='round', square='angular')
    assert_breakdown(pr_breakdown(hand_made_gt(('shape', ) * 3), hand_made_detections(), mapping))
    with pytest.raises(KeyError, match=r"\['hexagon'\]"):
        pr_breakdown(hand_made_gt(), hand_made_detections(), dict(hexagon='x'))
    with pytest.raises(ValueError, match='SUPERCATEGORY=CLASS'):
        parse_supercategories(['round'])
    with pytest.raises(ValueError, match="'circle' is in 'a' and in 'b'"):
        parse_supercategories(['a=circle', 'b=circle'])


def test_category_order_of_the_file():
    """mmdet's script pairs COCOeval's category index (ids sorted) with the file's category order: categories
    listed out of id order must give the same numbers."""
    assert_breakdown(pr_breakdown(hand_made_gt(reverse_categories=True), hand_made_detections()))


def test_no_detections():
    result = pr_breakdown(hand_made_gt(), [])
    for area in ('all', 'small', 'medium', 'large'):
        assert [result['ap'][area][s] for s in SETTINGS] == [0, 0, 0, 0, 0, 0, 1]


def test_results_checked():
    gt = hand_made_gt()
    dets = hand_made_detections()
    with pytest.raises(ValueError, match='1 detection.*unknown image id.*7'):
        check_results(gt, dets + [dict(image_id=7, category_id=1, bbox=[0, 0, 1, 1], score=0.5)], 'x.json')
    with pytest.raises(ValueError, match='unknown category id.*99'):
        pr_breakdown(gt, dets + [dict(image_id=1, category_id=99, bbox=[0, 0, 1, 1], score=0.5)])
    with pytest.raises(ValueError, match='"score"'):
        check_results(gt, [dict(image_id=1, category_id=1, bbox=[0, 0, 1])])


def test_mmdet_script_loaded_from_the_package():
    module = load_coco_error_analysis()
    assert module.__file__.endswith('mmdet/.mim/tools/analysis_tools/coco_error_analysis.py')
    assert module.Pool.__name__ == '_SerialPool'


def test_tables_and_figures(tmp_path):
    base = pr_breakdown(hand_made_gt(), hand_made_detections())
    better = pr_breakdown(hand_made_gt(), hand_made_detections()[:5])
    worse = pr_breakdown(hand_made_gt(), [])
    results = dict(base=base, better=better, teacher=worse)
    table = breakdown_table(results)
    assert table.count('\n') == 2 + 3 * 4
    assert f'| base | all | {EXPECTED["all"][0]:.3f} |' in table
    assert f'| teacher | all | 0.000 ({-EXPECTED["all"][0]:+.3f}) |' in table
    plot_breakdown_comparison(results, str(tmp_path / 'cmp.png'))
    plot_pr_panels(base, 'base', str(tmp_path / 'pr.png'))
    for name in ('cmp.png', 'pr.png'):
        assert (tmp_path / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    with pytest.raises(ValueError, match='one to three models'):
        plot_breakdown_comparison(dict(a=base, b=base, c=base, d=base), str(tmp_path / 'x.png'))


# ---------------------------------------------------------------------------------------------- the tool
@pytest.fixture(scope='module')
def toy_models(tmp_path_factory):
    """Two random-weight toy RetinaNets (w16, w32) on a tiny toy shapes tree (4 validation images)."""
    root = tmp_path_factory.mktemp('error_breakdown')
    data = str(root / 'toy')
    generate_toy_shapes(data, num_train=1, num_val=4, image_size=64)
    toy = random_toy_retinanets(str(root), data, zero_cls_bias=True)
    models = [('small', *toy['w16']), ('big', *toy['w32'])]
    return root, data, models


def test_tool_writes_its_files(toy_models, tmp_path):
    root, data, models = toy_models
    work = tmp_path / 'work'
    argv = [
        '--work-dir',
        str(work), '--num-images', '3', '--batch-size', '2', '--supercategories', 'round=circle,ring',
        'angular=square,triangle,cross'
    ]
    for name, config, checkpoint in models:
        argv += ['--model', name, config, checkpoint]
    log = io.StringIO()
    summary = tool.main(argv, log)
    for name in ('error_breakdown.json', 'error_breakdown.md', 'error_breakdown.png', 'pr_curves_small.png',
                 'pr_curves_big.png', 'tide.json', 'tide.md', 'tide.png'):
        assert (work / name).is_file(), name
    stored = json.loads((work / 'error_breakdown.json').read_text())
    assert stored['models'] == ['small', 'big'] and stored['baseline'] == 'small' and stored['num_images'] == 3
    assert stored['supercategories'] == dict(
        circle='round', ring='round', square='angular', triangle='angular', cross='angular')
    # the first three images' objects, and the breakdown agrees with pycocotools' AP75 / AP50 on them
    gt = load_coco(osp.join(data, 'annotations', 'instances_val.json'))
    num_objects = len(gt.getAnnIds(imgIds=[1, 2, 3]))
    assert stored['breakdown']['small']['num_gt']['all'] == num_objects
    for name in ('small', 'big'):
        cached = json.loads((work / 'detections' / name).joinpath(
            next(p.name for p in (work / 'detections' / name).iterdir())).read_text())['detections']
        assert cached and {d['image_id'] for d in cached} <= {1, 2, 3}
        stats = coco_evaluate(gt, cached, image_ids=[1, 2, 3])
        assert stored['breakdown'][name]['ap']['all']['C75'] == pytest.approx(stats['AP75'])
        assert stored['breakdown'][name]['ap']['all']['C50'] == pytest.approx(stats['AP50'])
        assert stored['breakdown'][name]['ap']['all']['FN'] == 1
    assert json.loads((work / 'tide.json').read_text())['tide'] == summary['tide']
    assert '| big | all |' in (work / 'error_breakdown.md').read_text()
    # a second run reads the cached detections; a freshly generated tree has the two supercategories of the toy
    # shapes already (older trees: one, with a note that Sim equals Oth); --results reads a result list or the
    # cache's format
    log = io.StringIO()
    second = tool.main(argv[:argv.index('--supercategories')] + argv[argv.index('--model'):] + ['--no-tide'], log)
    assert 'detections in' not in log.getvalue() and 'Sim equals Oth' not in log.getvalue()
    assert second['supercategories'] == SUPERCATEGORIES
    assert second['breakdown'] == summary['breakdown']
    cache = next((work / 'detections' / 'small').iterdir())
    again = tool.main([
        '--work-dir',
        str(tmp_path / 'again'), '--ann-file',
        osp.join(data, 'annotations', 'instances_val.json'), '--num-images', '3', '--results', 'small',
        str(cache), '--no-tide', '--supercategories', 'round=circle,ring', 'angular=square,triangle,cross'
    ], io.StringIO())
    assert again['breakdown']['small'] == summary['breakdown']['small']


def test_tool_bad_input(toy_models, tmp_path):
    root, data, models = toy_models
    ann = osp.join(data, 'annotations', 'instances_val.json')
    base = ['--work-dir', str(tmp_path)]
    many = base + sum((['--model', f'm{i}', models[0][1], models[0][2]] for i in range(4)), [])
    with pytest.raises(SystemExit):
        tool.parse_args(many)
    with pytest.raises(SystemExit):
        tool.parse_args(base + ['--results', 'a', 'a.json'])  # no --ann-file
    with pytest.raises(FileNotFoundError, match="model 'x': checkpoint 'missing.pth' does not exist"):
        tool.main(base + ['--model', 'x', models[0][1], 'missing.pth'])
    with pytest.raises(FileNotFoundError, match='--results a: .*nothing.json does not exist'):
        tool.main(base + ['--ann-file', ann, '--results', 'a', str(tmp_path / 'nothing.json')])
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps([dict(image_id=999, category_id=1, bbox=[0, 0, 5, 5], score=0.5)]))
    with pytest.raises(ValueError, match='--results a: 1 detection.*unknown image id.*999'):
        tool.main(base + ['--ann-file', ann, '--results', 'a', str(bad)])
    bad.write_text(json.dumps([dict(image_id=1, category_id=42, bbox=[0, 0, 5, 5], score=0.5)]))
    with pytest.raises(ValueError, match='--results a: 1 detection.*unknown category id.*42'):
        tool.main(base + ['--ann-file', ann, '--results', 'a', str(bad)])
