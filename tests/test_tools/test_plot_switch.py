"""tools/analysis/plot_switch.py on scalars files written by mmengine's own LocalVisBackend: a CoLAD run (two
trained networks, prefixed losses) and a LAD-with-switch run (teacher / student, the student's losses
unprefixed); the PNG, the discovered names and values, the smoothing, and the error messages."""
import importlib.util
import json
import math
import os.path as osp
import struct
import subprocess

import numpy as np
import pytest
from mmengine.visualization import LocalVisBackend
from PIL import Image

from ..conftest import PYTHON, TOOLS, tool_env

SCRIPT = osp.join(TOOLS, 'analysis', 'plot_switch.py')
_spec = importlib.util.spec_from_file_location('plot_switch', SCRIPT)
plot_switch = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plot_switch)

STEPS = [50, 100, 150, 200, 250, 300]
# per logged step: share of the labels that r101 assigned (r50 assigned the rest)
R101_SHARE = [1.0, 0.9, 0.75, 0.5, 0.4, 0.3]


def _png_size(path: str) -> tuple:
    """(width, height) from the PNG signature and IHDR chunk, read independently of matplotlib."""
    with open(path, 'rb') as f:
        head = f.read(24)
    assert head[:8] == b'\x89PNG\r\n\x1a\n', f'{path} is not a PNG'
    assert head[12:16] == b'IHDR'
    return struct.unpack('>II', head[16:24])


def _write_run(work_dir: str, timestamp: str, train_tags: list, val_tags: tuple = ()) -> str:
    """A run folder as a Runner lays it out, its scalars written by LocalVisBackend (train lines at
    ``step`` = iteration, a validation line at ``step`` = epoch)."""
    run = osp.join(work_dir, timestamp)
    backend = LocalVisBackend(save_dir=osp.join(run, 'vis_data'))
    for step, tag in zip(STEPS, train_tags):
        backend.add_scalars(dict(tag, iter=step, epoch=1, lr=0.01, time=0.5, data_time=0.1), step=step)
    for epoch, tag in enumerate(val_tags, start=1):
        backend.add_scalars(tag, step=epoch)
    return run


def _colad_tags() -> list:
    tags = []
    for i, share in enumerate(R101_SHARE):
        tag = {'switch.share.r101': share, 'switch.share.r50': 1.0 - share}
        tag.update({'switch.rho.r101': 0.5 - 0.01 * i, 'switch.rho.r50': 0.4 + 0.01 * i})
        for name, scale in (('r101', 1.0), ('r50', 1.2)):
            parts = dict(loss_cls=scale * (1.0 - 0.1 * i), loss_bbox=scale * 0.5, loss_iou=scale * 0.6)
            tag.update({f'{name}.{key}': value for key, value in parts.items()})
            tag[f'{name}.loss'] = sum(parts.values())
        tags.append(tag)
    return tags


def _lad_tags() -> list:
    return [{
        'switch.share.teacher': 1.0 - 0.1 * i,
        'switch.share.student': 0.1 * i,
        'switch.rho.teacher': 0.45,
        'switch.rho.student': 0.3 + 0.03 * i,
        'loss': 2.0 - 0.1 * i,
        'loss_cls': 1.0 - 0.1 * i,
        'loss_bbox': 0.5,
        'loss_iou': 0.5,
    } for i in range(len(STEPS))]


@pytest.fixture
def colad_work_dir(tmp_path):
    work_dir = str(tmp_path / 'colad')
    # an older run with other names: the work dir stands for its latest run
    _write_run(work_dir, '20260101_000000', [{'switch.share.old': 1.0, 'switch.rho.old': 1.0}] * 2)
    _write_run(work_dir, '20260102_000000', _colad_tags(), val_tags=[{'coco/bbox_mAP': 0.1, 'time': 0.2}])
    return work_dir


def test_colad_history_from_work_dir(colad_work_dir, tmp_path, capsys):
    out = str(tmp_path / 'plots' / 'switch.png')
    assert plot_switch.main([colad_work_dir, '-o', out]) == 0
    assert capsys.readouterr().out.strip() == out
    assert _png_size(out) == (1000, 900)  # 10 x 9 inches at 100 dpi
    with Image.open(out) as image:
        image.verify()
    with Image.open(out) as image:
        assert len(image.convert('RGB').getcolors(1 << 20)) > 20, 'the figure is blank'


