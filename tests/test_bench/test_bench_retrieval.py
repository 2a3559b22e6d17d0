"""bench/bench_retrieval.py end to end in its smoke mode (--quick), in a subprocess: the output's structure and the
numbers' agreement, not timings."""
import json
import math
import os.path as osp
import subprocess

from ..conftest import PYTHON, ROOT, tool_env


def test_bench_retrieval_quick(tmp_path):
    out = str(tmp_path / 'retrieval.json')
    proc = subprocess.run([PYTHON, osp.join(ROOT, 'bench', 'bench_retrieval.py'), '--quick', '--out', out],
                          cwd=ROOT,
                          env=tool_env(),
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith('== ') and 'torch ' in lines[0]
    assert '== 1500 x 32 embeddings, 300 classes, noise 0.2, seed 0; 1 timed run(s) per side' in lines
    assert any(line.startswith('| R@1/2/4/8 + mAP@R | ') and line.endswith('x** |') for line in lines), proc.stdout
    assert any(line.startswith('| NMI | ') for line in lines), proc.stdout
    assert lines[-1].startswith('result: R@K + mAP@R wall time mmkd / pml ') and lines[-1].endswith(
        'numbers equal to within 1e-06'), lines[-1]

    result = json.load(open(out))
    assert result['args']['num_samples'] == 1500 and result['args']['quick']
    mine, theirs = result['retrieval']['mmkd']['result'], result['retrieval']['pml']['result']
    assert set(mine) == {'R@1', 'R@2', 'R@4', 'R@8', 'mAP@R'}
    assert 0.2 < mine['R@1'] < 0.9  # the synthetic data is not trivial
    assert mine['R@1'] <= mine['R@2'] <= mine['R@4'] <= mine['R@8']
    assert math.isclose(mine['R@1'], theirs['precision_at_1'], abs_tol=1e-6)
    assert math.isclose(mine['mAP@R'], theirs['mean_average_precision_at_r'], abs_tol=1e-6)
    for part in ('retrieval', 'nmi'):
        for side in ('mmkd', 'pml'):
            timing = result[part][side]
            assert len(timing['wall_s']) == 1 and timing['wall_s'][0] > 0 and timing['peak_bytes'] >= 0
    nmi = result['nmi']
    assert 0.5 < nmi['mmkd']['result']['NMI'] < 1 and 0.5 < nmi['pml']['result']['NMI'] < 1
