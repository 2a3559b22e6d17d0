"""bench/bench_colad.py end to end in its smoke mode (--quick), in a subprocess: the output's structure, not timings."""
import json
import math
import os.path as osp
import subprocess

from ..conftest import PYTHON, ROOT, tool_env

CRITERIA = ('std/mean gt_level', 'Fisher gt')


def test_bench_colad_quick(tmp_path):
    out = str(tmp_path / 'colad.json')
    proc = subprocess.run([PYTHON, osp.join(ROOT, 'bench', 'bench_colad.py'), '--quick', '--out', out],
                          cwd=ROOT,
                          env=tool_env(),
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    for clock in ('wall clock', 'process CPU time'):  # CPU time: on the CPU only
        for table in ('training step', 'assignment (no_grad)'):
            assert any(line.startswith(f'| {table}, {clock} | median [min-max] |') for line in lines), proc.stdout
    assert any(line.startswith('| (a) w32 + w16 own steps | ') for line in lines), proc.stdout
    for criterion in CRITERIA:
        for prefix in (f'| (b) CoLAD, {criterion} |', f'| (c) switched_label_assignment, {criterion} |'):
            rows = [line for line in lines if line.startswith(prefix)]
            assert len(rows) == 2, proc.stdout  # wall clock and CPU time
            assert all(' ms [' in row and 'x** | ' in row and row.endswith('] |') for row in rows), rows
    assert lines[-1].startswith(
        'result: toy: CoLAD step / own steps (target <= 1.1): wall std/mean gt_level '), lines[-1]

    result = json.load(open(out))
    run, = result['settings']
    assert run['setting'] == 'toy' and run['networks'] == ['w32', 'w16']
    assert (run['images'], run['gts_per_image'], run['size']) == (2, 3, [128, 128])

    own_steps = ['w32 own step', 'w16 own step']
    modes = own_steps + [f'CoLAD {c}' for c in CRITERIA]
    own_assignments = ['w32 own assignment', 'w16 own assignment']
    assert set(run['training']) == set(run['assignment']) - {'positives', 'shares'} == {'wall', 'cpu'}
    for part, total, compared in (('training', 'reference (a)', [f'CoLAD {c}' for c in CRITERIA]),
                                  ('assignment', 'two own assignments', [f'switched {c}' for c in CRITERIA])):
        parts = own_steps if part == 'training' else own_assignments
        for clock in ('wall', 'cpu'):
            timing = run[part][clock]
            assert set(timing['times_ms']) == {*parts, *compared, total}
            assert all(len(times) == 1 for times in timing['times_ms'].values())  # --quick: one timed round
            assert all(times[0] > 0 for times in timing['times_ms'].values())
            # the reference is the sum of its parts in the same round
            assert math.isclose(timing['times_ms'][total][0], sum(timing['times_ms'][p][0] for p in parts))
            for criterion, mode in zip(CRITERIA, compared):
                ratio = timing['ratio'][criterion]
                assert math.isfinite(ratio) and ratio > 0
                assert math.isclose(ratio, timing['ms'][mode]['median'] / timing['ms'][total]['median'])
                # one round: the per-round ratio is the ratio of the medians
                assert math.isclose(timing['per_round_ratio'][criterion]['median'], ratio)

    # every mode trained from the same initial weights on the same batch: finite losses, CoLAD's for both networks
    first = run['first_iteration']
    assert set(first) == set(modes)
    for mode in own_steps:
        assert {'loss', 'loss_cls', 'loss_bbox', 'loss_iou'} <= set(first[mode])
    for criterion in CRITERIA:
        logs = first[f'CoLAD {criterion}']
        for network in ('w32', 'w16'):
            assert f'{network}.loss' in logs and f'{network}.loss_bbox' in logs
        assert math.isclose(logs['switch.share.w32'] + logs['switch.share.w16'], 1.0, abs_tol=1e-6)
    assert all(math.isfinite(v) for logs in first.values() for v in logs.values())

    assignment = run['assignment']
    for criterion in CRITERIA:
        shares = assignment['shares'][criterion]
        assert set(shares) == {'w32', 'w16'} and math.isclose(sum(shares.values()), 1.0, abs_tol=1e-6)
    # the assignments on the initial weights have positives (the quick batch's GT boxes overlap anchors)
    assert set(assignment['positives']) == {'w32 own', 'w16 own', *(f'switched {c}' for c in CRITERIA)}
    assert min(assignment['positives'].values()) > 0