def test_names_values_and_steps_are_discovered(colad_work_dir):
    path = plot_switch.find_scalars_file(colad_work_dir)
    assert path == osp.join(colad_work_dir, '20260102_000000', 'vis_data', 'scalars.json')
    history = plot_switch.switch_history(plot_switch.read_scalars(path), path)
    assert history.networks == ['r101', 'r50']
    # the validation line (step = epoch 1, no switch keys) is not a training step
    np.testing.assert_array_equal(history.steps, STEPS)
    np.testing.assert_allclose(history.share['r101'], R101_SHARE)
    np.testing.assert_allclose(history.share['r50'], [1.0 - s for s in R101_SHARE])
    np.testing.assert_allclose(history.rho['r50'], [0.4 + 0.01 * i for i in range(6)])
    assert set(history.losses) == {'r101', 'r50'}
    assert set(history.losses['r50']) == {'loss', 'loss_cls', 'loss_bbox', 'loss_iou'}
    np.testing.assert_allclose(history.losses['r50']['loss'], [1.2 * (2.1 - 0.1 * i) for i in range(6)])


def test_lad_with_switch_run_folder(tmp_path, capsys):
    run = _write_run(str(tmp_path / 'lad'), '20260103_000000', _lad_tags())
    path = plot_switch.find_scalars_file(run)
    history = plot_switch.switch_history(plot_switch.read_scalars(path), path)
    assert history.networks == ['teacher', 'student']
    # the frozen teacher has no losses; the unprefixed ones are the student's
    assert list(history.losses) == ['student']
    np.testing.assert_allclose(history.losses['student']['loss_cls'], [1.0 - 0.1 * i for i in range(6)])

    out = str(tmp_path / 'lad.png')
    assert plot_switch.main([run, '-o', out, '--smooth', '3', '--all-losses', '--dpi', '50']) == 0
    assert _png_size(out) == (500, 450)


def test_smooth_is_a_trailing_mean_that_skips_missing_values():
    values = np.array([1.0, 2.0, math.nan, 4.0, 5.0, 9.0])
    # windows of 3 slots: (1), (1, 2), (1, 2, -), (2, -, 4), (-, 4, 5), (4, 5, 9)
    expected = [1.0, 1.5, 1.5, 3.0, 4.5, 6.0]
    np.testing.assert_allclose(plot_switch.smooth(values, 3), expected)
    np.testing.assert_array_equal(plot_switch.smooth(values, 1), values)


def test_cli_writes_the_png_and_prints_its_path(colad_work_dir, tmp_path):
    json_path = osp.join(colad_work_dir, '20260102_000000', 'vis_data', 'scalars.json')
    out = str(tmp_path / 'cli.png')
    env = tool_env()
    env.pop('MPLBACKEND', None)
    env.pop('DISPLAY', None)
    result = subprocess.run([PYTHON, SCRIPT, json_path, '-o', out, '--smooth', '2'],
                            env=env,
                            capture_output=True,
                            text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == out
    assert _png_size(out) == (1000, 900)


def _error(capsys, argv) -> str:
    assert plot_switch.main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ''
    return captured.err


def test_missing_path(tmp_path, capsys):
    missing = str(tmp_path / 'nowhere')
    err = _error(capsys, [missing, '-o', str(tmp_path / 'x.png')])
    assert f'{missing}: no such file or folder' in err
    empty = tmp_path / 'empty_work_dir'
    empty.mkdir()
    err = _error(capsys, [str(empty), '-o', str(tmp_path / 'x.png')])
    assert 'found no vis_data/scalars.json' in err
    assert not (tmp_path / 'x.png').exists()


def test_run_without_switch_keys(tmp_path, capsys):
    run = _write_run(str(tmp_path / 'plain'), '20260104_000000', [{'loss': 1.0, 'loss_cls': 0.5}] * 3)
    err = _error(capsys, [run, '-o', str(tmp_path / 'x.png')])
    assert 'this run has no switch history' in err and 'was it a CoLAD / LAD-with-switch run?' in err


MALFORMED = [
    ('{"switch.rho.a": 0.1, "step": ', 'not valid JSON'),
    ('[1, 2, 3]', 'expected a JSON object of scalars, got list'),
    ('{"switch.rho.a": "high", "switch.share.a": 1, "step": 3}', "'switch.rho.a' should be a number, got 'high'"),
    ('{"switch.rho.a": 0.1, "switch.share.a": 1}', "a record with switch keys has no numeric 'step'"),
]


@pytest.mark.parametrize('bad, what', MALFORMED)
def test_malformed_line_is_named(tmp_path, capsys, bad, what):
    path = tmp_path / 'scalars.json'
    good = json.dumps({'switch.rho.a': 0.2, 'switch.share.a': 1.0, 'step': 1})
    path.write_text(f'{good}\n\n{bad}\n{good}\n')
    err = _error(capsys, [str(path), '-o', str(tmp_path / 'x.png')])
    assert f'{path}, line 3: {what}' in err
