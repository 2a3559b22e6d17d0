"""bench/bench_seg_dakd.py end to end in a subprocess in its smoke mode (--quick: the toy DeepLabV3+ pair, 64x128,
one round): the output's structure, the record's ratio, and that every mode trained what it should; not timings."""
import importlib
import json
import math
import os.path as osp
import subprocess

import pytest

from ..conftest import PYTHON, ROOT, tool_env

MODES = ('adaptation step', 'teacher forward', 'distillation step', 'distillation terms')
TERMS = ('kl', 'mse', 'ce')


def test_bench_seg_dakd_tiny(tmp_path):
    out = str(tmp_path / 'seg_dakd.json')
    proc = subprocess.run([PYTHON, osp.join(ROOT, 'bench', 'bench_seg_dakd.py'), '--quick', '--out', out],
                          cwd=ROOT,
                          env=tool_env(),
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith('== ') and '0 warm-up round(s), 1 timed rounds' in lines[0]
    for clock in ('wall clock', 'process CPU time'):  # CPU time: on the CPU only
        assert f'| {clock} | median [min-max] | / baseline |' in lines
    rows = [line for line in lines if line.startswith('| (c) distillation step | ')]
    assert len(rows) == 2 and all('x** (per round ' in row for row in rows), proc.stdout
    assert any(line.startswith('peak memory: adaptation step ') for line in lines), proc.stdout
    assert lines[-1].startswith(
        'result (smoke run, --quick: toy networks at 64x128, not comparable with the 1.1x '
        'target): distillation / (adaptation step + teacher forward) ') and 'met' not in lines[-1]

    result = json.load(open(out))
    setting = result['setting']
    assert setting['size'] == [64, 128] and setting['batch_size'] == 2 and setting['num_classes'] == 7
    assert setting['student_logits']['decode_head'] == [2, 7, 16, 32]  # output stride 4 of DeepLabV3+'s decoder
    assert set(result['parameters']) == {'teacher', 'student', 'discriminator'}
    assert result['parameters']['teacher'] > result['parameters']['student'] > 0

    first = result['first_iteration']
    assert set(first) == set(MODES)
    assert first['teacher forward'] == {}
    # the same student and discriminators: the adaptation step's adversarial and discriminator terms, the
    # distillation step's the same plus the distillation terms on both domains (paradigm (c))
    adapt, distill = first['adaptation step'], first['distillation step']
    extra = {f'student.{d}.decode.loss_{t}' for d in ('source', 'target') for t in TERMS}
    assert set(distill) == set(adapt) | extra
    for key in ('student.decode.loss_adv', 'student.aux.loss_adv', 'discriminator.decode.loss_source',
                'discriminator.aux.loss_target'):
        assert math.isclose(adapt[key], distill[key], rel_tol=0.05), key
    assert all(distill[key] > 0 for key in extra)
    assert set(first['distillation terms']) == {f'{d}.decode.loss_{t}' for d in ('source', 'target') for t in TERMS}

    assert set(result['timing']) == {'wall', 'cpu'}
    for timing in result['timing'].values():
        ms = timing['ms']
        assert all(len(timing['times_ms'][mode]) == 1 and ms[mode]['median'] > 0 for mode in MODES)
        baseline = ms['adaptation step']['median'] + ms['teacher forward']['median']
        assert timing['ratio'] == pytest.approx(ms['distillation step']['median'] / baseline)
        assert timing['terms_share'] == pytest.approx(ms['distillation terms']['median'] /
                                                      ms['distillation step']['median'])
    assert set(result['peak_memory_bytes']) == {'adaptation step', 'teacher forward', 'distillation step'}
    assert result['args']['quick'] is True and result['args']['rounds'] == 1


def _result(ratio: float, quick: bool) -> dict:
    stat = dict(median=100.0, min=100.0, max=100.0)
    return dict(
        setting=dict(
            teacher='t.py',
            student='s.py',
            teacher_backbone='ResNetV1c-101',
            student_backbone='ResNetV1c-18',
            num_classes=19,
            batch_size=2,
            size=[512, 1024],
            discriminator=dict(base_channels=64, num_convs=5),
            distill_losses=dict(kl=0.1, mse=0.01, ce=1.0),
            student_logits=dict(decode_head=[2, 19, 128, 256]),
            amp=False,
            quick=quick),
        parameters={'teacher': 1},
        first_iteration={},
        timing=dict(
            wall=dict(
                ms={mode: stat
                    for mode in (*MODES, 'baseline')},
                ratio=ratio,
                per_round_ratio=dict(median=ratio, min=ratio, max=ratio),
                terms_share=0.02,
                rest_ms=1.0)),
        peak_memory_bytes={})


@pytest.mark.parametrize('ratio, quick, expected', [
    (1.05, False, 'result: distillation / (adaptation step + teacher forward) 1.050x wall, distillation terms 0.020 '
     'of the distillation step; target <= 1.1x: met'),
    (1.15, False, 'result: distillation / (adaptation step + teacher forward) 1.150x wall, distillation terms 0.020 '
     'of the distillation step; target <= 1.1x: missed'),
    (0.9, True, 'result (smoke run, --quick: toy networks at 64x128, not comparable with the 1.1x target): '
     'distillation / (adaptation step + teacher forward) 0.900x wall, distillation terms 0.020 of the distillation '
     'step'),
])
def test_result_line_reads_the_target_outside_smoke_runs(ratio, quick, expected, monkeypatch, capsys):
    monkeypatch.syspath_prepend(osp.join(ROOT, 'bench'))
    bench = importlib.import_module('bench_seg_dakd')
    assert bench.report(_result(ratio, quick)) == expected
    assert capsys.readouterr().out.splitlines()[-1] == expected
