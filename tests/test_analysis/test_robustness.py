"""mPC / rPC arithmetic (against hand-computed values and mmdet's own robustness_eval.py), the table and the plot,
and tools/analysis/robustness.py end to end on tiny toy data with two random-weight toy RetinaNets: its three files,
the corrupted-image cache shared by the models, resuming an interrupted run, dropping a changed model's cells,
errors."""
import importlib.util
import io
import math
import os
import os.path as osp
import pickle
import runpy
import subprocess
import textwrap

import numpy as np
import pytest
import torch

from mmkd.analysis import (build_test_set, coco_evaluate, load_coco, load_detector, model_specs, plot_robustness,
                           resolve_corruptions, resolve_severities, robustness_markdown, summarize_robustness)
from mmkd.analysis.robustness import summarize_model
from mmkd.datasets import generate_toy_shapes
from mmkd.datasets.transforms import corruption as corruption_module
from mmkd.datasets.transforms.corruption import CORRUPTIONS
from ..conftest import PYTHON, ROOT, TOOLS, tool_env
from . import random_toy_retinanets, score_everything_at_64

SCRIPT = osp.join(TOOLS, 'analysis', 'robustness.py')
_spec = importlib.util.spec_from_file_location('robustness_tool', SCRIPT)
tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tool)

MMDET_EVAL = osp.join(
    osp.dirname(importlib.util.find_spec('mmdet').origin), '.mim', 'tools', 'analysis_tools', 'robustness_eval.py')
NUM_IMAGES = 3


def _stats(ap: float) -> dict:
    return dict(AP=ap, AP50=min(1.0, 2 * ap), AP75=ap / 2, AP_S=0.0, AP_M=ap, AP_L=ap)


# ---------------------------------------------------------------------------------------------- arithmetic
def test_hand_computed():
    """Clean 0.4; gaussian_noise at severities 1 and 2: 0.3 and 0.1; fog at 1: 0.2."""
    model = summarize_model(0.4, {'gaussian_noise': {1: 0.3, 2: 0.1}, 'fog': {1: 0.2}})
    assert model['mPC'] == pytest.approx(0.2)  # (0.3 + 0.1 + 0.2) / 3
    assert model['rPC'] == pytest.approx(0.5)
    assert model['per_corruption'] == pytest.approx({'gaussian_noise': 0.2, 'fog': 0.2})
    assert model['per_severity'] == pytest.approx({0: 0.4, 1: 0.25, 2: 0.1})
    assert model['num_cells'] == 3
    # the SSIM paper's vanilla RetinaNet: 36.5 clean, 18.0 mPC -> rPC 49.3 % from these rounded numbers (the paper
    # prints 49.4 from its unrounded ones)
    assert 100 * summarize_model(0.365, {'fog': {1: 0.18}})['rPC'] == pytest.approx(49.315, abs=1e-3)
    assert math.isnan(summarize_model(0.0, {'fog': {1: 0.0}})['rPC'])


def test_against_mmdet_robustness_eval(tmp_path):
    """The full 15 x 5 grid of random numbers: P, mPC and rPC as mmdet's tools/analysis_tools/robustness_eval.py
    computes them from a results file in the format of its test_robustness.py."""
    if not osp.isfile(MMDET_EVAL):
        pytest.skip(f'mmdet ships no {MMDET_EVAL}')
    spec = importlib.util.spec_from_file_location('mmdet_robustness_eval', MMDET_EVAL)
    mmdet_eval = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mmdet_eval)
    rng = np.random.default_rng(0)
    clean = 0.37
    grid = {c: {s: float(rng.uniform(0.05, clean)) for s in range(1, 6)} for c in CORRUPTIONS}
    theirs = {c: {s: {'coco/bbox_mAP': v} for s, v in by.items()} for c, by in grid.items()}
    theirs[CORRUPTIONS[0]][0] = {'coco/bbox_mAP': clean}
    path = str(tmp_path / 'results.pkl')
    with open(path, 'wb') as f:
        pickle.dump(theirs, f)
    table = mmdet_eval.get_coco_style_results(path, metric='mAP', prints=[])
    their_clean, their_mpc = table[0, 0, 0], table[:15, 1:, 0].mean()
    cells = {c: {s: _stats(v) for s, v in by.items()} for c, by in grid.items()}
    ours = summarize_robustness({'m': dict(clean=_stats(clean), cells=cells)})
    model = ours['models']['m']
    assert model['clean'] == pytest.approx(their_clean, rel=1e-6)
    assert model['mPC'] == pytest.approx(their_mpc, rel=1e-6)
    assert model['rPC'] == pytest.approx(their_mpc / their_clean, rel=1e-6)
    assert ours['full_benchmark'] and ours['num_cells'] == 75 and 'all 15 corruptions' in ours['note']


