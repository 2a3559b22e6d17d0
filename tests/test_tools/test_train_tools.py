"""tools/train.py, dist_train.sh, test.py and export_student.py on a distillation config, a few iterations each."""
import json
import os.path as osp
import subprocess
import textwrap

import pytest
import torch

from ..conftest import CONFIGS, PYTHON, ROOT, TOOLS, tool_env

CONFIG = osp.join(CONFIGS, 'ssim_kd', 'ssim_retinanet_tiny-w32-w16_toy.py')


def _options(toy_root, epochs=1):
    return [
        '--cfg-options', 'model.teacher_ckpt=None', f'train_cfg.max_epochs={epochs}', 'train_cfg.val_interval=100',
        'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False', 'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False', f'train_dataloader.dataset.data_root={toy_root}/',
        f'val_dataloader.dataset.data_root={toy_root}/', f'test_dataloader.dataset.data_root={toy_root}/',
        f'val_evaluator.ann_file={toy_root}/annotations/instances_val.json',
        f'test_evaluator.ann_file={toy_root}/annotations/instances_val.json', 'default_hooks.checkpoint.interval=1',
        'default_hooks.checkpoint.max_keep_ckpts=-1', 'randomness.seed=0'
    ]


def _run(args, cwd):
    proc = subprocess.run(args, cwd=cwd, env=tool_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope='module')
def trained(toy_root, tmp_path_factory):
    """Two epochs straight, and one epoch then a resume to two."""
    work = tmp_path_factory.mktemp('train')
    _run([PYTHON, osp.join(TOOLS, 'train.py'), CONFIG, '--work-dir', str(work / 'full')] + _options(toy_root, 2), work)
    _run([PYTHON, osp.join(TOOLS, 'train.py'), CONFIG, '--work-dir', str(work / 'part')] + _options(toy_root, 1), work)
    _run([PYTHON, osp.join(TOOLS, 'train.py'), CONFIG, '--work-dir',
          str(work / 'part'), '--resume'] + _options(toy_root, 2), work)
    return work


def test_train_saves_student_only_and_resume_continues_exactly(trained):
    # RandomFlip (p 0.5) runs in the main process (num_workers=0): exact only with the RNG states restored
    full = torch.load(trained / 'full' / 'epoch_2.pth', weights_only=False)
    resumed = torch.load(trained / 'part' / 'epoch_2.pth', weights_only=False)
    assert 'mmkd_rng_state' in full
    assert not any(k.startswith('teacher') for k in full['state_dict'])
    assert any(k.startswith('student.') for k in full['state_dict'])
    assert full['meta']['iter'] == resumed['meta']['iter'] == 8
    for k, v in full['state_dict'].items():
        torch.testing.assert_close(resumed['state_dict'][k], v, msg=k)


def test_test_tool_evaluates(trained, toy_root):
    proc = _run([
        PYTHON,
        osp.join(TOOLS, 'test.py'), CONFIG,
        str(trained / 'full' / 'epoch_2.pth'), '--work-dir',
        str(trained / 'test')
    ] + _options(toy_root) + ['model.student.test_cfg.score_thr=0.0'], trained)
    assert 'coco/bbox_mAP' in proc.stdout + proc.stderr


def predict_without_mmkd(export_dir, image, cwd):
    """Runs mmdet's DetInferencer on an exported student in a process where mmkd cannot be imported."""
    script = textwrap.dedent(f'''
        import sys, torch
        from mmdet.apis import DetInferencer
        inferencer = DetInferencer(model={str(export_dir / 'student_config.py')!r},
                                   weights={str(export_dir / 'student.pth')!r}, device='cpu')
        result = inferencer({image!r}, no_save_vis=True)
        assert 'mmkd' not in sys.modules, 'mmkd was imported'
        print('PREDICTIONS', len(result['predictions'][0]['bboxes']))
    ''')
    proc = subprocess.run([PYTHON, '-c', script],
                          cwd=str(cwd),
                          capture_output=True,
                          text=True,
                          env=dict(tool_env(), PYTHONPATH=''))
    assert proc.returncode == 0 and 'PREDICTIONS' in proc.stdout, proc.stderr[-3000:]


