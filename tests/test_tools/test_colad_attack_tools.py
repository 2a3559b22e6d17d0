"""Attacks on CoLAD through the tools: two-process training of the toy pair (batch switch, no wrapper in the config),
--amp with one AMP wrapper per network, tools/test.py on the other network, --resume after reordering the networks;
--amp on the toy LAD-with-switch config."""
import json
import os.path as osp
import pickle
import socket
import subprocess
import textwrap

import pytest
import torch

from ..conftest import CONFIGS, PYTHON, ROOT, TOOLS, tool_env
from .test_train_colad import CONFIG, colad_options
from .test_train_tools import _options, _run

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU paths (gloo, bfloat16 --amp)')


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _test_options(toy_root):
    return [
        '--cfg-options', 'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
        f'test_dataloader.dataset.data_root={toy_root}/', f'test_evaluator.ann_file={toy_root}/annotations/'
        'instances_val.json'
    ]


@pytest.mark.parametrize('granularity', ['batch', 'gt_level'])
def test_dist_train_takes_the_same_batch_switch_on_both_ranks(toy_root, tmp_path, granularity):
    """Was: the toy config trained with mmengine's one DDP for the whole pair and failed at the first step; with
    MMSeparateDistributedDataParallel, DDP refused device_ids on the CPU, then CoLAD could not reach the wrapped
    networks' heads (and bypassed their DDP forward, which synchronises the gradients)."""
    hook = tmp_path / 'rank_switch.py'
    hook.write_text(
        textwrap.dedent('''
        import json
        import torch
        from mmengine.dist import get_rank
        from mmengine.hooks import Hook
        from mmengine.registry import HOOKS

        @HOOKS.register_module()
        class RankSwitchHook(Hook):
            def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
                row = {k: float(v) for k, v in outputs.items() if k.startswith('switch.')}
                with open(f'{runner.work_dir}/switch{get_rank()}.jsonl', 'a') as f:
                    f.write(json.dumps(row) + '\\n')

            def after_run(self, runner):
                model = runner.model.module if hasattr(runner.model, 'module') else runner.model
                torch.save({k: v.detach() for k, v in model.state_dict().items()},
                           f'{runner.work_dir}/rank{get_rank()}.pth')
    '''))
    cfg = tmp_path / 'dist_colad.py'
    cfg.write_text(f"_base_ = [{CONFIG!r}]\ncustom_imports = dict(imports=['mmkd', 'rank_switch'])\n"
                   "custom_hooks = [dict(type='RankSwitchHook')]\n"
                   f"model = dict(switch=dict(type='StdMeanCriterion', granularity='{granularity}'))\n")
    env = tool_env()
    env['PYTHONPATH'] = f'{tmp_path}:{env["PYTHONPATH"]}'
    env['PORT'] = str(_free_port())
    work = tmp_path / 'w'
    proc = subprocess.run(
        ['bash', osp.join(TOOLS, 'dist_train.sh'),
         str(cfg), '2', '--work-dir', str(work)] + colad_options(toy_root, 1),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rank0, rank1 = ([json.loads(line) for line in open(work / f'switch{rank}.jsonl')] for rank in (0, 1))
    assert len(rank0) == len(rank1) == 2  # 16 images, 2 ranks x 4 per batch
    if granularity == 'batch':
        for a, b in zip(rank0, rank1):
            assert a == b  # the same rho (the statistics all-reduced) and the same teacher on both ranks
            assert {a['switch.share.w32'], a['switch.share.w16']} == {0.0, 1.0}
    # each rank trained on its own half of the data: the gradients were synchronised by each network's DDP
    weights0, weights1 = torch.load(work / 'rank0.pth'), torch.load(work / 'rank1.pth')
    trained = [k for k in weights0 if 'atss_cls' in k]
    assert trained and all(torch.equal(weights0[k], weights1[k]) for k in trained), trained
    # the switch's state is the same on every rank (units summed over the ranks), so that a resume from rank 0's
    # checkpoint continues every rank's
    assert torch.equal(weights0['switch_units'], weights1['switch_units']) and int(weights0['switch_units'].sum()) > 0


@pytest.fixture(scope='module')
def amp_trained(toy_root, tmp_path_factory):
    work = tmp_path_factory.mktemp('colad_amp')
    _run([PYTHON, osp.join(TOOLS, 'train.py'), CONFIG, '--amp', '--work-dir',
          str(work / 'run')] + colad_options(toy_root, 1), work)
    return work


def test_amp_gives_each_network_its_own_amp_wrapper(amp_trained):
    checkpoint = torch.load(amp_trained / 'run' / 'epoch_1.pth', weights_only=False)
    assert set(checkpoint['optimizer']) == {'w32', 'w16'}
    for name in ('w32', 'w16'):
        assert 'loss_scaler' in checkpoint['optimizer'][name], name
    scalars = [json.loads(line) for line in open(next((amp_trained / 'run').glob('*/vis_data/scalars.json')))]
    train = [s for s in scalars if 'w32.loss' in s]
    assert len(train) == 4
    for s in train:
        assert all(v == v and abs(v) < 1e3 for k, v in s.items() if k.startswith(('w32.', 'w16.', 'switch.'))), s
        assert s['switch.share.w32'] + s['switch.share.w16'] == pytest.approx(1.0)


def test_test_py_on_the_other_network_is_that_network(amp_trained, toy_root):
    """tools/test.py --cfg-options model.predict_network=w32 predicts with w32: the same scores as the w32 exported
    by export_student.py --network w32 and tested as a plain mmdet PAA."""
    work = amp_trained
    checkpoint = str(work / 'run' / 'epoch_1.pth')
    test = [PYTHON, osp.join(TOOLS, 'test.py')]
    _run(
        test + [CONFIG, checkpoint, '--work-dir',
                str(work / 't32'), '--out',
                str(work / 'colad_w32.pkl')] + _test_options(toy_root) + ['model.predict_network=w32'], work)
    _run([PYTHON, osp.join(TOOLS, 'export_student.py'), checkpoint, str(work / 'exp32'), '--network', 'w32'], work)
    # was: the pair's one-DDP-per-network wrapper was exported with the single detector, whose train_step it breaks
    assert 'model_wrapper_cfg' not in open(work / 'exp32' / 'student_config.py').read()
    _run(
        test + [
            str(work / 'exp32' / 'student_config.py'),
            str(work / 'exp32' / 'student.pth'), '--work-dir',
            str(work / 'texp'), '--out',
            str(work / 'exported_w32.pkl')
        ] + _test_options(toy_root), work)
    got = pickle.load(open(work / 'colad_w32.pkl', 'rb'))
    expected = pickle.load(open(work / 'exported_w32.pkl', 'rb'))
    assert len(got) == len(expected) == 8
    for g, e in zip(got, expected):
        torch.testing.assert_close(g['pred_instances']['scores'], e['pred_instances']['scores'], rtol=0, atol=0)
        torch.testing.assert_close(g['pred_instances']['bboxes'], e['pred_instances']['bboxes'], rtol=0, atol=0)


def test_resume_after_reordering_the_networks_fails_clearly(amp_trained, toy_root):
    """Was: same names and shapes, so the run resumed silently with the switch counts of one network given to the
    other (and the ties to the other network)."""
    work = amp_trained
    swapped = work / 'swapped.py'
    swapped.write_text(f"_base_ = [{CONFIG!r}]\nmodel = dict(networks=dict(_delete_=True, "
                       f"w16={osp.join(CONFIGS, 'toy', 'paa_tiny-w16_toy.py')!r}, "
                       f"w32={osp.join(CONFIGS, 'toy', 'paa_tiny-w32_toy.py')!r}))\n")
    proc = subprocess.run(
        [
            PYTHON,
            osp.join(TOOLS, 'train.py'),
            str(swapped), '--amp', '--work-dir',
            str(work / 'run'), '--resume',
            str(work / 'run' / 'epoch_1.pth')
        ] + colad_options(toy_root, 2),
        cwd=work,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=300)
    assert proc.returncode != 0
    assert ("the checkpoint holds the networks ['w32', 'w16'] (in this order), the config ['w16', 'w32']"
            in proc.stderr), proc.stderr[-3000:]
    assert not (work / 'run' / 'epoch_2.pth').exists()


def test_amp_trains_the_lad_with_switch_toy_config(toy_root, tmp_path):
    config = osp.join(CONFIGS, 'lad', 'lad-switch_paa-tiny-w32_paa-tiny-w16_toy.py')
    _run([PYTHON, osp.join(TOOLS, 'train.py'), config, '--amp', '--work-dir',
          str(tmp_path)] + _options(toy_root, 1) + ['default_hooks.logger.interval=1'], tmp_path)
    assert 'loss_scaler' in torch.load(tmp_path / 'epoch_1.pth', weights_only=False)['optimizer']
    scalars = [json.loads(line) for line in open(next(tmp_path.glob('*/vis_data/scalars.json')))]
    train = [s for s in scalars if 'switch.share.teacher' in s]
    assert len(train) == 4
    for s in train:
        assert s['switch.share.teacher'] + s['switch.share.student'] == pytest.approx(1.0)
        assert s['loss'] == s['loss'] and 0 < s['switch.rho.teacher'] < 10 and 0 < s['switch.rho.student'] < 10, s