def test_subset_note_table_and_plot(tmp_path):
    results = {
        'base': dict(clean=_stats(0.4), cells={'fog': {
            1: _stats(0.3),
            3: _stats(0.1)
        }}),
        'kd': dict(clean=_stats(0.5), cells={'fog': {
            1: _stats(0.4),
            3: _stats(0.3)
        }}),
    }
    summary = summarize_robustness(results)
    assert not summary['full_benchmark'] and summary['num_cells'] == 2
    assert 'over the 2 evaluated' in summary['note'] and 'not comparable' in summary['note']
    table = robustness_markdown(summary)
    assert '| base | 40.0 | 20.0 | 50.0 | 20.0 |' in table
    assert '| kd | 50.0 | 35.0 | 70.0 | 35.0 |' in table
    ap50 = summarize_robustness(results, 'AP50')
    assert ap50['models']['base']['mPC'] == pytest.approx(0.4)  # (0.6 + 0.2) / 2
    png = str(tmp_path / 'r.png')
    plot_robustness(summary, png)
    with open(png, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_resolve():
    assert resolve_corruptions(['all']) == list(CORRUPTIONS)
    assert resolve_corruptions(['fog', 'noise',
                                'gaussian_noise']) == ['gaussian_noise', 'shot_noise', 'impulse_noise', 'fog']
    assert resolve_corruptions(['digital']) == ['contrast', 'elastic_transform', 'pixelate', 'jpeg_compression']
    with pytest.raises(ValueError, match="unknown corruption 'haze'"):
        resolve_corruptions(['fog', 'haze'])
    assert resolve_severities([5, 1, 1]) == [1, 5]
    for bad in (0, 6):
        with pytest.raises(ValueError, match=f'severity {bad}: expected integers from 1 to 5'):
            resolve_severities([1, bad])


# ---------------------------------------------------------------------------------------------- the tool
@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """Toy shapes (3 val images of 64x64) and two toy RetinaNets (w16, w32) with random weights; score threshold 0
    so that the random models detect something (AP above 0), images kept at 64x64 so that the tests stay fast."""
    root = str(tmp_path_factory.mktemp('robustness'))
    data = osp.join(root, 'data')
    generate_toy_shapes(data, seed=0, num_train=1, num_val=NUM_IMAGES, image_size=64)
    models = []
    for width, (config, checkpoint) in random_toy_retinanets(root, data + '/', score_everything_at_64).items():
        models += ['--model', width, config, checkpoint]
    return dict(root=root, data=data, models=models)


def _args(setup, work_dir, *extra):
    return [
        *setup['models'], '--work-dir', work_dir, '--corruptions', 'gaussian_noise', 'glass_blur', '--severities', '2',
        '4', '--workers', '0', *extra
    ]


def _count_cells(monkeypatch):
    calls = []
    real = tool.evaluate_cell
    monkeypatch.setattr(tool, 'evaluate_cell', lambda *a: calls.append(a[2]) or real(*a))
    return calls


@pytest.fixture(scope='module')
def full_run(setup, tmp_path_factory):
    """An uninterrupted run, counting the corruptions computed."""
    work_dir = str(tmp_path_factory.mktemp('full'))
    calls = []
    real = corruption_module.apply_corruption
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(corruption_module, 'apply_corruption', lambda *a: calls.append(a[1:3]) or real(*a))
        record = tool.main(_args(setup, work_dir), stream=io.StringIO())
    return dict(work_dir=work_dir, record=record, corruptions=calls)


def test_writes_its_files(setup, full_run):
    work_dir, record = full_run['work_dir'], full_run['record']
    for name in ('robustness.json', 'robustness.md', 'robustness.png'):
        assert osp.getsize(osp.join(work_dir, name)) > 100
    assert record['corruptions'] == ['gaussian_noise', 'glass_blur'] and record['severities'] == [2, 4]
    assert record['num_cells'] == 4 and not record['full_benchmark']
    assert record['images']['num_images'] == NUM_IMAGES
    for name, model in record['models'].items():
        coco = model['coco']
        aps = [coco['cells'][c][s]['AP'] for c in ('gaussian_noise', 'glass_blur') for s in ('2', '4')]
        assert model['clean'] == coco['clean']['AP'] > 0
        assert model['mPC'] == pytest.approx(np.mean(aps))
        assert model['rPC'] == pytest.approx(np.mean(aps) / coco['clean']['AP'])
        assert model['per_corruption']['glass_blur'] == pytest.approx(np.mean(aps[2:]))
        assert model['per_severity']['4'] == pytest.approx((aps[1] + aps[3]) / 2)
        assert f'| {name} | {100 * model["clean"]:.1f} | {100 * model["mPC"]:.1f} |' in open(
            osp.join(work_dir, 'robustness.md')).read()


def test_a_cell_as_evaluated_by_hand(setup, full_run):
    """One cell of one model recomputed here: its own test set with the corruption, its detections, COCO AP."""
    spec = model_specs([setup['models'][5:8]])[0]
    model, cfg = load_detector(spec)
    transform = dict(type='CorruptImage', corruption='glass_blur', severity=4, seed=0)
    dataset = build_test_set(cfg, [transform])
    from mmkd.analysis import predict_detections
    stats = coco_evaluate(load_coco(dataset.ann_file), predict_detections(model, dataset))
    assert stats == pytest.approx(full_run['record']['models']['w32']['coco']['cells']['glass_blur']['4'])
    assert stats['AP'] != pytest.approx(full_run['record']['models']['w32']['coco']['clean']['AP'])


def test_each_corrupted_image_computed_once(full_run):
    """2 models x 4 cells x 3 images, each corrupted image computed once and read back for the second model."""
    assert sorted(full_run['corruptions']) == sorted([(c, s) for c in ('gaussian_noise', 'glass_blur')
                                                      for s in (2, 4)] * NUM_IMAGES)
    cached = [f for _, _, files in os.walk(osp.join(full_run['work_dir'], 'corrupted_images')) for f in files]
    assert cached == []  # a finished cell's images are deleted without --keep-images


def test_interrupted_run_resumes(setup, full_run, tmp_path, monkeypatch):
    """A run killed (SIGKILL) when it starts its 4th model evaluation has saved 3; the rerun computes only the other
    7, and gives the JSON of the uninterrupted run. A second rerun computes nothing; a changed checkpoint of one
    model recomputes that model's 5 cells only."""
    work_dir = str(tmp_path / 'work')
    script = textwrap.dedent(f"""
        import importlib.util, os, signal, sys
        spec = importlib.util.spec_from_file_location('robustness_tool', {SCRIPT!r})
        tool = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(tool)
        real, calls = tool.evaluate_cell, []
        def evaluate_cell(*args):
            calls.append(1)
            if len(calls) == 4:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args)
        tool.evaluate_cell = evaluate_cell
        tool.main({_args(setup, work_dir)!r})
        """)
    proc = subprocess.run([PYTHON, '-c', script], capture_output=True, text=True, env=tool_env(), cwd=ROOT, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not osp.exists(osp.join(work_dir, 'robustness.json'))

    calls = _count_cells(monkeypatch)
    log = io.StringIO()
    record = tool.main(_args(setup, work_dir), stream=log)
    assert len(calls) == 2 * 5 - 3
    assert record == full_run['record']
    assert log.getvalue().count('resumed') == 1  # the clean cell: both models saved; the 2nd: w16 saved only

    calls.clear()
    assert tool.main(_args(setup, work_dir), stream=io.StringIO()) == record
    assert calls == []

    checkpoint = setup['models'][3]
    state = torch.load(checkpoint, weights_only=True)
    state['state_dict'] = {k: v + 0.01 if v.is_floating_point() else v for k, v in state['state_dict'].items()}
    changed = str(tmp_path / 'w16_changed.pth')
    torch.save(state, changed)
    args = _args(setup, work_dir)
    args[3] = changed
    log = io.StringIO()
    other = tool.main(args, stream=log)
    assert len(calls) == 5 and 'were computed for another config, checkpoint, image set or seed' in log.getvalue()
    assert other['models']['w32'] == record['models']['w32']
    assert other['models']['w16']['coco'] != record['models']['w16']['coco']


def test_other_image_subset_recomputes(setup, tmp_path, monkeypatch):
    work_dir = str(tmp_path / 'subset')
    calls = _count_cells(monkeypatch)
    grid = ['--corruptions', 'gaussian_noise', '--severities', '2']
    first = tool.main([*_args(setup, work_dir), *grid, '--num-images', '2'], stream=io.StringIO())
    assert first['images']['num_images'] == 2 and first['images']['indices'] == [0, 2] and len(calls) == 4
    log = io.StringIO()
    tool.main([*_args(setup, work_dir), *grid, '--keep-images'], stream=log)
    assert len(calls) == 8 and 'another config, checkpoint, image set or seed' in log.getvalue()
    cached = [f for _, _, files in os.walk(osp.join(work_dir, 'corrupted_images')) for f in files]
    assert len(cached) == NUM_IMAGES and all(f.endswith('.png') for f in cached)
    # an edited annotation file (here: a new modification time) is another test set
    ann_file = osp.join(setup['data'], 'annotations', 'instances_val.json')
    os.utime(ann_file, (osp.getatime(ann_file), osp.getmtime(ann_file) + 10))
    tool.main([*_args(setup, work_dir), *grid], stream=io.StringIO())
    assert len(calls) == 12


@pytest.mark.parametrize('extra, message', [
    (['--corruptions', 'haze'], "unknown corruption 'haze'"),
    (['--severities', '0'], 'severity 0: expected integers from 1 to 5'),
    (['--severities', '6'], 'severity 6: expected integers from 1 to 5'),
    (['--model', 'x', 'missing.py', 'missing.pth'], "model 'x': config 'missing.py' does not exist"),
])
def test_bad_input(setup, tmp_path, extra, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        tool.main([*setup['models'], '--work-dir', str(tmp_path), *extra], stream=io.StringIO())


def test_bad_input_from_the_command_line(setup, tmp_path, monkeypatch):
    """The command line ends with one line naming the problem, not a traceback."""
    monkeypatch.setattr('sys.argv', [SCRIPT, *setup['models'], '--work-dir', str(tmp_path), '--severities', '0'])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(SCRIPT, run_name='__main__')
    assert exit_.value.code == ('robustness: error: severity 0: expected integers from 1 to 5 (the clean test set, '
                                'severity 0, is always evaluated)')
