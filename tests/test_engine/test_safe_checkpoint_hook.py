"""Crash-safe checkpointing of tools/train.py (SafeCheckpointHook + atomic writes): a training process killed
(SIGKILL) at the worst moments of a save still leaves a checkpoint and a marker that --resume continues from."""
import os
import signal
import stat

import pytest
import torch
from mmengine.evaluator import BaseMetric, Evaluator
from mmengine.runner import Runner

from mmkd.utils import safe_torch_load
from .checkpoint_toy import CheckpointToyPoints, CheckpointToyRegressor, train, write_config


def _files(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith(('.pth', '.tmp')) or name == 'last_checkpoint')


def _marker(folder):
    with open(os.path.join(folder, 'last_checkpoint')) as f:
        return f.read()


def _resume_finishes(work, config, epochs=2):
    proc = train(config, str(work), '--resume', '--cfg-options', f'train_cfg.max_epochs={epochs}')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'resumed epoch: ' in proc.stdout + proc.stderr
    checkpoint = safe_torch_load(str(work / f'epoch_{epochs}.pth'))
    assert checkpoint['meta']['epoch'] == epochs and checkpoint['meta']['iter'] == 4 * epochs
    return proc


def test_crash_while_writing_the_marker_keeps_the_previous_one(tmp_path):
    config = write_config(str(tmp_path))
    work = tmp_path / 'work'
    work.mkdir()
    # killed once the marker of epoch 2 is open for writing (mmengine's open(..., 'w') has emptied it by then)
    proc = train(config, str(work), fault=('write', 'last_checkpoint', 2))
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert _marker(work) == str(work / 'epoch_1.pth')
    assert any(name.endswith('.tmp') for name in _files(work))  # what the killed write left
    _resume_finishes(work, config)
    assert _files(work) == ['epoch_1.pth', 'epoch_2.pth', 'last_checkpoint']  # the leftover was removed
    assert _marker(work) == str(work / 'epoch_2.pth')
    for name in ('epoch_1.pth', 'epoch_2.pth', 'last_checkpoint'):  # what open(..., 'w') gives under umask 022
        assert stat.S_IMODE(os.stat(work / name).st_mode) == 0o644, name


def test_crash_during_save_with_max_keep_1_keeps_the_previous_checkpoint(tmp_path):
    config = write_config(str(tmp_path), max_keep_ckpts=1)
    work = tmp_path / 'work'
    work.mkdir()
    proc = train(config, str(work), fault=('write', 'epoch_2.pth', 1))  # killed while epoch_2.pth is being written
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert 'epoch_1.pth' in _files(work) and _marker(work) == str(work / 'epoch_1.pth')
    assert torch.load(work / 'epoch_1.pth', weights_only=False)['meta']['epoch'] == 1
    _resume_finishes(work, config)
    assert _files(work) == ['epoch_2.pth', 'last_checkpoint']


def test_crash_before_removing_the_old_checkpoint_removes_it_on_resume(tmp_path):
    config = write_config(str(tmp_path), max_keep_ckpts=1)
    work = tmp_path / 'work'
    work.mkdir()
    proc = train(config, str(work), fault=('remove', 'epoch_1.pth', 1))  # killed as epoch_1.pth is about to be removed
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    # the new checkpoint and the marker were in place before anything was removed
    assert _files(work) == ['epoch_1.pth', 'epoch_2.pth', 'last_checkpoint']
    assert _marker(work) == str(work / 'epoch_2.pth')
    _resume_finishes(work, config, epochs=3)
    assert _files(work) == ['epoch_3.pth', 'last_checkpoint']


def test_resume_without_checkpoint_warns_and_trains_from_scratch(tmp_path):
    config = write_config(str(tmp_path))
    work = tmp_path / 'work'
    proc = train(config, str(work), '--resume', '--cfg-options', 'train_cfg.max_epochs=1')
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert f'WARNING - --resume: no checkpoint to resume from in {work}' in log and 'starts from scratch' in log
    assert 'latest checkpoint None' not in log
    assert safe_torch_load(str(work / 'epoch_1.pth'))['meta']['epoch'] == 1


class _Improving(BaseMetric):
    """A score that improves at every evaluation: every epoch gives a new best checkpoint."""

    def __init__(self):
        super().__init__()
        self.evaluations = 0

    def process(self, data_batch, data_samples):
        self.results.append(0)

    def compute_metrics(self, results):
        self.evaluations += 1
        return dict(score=float(self.evaluations))


def test_previous_best_checkpoint_removed_only_after_the_new_one_is_saved(tmp_path):
    loader = dict(
        dataset=CheckpointToyPoints(),
        sampler=dict(type='DefaultSampler', shuffle=False),
        batch_size=4,
        collate_fn=dict(type='default_collate'))
    runner = Runner(
        model=CheckpointToyRegressor(),
        work_dir=str(tmp_path),
        train_dataloader=loader,
        val_dataloader=loader,
        val_evaluator=Evaluator([_Improving()]),
        val_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05)),
        train_cfg=dict(by_epoch=True, max_epochs=2, val_interval=1),
        default_hooks=dict(checkpoint=dict(type='SafeCheckpointHook', interval=1, save_best='score', rule='greater')))
    save = runner.save_checkpoint

    def fail_second_best(out_dir, filename, *args, **kwargs):
        if filename == 'best_score_epoch_2.pth':
            raise OSError('disk full')
        return save(out_dir, filename, *args, **kwargs)

    runner.save_checkpoint = fail_second_best
    with pytest.raises(OSError, match='disk full'):
        runner.train()
    assert 'best_score_epoch_1.pth' in _files(tmp_path)