def test_export_student_loads_in_stock_mmdet_without_mmkd(trained, toy_root):
    out = trained / 'export'
    _run([PYTHON, osp.join(TOOLS, 'export_student.py'), str(trained / 'full' / 'epoch_2.pth'), str(out)], trained)
    predict_without_mmkd(out, toy_root + '/val/000000.png', trained)
    exported = torch.load(out / 'student.pth')['state_dict']
    trained_sd = torch.load(trained / 'full' / 'epoch_2.pth', weights_only=False)['state_dict']
    for k, v in exported.items():
        assert torch.equal(v, trained_sd['student.' + k])


def test_dist_train_two_processes_identical_weights(toy_root, tmp_path):
    hook = tmp_path / 'rank_dump.py'
    hook.write_text(
        textwrap.dedent('''
        import torch
        from mmengine.dist import get_rank
        from mmengine.hooks import Hook
        from mmengine.registry import HOOKS

        @HOOKS.register_module()
        class RankDumpHook(Hook):
            def after_run(self, runner):
                model = runner.model.module if hasattr(runner.model, 'module') else runner.model
                torch.save({k: v for k, v in model.named_parameters()}, f'{runner.work_dir}/rank{get_rank()}.pth')
    '''))
    cfg = tmp_path / 'dist_cfg.py'
    cfg.write_text(f"_base_ = [{CONFIG!r}]\ncustom_imports = dict(imports=['mmkd', 'rank_dump'])\n"
                   "custom_hooks = [dict(type='RankDumpHook')]\n")
    env = tool_env()
    env['PYTHONPATH'] = f'{tmp_path}:{env["PYTHONPATH"]}'
    env['PORT'] = '29517'
    proc = subprocess.run(
        ['bash', osp.join(TOOLS, 'dist_train.sh'),
         str(cfg), '2', '--work-dir',
         str(tmp_path / 'w')] + _options(toy_root),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0 = torch.load(tmp_path / 'w' / 'rank0.pth')
    r1 = torch.load(tmp_path / 'w' / 'rank1.pth')
    assert r0.keys() == r1.keys() and any(k.startswith('student.') for k in r0)
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    # the two ranks trained on different halves of the data: the weights moved from the start
    assert 'Epoch(train) [1][2/2]' in proc.stdout + proc.stderr


def test_unlabeled_toy_config_trains_on_pseudo_labels(toy_root, tmp_path):
    config = osp.join(CONFIGS, 'ssim_kd', 'ssim_pseudo_retinanet_tiny-w32-w16_toy-unlabeled.py')
    # the pseudo-label threshold is lowered so that the untrained teacher's detections give the student
    # something to learn
    proc = _run([PYTHON, osp.join(TOOLS, 'train.py'), config, '--work-dir',
                 str(tmp_path / 'w')] + _options(toy_root) + ['model.pseudo_label.score_thr=0.05'], tmp_path)
    log = proc.stdout + proc.stderr
    assert 'loss_feat_l0' in log and 'Epoch(train) [1][4/4]' in log, log[-3000:]
    assert (tmp_path / 'w' / 'epoch_1.pth').is_file()


def test_quickstart_runs_end_to_end_and_reuses_finished_stages(tmp_path):
    args = [
        PYTHON,
        osp.join(TOOLS, 'quickstart.py'), '--work-dir',
        str(tmp_path / 'qs'), '--data-root',
        str(tmp_path / 'data'), '--epochs', '1', '--num-train', '16', '--num-val', '8', '--image-size', '128'
    ]
    first = _run(args, tmp_path).stdout
    for label in ('[teacher] epoch 1/1', '[baseline s0] epoch 1/1', '[SSIM s0] epoch 1/1', '| model | seed | AP |'):
        assert label in first, first
    results = json.loads((tmp_path / 'qs' / 'results.json').read_text())
    assert [r['model'] for r in results['runs']] == ['teacher', 'baseline student', 'SSIM student']
    for run in results['runs']:
        assert set(run['metrics']) == {'AP', 'AP50', 'AP75', 'AP_S', 'AP_M', 'AP_L'}
        assert osp.isfile(run['checkpoint'])
    assert (tmp_path / 'qs' / 'results.md').read_text().count('\n| ') == 4  # header + 3 runs
    # the mmengine / pycocotools output went to the stage folders, not the console
    assert 'loading annotations' not in first and (tmp_path / 'qs' / 'teacher' / 'console.log').is_file()
    second = _run(args, tmp_path).stdout
    assert second.count('reused from') == 3
    assert json.loads((tmp_path / 'qs' / 'results.json').read_text())['runs'] == results['runs']
