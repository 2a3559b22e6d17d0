"""bench/bench_s2sd.py end to end in a subprocess in its smoke mode (--quick: 8-wide ResNet-18, batch 8 of 32x32,
one round): the output's structure, and that both models and both heads really trained; not timings."""
import importlib
import json
import math
import os.path as osp
import subprocess

import pytest

from ..conftest import PYTHON, ROOT, tool_env

TARGET_DIMS = (512, 1024, 1536, 2048)
MODES = ('baseline step', 'S2SD step', 'baseline head', 'S2SD head')


def test_bench_s2sd_tiny(tmp_path):
    out = str(tmp_path / 's2sd.json')
    proc = subprocess.run([PYTHON, osp.join(ROOT, 'bench', 'bench_s2sd.py'), '--quick', '--out', out],
                          cwd=ROOT,
                          env=tool_env(),
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith('== ') and '0 warm-up round(s), 1 timed rounds' in lines[0]
    assert any(
        line.startswith('== ResNet-18 (base channels 8, BN frozen), 128-d') and 'batch 8 x 32x32' in line
        for line in lines), proc.stdout
    for clock in ('wall clock', 'process CPU time'):  # CPU time: on the CPU only
        assert f'| {clock} | median [min-max] | S2SD / baseline: medians | per round: median [min-max] |' in lines
    rows = [line for line in lines if line.startswith('| (b) S2SD MSDFA step | ')]
    assert len(rows) == 2 and all('x** | ' in row for row in rows), proc.stdout
    assert any(line.startswith('peak memory of a step: baseline ') for line in lines), proc.stdout
    # a smoke run reports its ratio without reading it against the target
    assert lines[-1].startswith('result (smoke run, --quick: not comparable with the 1.15x target') and (
        'S2SD / baseline step ' in lines[-1] and 'met' not in lines[-1]), lines[-1]

    result = json.load(open(out))
    setting = result['setting']
    assert setting['backbone'] == 'ResNet-18' and setting['target_dims'] == list(TARGET_DIMS)
    assert (setting['batch_size'], setting['image_size'], setting['embed_dim']) == (8, 32, 128)
    channels = 8 * 8  # ResNet-18's last stage: 8 x the base channels
    assert setting['feature_shape'] == [8, channels, 1, 1]
    # S2SD adds exactly the four target branches (Linear(C, t) - ReLU - Linear(t, t)) and their criteria's betas
    branches = sum(channels * t + t + t * t + t for t in TARGET_DIMS)
    assert result['parameters']['S2SD'] - result['parameters']['baseline'] == branches + len(TARGET_DIMS)

    # every mode trained: the baseline's margin loss, S2SD's four terms summing to its loss, in the step and the head
    first = result['first_iteration']
    assert set(first) == set(MODES)
    for mode in ('baseline step', 'baseline head'):
        assert set(first[mode]) == {'loss', 'loss_metric'} and first[mode]['loss'] > 0
    for mode in ('S2SD step', 'S2SD head'):
        logs = first[mode]
        assert set(logs) == {'loss', 'loss_base', 'loss_target', 'loss_distill', 'loss_feat_distill'}
        assert math.isclose(logs['loss'], sum(v for k, v in logs.items() if k != 'loss'), rel_tol=1e-5)
        assert all(v > 0 for v in logs.values())
    # the head runs the S2SD model's own loss on the step's features: the KL terms (no sampling in them) agree
    for term in ('loss_distill', 'loss_feat_distill'):
        assert math.isclose(first['S2SD head'][term], first['S2SD step'][term], rel_tol=1e-4)

    assert set(result['timing']) == {'wall', 'cpu'}
    for timing in result['timing'].values():
        times = timing['times_ms']
        assert set(times) == set(MODES) and all(len(t) == 1 and t[0] > 0 for t in times.values())
        assert math.isclose(timing['ratio'], times['S2SD step'][0] / times['baseline step'][0])
        assert math.isclose(timing['per_round_ratio']['median'], timing['ratio'])
        added = times['S2SD head'][0] - times['baseline head'][0]
        assert math.isclose(timing['head_added_ms']['median'], added)
        assert math.isclose(timing['head_added_fraction'], added / times['baseline step'][0])
    memory = result['peak_memory_bytes']
    assert set(memory) == {'baseline step', 'S2SD step'} and min(memory.values()) >= 0


def _result(ratio: float, quick: bool) -> dict:
    """What ``run`` returns, with a wall-clock S2SD / baseline step ratio of ``ratio`` (baseline step 100 ms, heads
    10 and 20 ms)."""
    times = {'baseline step': [100.0], 'S2SD step': [100.0 * ratio], 'baseline head': [10.0], 'S2SD head': [20.0]}
    stats = {mode: dict(median=t[0], min=t[0], max=t[0]) for mode, t in times.items()}
    return dict(
        setting=dict(
            backbone='ResNet-50',
            base_channels=64,
            embed_dim=128,
            target_dims=list(TARGET_DIMS),
            batch_size=112,
            image_size=224,
            feature_shape=[112, 2048, 7, 7],
            amp=False,
            quick=quick),
        parameters={
            'baseline': 1,
            'S2SD': 2
        },
        first_iteration={},
        timing={
            'wall':
            dict(
                times_ms=times,
                ms=stats,
                ratio=ratio,
                per_round_ratio=dict(median=ratio, min=ratio, max=ratio),
                head_added_ms=dict(median=10.0, min=10.0, max=10.0),
                head_added_fraction=0.1)
        },
        peak_memory_bytes={})


@pytest.mark.parametrize('ratio, quick, expected', [
    (1.1, False, 'result: S2SD / baseline step 1.100x wall, head adds 10.0 ms = +0.100 of the baseline step; '
     'target S2SD / baseline step <= 1.15x: met'),
    (1.2, False, 'result: S2SD / baseline step 1.200x wall, head adds 10.0 ms = +0.100 of the baseline step; '
     'target S2SD / baseline step <= 1.15x: missed'),
    (4.93, True, 'result (smoke run, --quick: not comparable with the 1.15x target, the tiny backbone makes the target '
     'branches dominate the step): S2SD / baseline step 4.930x wall, head adds 10.0 ms = +0.100 of the baseline step'),
])
def test_result_line_reads_the_target_outside_smoke_runs(ratio, quick, expected, monkeypatch, capsys):
    monkeypatch.syspath_prepend(osp.join(ROOT, 'bench'))
    bench = importlib.import_module('bench_s2sd')
    assert bench.report(_result(ratio, quick)) == expected
    assert capsys.readouterr().out.splitlines()[-1] == expected
