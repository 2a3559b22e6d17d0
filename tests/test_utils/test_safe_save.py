import os
import os.path as osp
import signal
import stat
import subprocess
import sys
import textwrap

import pytest
import torch

from mmkd.utils.safe_save import atomic_write, remove_stale_temporaries


def test_atomic_write_keeps_old_file_on_error(tmp_path, monkeypatch):
    path = tmp_path / 'ckpt.pth'
    atomic_write(b'old', path)

    def boom(fd):
        raise OSError('disk full')

    monkeypatch.setattr(os, 'fsync', boom)
    with pytest.raises(OSError, match='disk full'):
        atomic_write(b'new' * 1000, path)
    assert path.read_bytes() == b'old'
    assert os.listdir(tmp_path) == ['ckpt.pth']  # no temporary file left behind


def test_crash_during_runner_save_leaves_previous_checkpoint_and_next_save_cleans_up(tmp_path):
    # a process killed (SIGKILL) in the middle of mmengine's save_checkpoint: the old file survives
    path = tmp_path / 'epoch_1.pth'
    torch.save(dict(state_dict=dict(w=torch.ones(3))), path)
    script = textwrap.dedent(f'''
        import os, signal, torch
        import mmkd
        from mmengine.runner.checkpoint import save_checkpoint
        def die(fd):  # the data is written, the rename has not happened yet
            os.kill(os.getpid(), signal.SIGKILL)
        os.fsync = die
        save_checkpoint(dict(state_dict=dict(w=torch.zeros(1000))), {str(path)!r})
    ''')
    proc = subprocess.run([sys.executable, '-c', script], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert torch.equal(torch.load(path)['state_dict']['w'], torch.ones(3))
    leftover = [name for name in os.listdir(tmp_path) if name.endswith('.tmp')]
    assert len(leftover) == 1 and leftover[0].startswith('.epoch_1.pth.')
    atomic_write(b'x', tmp_path / 'last_checkpoint')  # the next save in the folder removes it
    assert sorted(os.listdir(tmp_path)) == ['epoch_1.pth', 'last_checkpoint']


def test_only_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    from mmkd.utils.safe_save import _HOST
    names = dict(
        dead=f'.epoch_1.pth.{dead.pid}@{_HOST}.0123abcd.tmp',
        alive=f'.epoch_2.pth.{os.getpid()}@{_HOST}.0123abcd.tmp',
        other_host=f'.epoch_3.pth.{dead.pid}@another-host.0123abcd.tmp',
        user='.notes.tmp')
    for name in names.values():
        (tmp_path / name).write_bytes(b'')
    assert remove_stale_temporaries(tmp_path) == [osp.join(tmp_path, names['dead'])]
    assert sorted(os.listdir(tmp_path)) == sorted(v for k, v in names.items() if k != 'dead')


def test_permissions_are_those_of_a_plain_write(tmp_path):
    old_umask = os.umask(0o022)
    try:
        atomic_write(b'new', tmp_path / 'new.pth')
        with open(tmp_path / 'plain.pth', 'wb') as f:
            f.write(b'plain')
        existing = tmp_path / 'existing.pth'
        existing.write_bytes(b'old')
        os.chmod(existing, 0o640)
        atomic_write(b'replaced', existing)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(os.stat(tmp_path / 'new.pth').st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / 'plain.pth').st_mode) == 0o644
    assert stat.S_IMODE(os.stat(existing).st_mode) == 0o640 and existing.read_bytes() == b'replaced'


def test_a_symlinked_target_is_written_through_as_a_plain_write_would(tmp_path):
    (tmp_path / 'real').mkdir()
    target = tmp_path / 'real' / 'last_checkpoint'
    target.write_text('old')
    link = tmp_path / 'last_checkpoint'
    link.symlink_to(target)
    atomic_write('new', link)
    assert link.is_symlink() and target.read_text() == 'new'
    assert sorted(p.name for p in (tmp_path / 'real').iterdir()) == ['last_checkpoint']  # no temporary left
