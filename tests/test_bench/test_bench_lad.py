"""bench/bench_lad.py end to end in its smoke mode (--quick), in a subprocess."""
import json
import os.path as osp
import subprocess

from ..conftest import PYTHON, ROOT, tool_env


def test_bench_lad_quick(tmp_path):
    out = str(tmp_path / 'lad.json')
    proc = subprocess.run([PYTHON, osp.join(ROOT, 'bench', 'bench_lad.py'), '--quick', '--out', out],
                          cwd=ROOT,
                          env=tool_env(),
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert any(line.startswith('| costs | sklearn crashes | mmkd crashes | agreement |') for line in lines)
    for name in ('fresh', 'trained-like'):
        row = next(line for line in lines if line.startswith(f'| {name} |'))
        assert ' ms |' in row and 'x |' in row, row
    assert any(line.startswith('| median [min-max] |') for line in lines), proc.stdout
    assert lines[-1].startswith('result: fresh: GMM step ') and 'agreement' in lines[-1]

    result = json.load(open(out))
    for run in result['assignment']:
        assert run['mmkd_crashes'] == 0
        # the quick batch is one where mmdet's scikit-learn fits succeed: both sides give the same positives
        assert run['sklearn_crashes'] == 0 and run['compared_images'] == 2
        assert run['positives_mmdet'] > 0 and run['positives_mmkd'] == run['positives_mmdet']
        assert run['agreement'] == 1.0 and run['identical_images'] == 1.0
        assert run['whole_assignment_identical'] is True
        assert set(run['median_ms']) == {
            'mmdet GMM step', 'mmkd GMM step', 'mmkd GMM step, whole batch', 'mmdet assignment', 'mmkd assignment',
            'mmkd assignment, whole batch'
        }
    training = result['training']
    assert training['crashed_seeds'] == [] and set(training['median_ms']) == {'mmdet', 'mmkd'}
    # the same weights and batch give mmdet's LAD losses
    assert set(training['relative_loss_difference']) == {'loss_cls', 'loss_bbox', 'loss_iou'}
    assert max(training['relative_loss_difference'].values()) < 1e-5
