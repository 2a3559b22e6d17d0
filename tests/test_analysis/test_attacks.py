"""Crafted and broken inputs to the detector analysis tools, and a robustness run killed while it saves a cell: each
ends in one error naming the file or option and what was expected, or is recomputed with a message, never in a
traceback or silently wrong numbers."""
import argparse
import contextlib
import importlib.util
import io
import json
import math
import os
import os.path as osp
import runpy
import subprocess
import textwrap
import warnings

import cv2
import numpy as np
import pytest
import torch

from mmkd.analysis import ModelSpec, cached_detections, load_coco, load_detector, model_specs
from mmkd.analysis.detections import Source
from mmkd.analysis.error_breakdown import check_results
from mmkd.datasets import generate_toy_shapes
from mmkd.datasets.transforms.corruption import CorruptImage
from ..conftest import PYTHON, ROOT, TOOLS, tool_env
from . import random_toy_retinanets, score_everything_at_64


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f'{name}_attacked', osp.join(TOOLS, 'analysis', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


robustness = _load_tool('robustness')
det_compare = _load_tool('det_compare')
ROBUSTNESS = osp.join(TOOLS, 'analysis', 'robustness.py')
ERROR_BREAKDOWN = osp.join(TOOLS, 'analysis', 'error_breakdown.py')


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    """3 toy validation images of 64x64 and two random-weight toy RetinaNets (w16, w32, score threshold 0 so that
    they detect something), as --model triples."""
    root = str(tmp_path_factory.mktemp('attacks'))
    data = osp.join(root, 'data')
    generate_toy_shapes(data, seed=0, num_train=1, num_val=3, image_size=64)
    models = random_toy_retinanets(root, data + '/', score_everything_at_64)
    return dict(root=root, data=data, models=models, ann_file=osp.join(data, 'annotations', 'instances_val.json'))


# ------------------------------------------------------------------------------------- crafted result files
GOOD = dict(image_id=1, category_id=1, bbox=[1.0, 2.0, 10.0, 12.0], score=0.9)
BAD_DETECTIONS = [
    dict(GOOD, bbox=[math.nan, 2.0, 10.0, 12.0]),
    dict(GOOD, bbox=[1.0, 2.0, math.inf, 12.0]),
    dict(GOOD, bbox=[1.0, 2.0, -10.0, 12.0]),
    dict(GOOD, bbox=['1', '2', '10', '12']),
    dict(GOOD, score=math.nan),
    dict(GOOD, score='0.9'),
    dict(GOOD, score=True),
]


@pytest.mark.parametrize('bad', BAD_DETECTIONS)
def test_results_with_bad_boxes_or_scores(toy, tmp_path, bad):
    """NaN / inf / negative-size / string boxes and NaN / string / bool scores: error_breakdown's check and
    det_compare's reader name the file, and det_compare the entry (before: silently scored, or a traceback)."""
    coco = load_coco(toy['ann_file'])
    detections = [GOOD, GOOD, bad]
    with pytest.raises(ValueError, match=r'bad\.json: a detection without a finite numeric "score" and a "bbox" of 4'):
        check_results(coco, detections, 'bad.json')
    path = str(tmp_path / 'bad.json')
    with open(path, 'w') as f:
        json.dump(detections, f)
    categories = {c['id']: c['name'] for c in coco.dataset['categories']}
    with pytest.raises(ValueError, match=r"--results 'x': entry 2 of .*bad\.json: a detection without a finite"):
        det_compare.read_results(Source('results', 'x', (path, )), [1], categories)


def test_error_breakdown_string_boxes_one_line(toy, tmp_path, monkeypatch):
    """String box coordinates used to end in pycocotools' TypeError traceback."""
    path = str(tmp_path / 'strings.json')
    with open(path, 'w') as f:
        json.dump([dict(GOOD, bbox=['1', '2', '10', '12'])], f)
    monkeypatch.setattr('sys.argv', [
        ERROR_BREAKDOWN, '--work-dir',
        str(tmp_path / 'work'), '--ann-file', toy['ann_file'], '--results', 'x', path, '--no-tide'
    ])
    with pytest.raises(SystemExit) as exit_:
        with contextlib.redirect_stdout(io.StringIO()):
            runpy.run_path(ERROR_BREAKDOWN, run_name='__main__')
    assert str(exit_.value.code).startswith('error_breakdown: --results x: a detection without a finite numeric')


# -------------------------------------------------------------------------------------------- models
@pytest.mark.parametrize('name', ['..', '.', '../x', 'a/b'])
def test_model_names_that_leave_the_work_dir(toy, name):
    """'..' and '.' used to pass: the detections cache WORK/detections/../clean.json lands outside its folder."""
    config, checkpoint = toy['models']['w16']
    with pytest.raises(ValueError, match=f'model name {name!r}: use letters, digits'):
        model_specs([(name, config, checkpoint)])


@pytest.mark.parametrize('name', ['..', '../x'])
def test_error_breakdown_results_names_that_leave_the_work_dir(toy, tmp_path, name, capsys):
    """A --results name was only used, unchecked, in pr_curves_NAME.png once the analysis had run: '../x' then
    ended in 'No such file or directory', '..' wrote pr_curves_...png."""
    error_breakdown = _load_tool('error_breakdown')
    with pytest.raises(SystemExit):
        error_breakdown.parse_args(
            ['--work-dir', str(tmp_path), '--ann-file', toy['ann_file'], '--results', name, 'r.json'])
    assert f"model names [{name!r}]: use letters, digits and - _ . + only (they name files)" in capsys.readouterr().err


def test_checkpoint_of_random_bytes_or_other_weights(toy, tmp_path):
    """An unreadable checkpoint, one whose weights do not fit the config or one that pickles objects off mmkd's
    allow-list: a ValueError (one line from the tools) naming the model and its files; before, a RuntimeError or
    UnpicklingError traceback (the first two speaking of a 'teacher checkpoint')."""
    config, _ = toy['models']['w16']
    junk = str(tmp_path / 'junk.pth')
    with open(junk, 'wb') as f:
        f.write(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(
            ValueError, match=r"model 'm' \(--model m .*w16\.py .*junk\.pth\): checkpoint .* could not be "
            r'read') as error:
        load_detector(ModelSpec('m', config, junk))
    assert 'teacher' not in str(error.value)
    with pytest.raises(
            ValueError,
            match=r"model 'm' \(--model m .*w16\.py .*w32\.pth\): checkpoint .* does not fit "
            r'the model RetinaNet: .* shape mismatches'):
        load_detector(ModelSpec('m', config, toy['models']['w32'][1]))
    untrusted = str(tmp_path / 'untrusted.pth')
    torch.save(dict(state_dict={}, meta=argparse.Namespace(a=1)), untrusted)
    with pytest.raises(ValueError, match=r"model 'm' \(--model .*untrusted\.pth\): mmkd refused to load checkpoint"):
        load_detector(ModelSpec('m', config, untrusted))


def test_robustness_bad_checkpoint_one_line(toy, tmp_path, monkeypatch):
    config, _ = toy['models']['w16']
    junk = str(tmp_path / 'junk.pth')
    with open(junk, 'wb') as f:
        f.write(b'not a checkpoint' * 64)
    monkeypatch.setattr('sys.argv', [ROBUSTNESS, '--model', 'm', config, junk, '--work-dir', str(tmp_path / 'w')])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(ROBUSTNESS, run_name='__main__')
    assert str(exit_.value.code).startswith("robustness: error: model 'm' (--model m ")
    assert 'could not be read' in str(exit_.value.code)


# ------------------------------------------------------------------------------------- broken cache files
def test_detections_cache_of_the_wrong_shape_recomputed(toy, tmp_path):
    """A cache file whose key fits but whose detections are no list used to be returned as the detections."""
    spec = ModelSpec('m', *toy['models']['w16'])
    path = str(tmp_path / 'detections' / 'm' / 'clean.json')
    first = [dict(GOOD)]
    assert cached_detections(spec, path, lambda: first, log=lambda _: None) == first
    with open(path) as f:
        stored = json.load(f)
    stored['detections'] = dict(bad=1)
    with open(path, 'w') as f:
        json.dump(stored, f)
    said = []
    second = [dict(GOOD, score=0.5)]
    assert cached_detections(spec, path, lambda: second, log=said.append) == second
    assert 'holds no list of detections: recomputing' in said[0]
    with open(path, 'w') as f:
        f.write('{"key": {"mod')  # torn
    said.clear()
    assert cached_detections(spec, path, lambda: first, log=said.append) == first
    assert 'is unreadable: recomputing' in said[0]


@pytest.mark.parametrize('content', ['torn', 'grey', 'rgba', 'smaller'])
def test_corrupted_image_cache_file_recomputed(toy, tmp_path, content):
    """A cached corrupted image that is torn or not this image's colour image is recomputed, with a warning; a grey
    (or RGBA) PNG of the right size used to be read, converted, as the corrupted image."""
    image_path = osp.join(toy['data'], 'val', sorted(os.listdir(osp.join(toy['data'], 'val')))[0])
    img = cv2.imread(image_path)
    transform = CorruptImage(corruption='gaussian_noise', severity=3, seed=0, cache_dir=str(tmp_path))
    expected = transform.transform(dict(img=img.copy(), img_path=image_path))['img']
    cached = transform.cache_path(dict(img_path=image_path))
    with open(cached, 'rb') as f:
        png = f.read()
    crafted = dict(
        torn=png[:len(png) // 2],
        grey=cv2.imencode('.png', expected[..., 0])[1].tobytes(),
        rgba=cv2.imencode('.png', cv2.cvtColor(expected, cv2.COLOR_BGR2BGRA))[1].tobytes(),
        smaller=cv2.imencode('.png', expected[:40])[1].tobytes())[content]
    with open(cached, 'wb') as f:
        f.write(crafted)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        out = transform.transform(dict(img=img.copy(), img_path=image_path))['img']
    np.testing.assert_array_equal(out, expected)
    assert any(f'the cached image {cached} is not a uint8 image of shape' in str(w.message) for w in caught)
    with open(cached, 'rb') as f:
        assert f.read() == png  # rewritten


# ------------------------------------------------------------------------ robustness: cells file, SIGKILL
def _robustness_args(toy, work_dir):
    return [
        '--model', 'w16', *toy['models']['w16'], '--model', 'w32', *toy['models']['w32'], '--work-dir', work_dir,
        '--corruptions', 'gaussian_noise', '--severities', '1', '--workers', '0'
    ]


@pytest.fixture(scope='module')
def uninterrupted(toy, tmp_path_factory):
    work_dir = str(tmp_path_factory.mktemp('uninterrupted'))
    return robustness.main(_robustness_args(toy, work_dir), stream=io.StringIO())


def test_cells_file_of_the_wrong_shape_recomputed(toy, uninterrupted, tmp_path):
    """A cells file with the right key but cells that are not COCO numbers used to crash the table (TypeError)."""
    work_dir = str(tmp_path / 'work')
    robustness.main(_robustness_args(toy, work_dir), stream=io.StringIO())
    path = osp.join(work_dir, 'cells', 'w16.json')
    with open(path) as f:
        stored = json.load(f)
    stored['cells']['clean'] = dict(AP='0.5')
    with open(path, 'w') as f:
        json.dump(stored, f)
    log = io.StringIO()
    assert robustness.main(_robustness_args(toy, work_dir), stream=log) == uninterrupted
    assert f'[w16] {path} holds cells without their COCO numbers: they are recomputed' in log.getvalue()


def test_killed_while_saving_a_cell_resumes(toy, uninterrupted, tmp_path):
    """SIGKILL inside the atomic write of w32's last cell (its temporary file written, not yet renamed): the cells
    file keeps the clean cell, and the rerun computes that one cell only and gives the uninterrupted JSON."""
    work_dir = str(tmp_path / 'work')
    script = textwrap.dedent(f"""
        import importlib.util, os, signal
        spec = importlib.util.spec_from_file_location('robustness_tool', {ROBUSTNESS!r})
        tool = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(tool)
        real, writes = os.replace, []
        def replace(src, dst):
            if dst.endswith(os.path.join('cells', 'w32.json')):
                writes.append(dst)
                if len(writes) == 2:
                    os.kill(os.getpid(), signal.SIGKILL)
            return real(src, dst)
        os.replace = replace
        tool.main({_robustness_args(toy, work_dir)!r})
        """)
    proc = subprocess.run([PYTHON, '-c', script], capture_output=True, text=True, env=tool_env(), cwd=ROOT, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    cells = osp.join(work_dir, 'cells')
    assert any(f.endswith('.tmp') for f in os.listdir(cells))  # the write the kill interrupted
    with open(osp.join(cells, 'w32.json')) as f:
        assert list(json.load(f)['cells']) == ['clean']

    calls = []
    real = robustness.evaluate_cell
    robustness.evaluate_cell = lambda *a: calls.append(a[2]) or real(*a)
    try:
        log = io.StringIO()
        record = robustness.main(_robustness_args(toy, work_dir), stream=log)
    finally:
        robustness.evaluate_cell = real
    assert len(calls) == 1 and calls[0][0]['corruption'] == 'gaussian_noise'
    assert record == uninterrupted
    assert not any(f.endswith('.tmp') for f in os.listdir(cells))


# ------------------------------------------------------------------------------------- odd test sets
@pytest.mark.parametrize('emptied, message', [
    ('images', r"ann_file '.*no_images\.json'\) has no images"),
    ('categories', r"ann_file '.*no_categories\.json'\): its annotation file has categories for 0 of the 5 classes"),
])
def test_annotation_file_without_images_or_categories(toy, tmp_path, monkeypatch, emptied, message):
    """No images: mmengine's 'need at least one array to concatenate'; no categories: every tool ran on, with every
    prediction unmatched (robustness: AP 0 everywhere, det_compare: every box red)."""
    with open(toy['ann_file']) as f:
        annotations = json.load(f)
    annotations[emptied] = []
    path = str(tmp_path / f'no_{emptied}.json')
    with open(path, 'w') as f:
        json.dump(annotations, f)
    with pytest.raises(ValueError, match=message):
        robustness.main([*_robustness_args(toy, str(tmp_path / 'work')), '--ann-file', path], stream=io.StringIO())
    with pytest.raises(ValueError, match=message):
        det_compare.main(
            ['--model', 'w16', *toy['models']['w16'], '--ann-file', path, '--out-dir',
             str(tmp_path / 'out')],
            stream=io.StringIO())


def test_error_breakdown_more_images_than_the_set(toy, tmp_path):
    """--num-images beyond the test set used to end in an IndexError traceback; it now takes the whole set, as
    robustness.py does."""
    error_breakdown = _load_tool('error_breakdown')
    with contextlib.redirect_stdout(io.StringIO()):
        record = error_breakdown.main(
            ['--work-dir',
             str(tmp_path), '--model', 'w16', *toy['models']['w16'], '--num-images', '10', '--no-tide'],
            stream=io.StringIO())
    with open(osp.join(tmp_path, 'detections', 'w16', 'clean.json')) as f:
        assert sorted({d['image_id'] for d in json.load(f)['detections']}) == [1, 2, 3]
    assert record['num_images'] == 3
