import os
import os.path as osp
import pickle
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner, load_checkpoint
from torch.utils.data import Dataset

from mmkd.utils import UntrustedCheckpointError, atomic_write, safe_torch_load, trust_checkpoint
from mmkd.utils.checkpoint import ENV_TRUSTED, _history_buffer_getattr


class _Linear(BaseModel):

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.fc(torch.stack(inputs)).squeeze(1)
        if mode == 'loss':
            return dict(loss=((out - torch.stack(labels))**2).mean())
        return out


class _Points(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(inputs=torch.randn(2, generator=g), labels=torch.tensor(float(i % 3)))


def _globals_in(path):
    import io
    import zipfile

    from torch._weights_only_unpickler import get_globals_in_pkl
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith('data.pkl'))
        return get_globals_in_pkl(io.BytesIO(z.read(name)))


def _runner(work_dir, max_epochs, **kwargs):
    torch.manual_seed(0)  # the same initial weights in every run
    return Runner(
        model=_Linear(),
        work_dir=str(work_dir),
        train_dataloader=dict(dataset=_Points(), sampler=dict(type='DefaultSampler', shuffle=True), batch_size=2),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', milestones=[1]),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
        randomness=dict(seed=0),
        **kwargs)


def test_mmengine_checkpoints_load_and_resume_exactly(tmp_path):
    # the checkpoint really holds what torch>=2.6 refuses by default
    full = tmp_path / 'full'
    _runner(full, 4).train()
    assert {'mmengine.logging.history_buffer.HistoryBuffer', 'builtins.getattr'} <= _globals_in(full / 'epoch_2.pth')
    final = torch.load(full / 'epoch_4.pth')['state_dict']  # weights_only=True with the allow-list

    part = tmp_path / 'part'
    _runner(part, 2).train()
    runner = _runner(part, 4, resume=True)
    runner.train()
    assert runner.iter == 16
    resumed = torch.load(part / 'epoch_4.pth')['state_dict']
    for k in final:
        torch.testing.assert_close(resumed[k], final[k], atol=0, rtol=0)

    model = _Linear()
    load_checkpoint(model, str(full / 'epoch_4.pth'))
    torch.testing.assert_close(model.fc.weight, final['fc.weight'])
    hub = torch.load(full / 'epoch_4.pth')['message_hub']
    assert hub['log_scalars']['train/loss'].mean() > 0  # HistoryBuffer statistics methods work


def test_numpy_payloads_load(tmp_path):
    path = tmp_path / 'np.pth'
    torch.save(dict(meta=dict(a=np.float64(1.5), b=np.arange(3), c=np.int64(2), d=np.array([1.0], np.float32))),
               path)
    meta = safe_torch_load(str(path))['meta']
    assert meta['a'] == 1.5 and meta['b'].tolist() == [0, 1, 2] and meta['c'] == 2


class _Payload:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def test_malicious_checkpoint_refused_and_never_runs(tmp_path, monkeypatch):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict={}, meta=_Payload(marker)), path)
    with pytest.raises(UntrustedCheckpointError) as info:
        load_checkpoint(_Linear(), str(path))
    message = str(info.value)
    assert str(path) in message and ENV_TRUSTED in message and 'trust_checkpoint' in message
    assert 'system' in message  # names what it refused
    assert not marker.exists()
    with pytest.raises(UntrustedCheckpointError):
        safe_torch_load(str(path))
    assert not marker.exists()


def test_arbitrary_class_refused(tmp_path):
    path = tmp_path / 'cls.pth'
    torch.save(dict(state_dict={}, meta=dict(obj=pytest.approx(1.0))), path)
    with pytest.raises(UntrustedCheckpointError, match='ApproxScalar'):
        safe_torch_load(str(path))


def test_getattr_only_reaches_history_buffer_statistics():
    from mmengine.logging.history_buffer import HistoryBuffer
    assert _history_buffer_getattr(HistoryBuffer, 'mean') is HistoryBuffer.mean
    for obj, name in [(HistoryBuffer, '__init__'), (os, 'system'), (HistoryBuffer, 'register_statistics')]:
        with pytest.raises(pickle.UnpicklingError):
            _history_buffer_getattr(obj, name)


def test_getattr_payload_refused(tmp_path):

    class Sneaky:

        def __reduce__(self):
            from mmengine.logging.history_buffer import HistoryBuffer
            return (getattr, (HistoryBuffer, '__init__'))

    path = tmp_path / 'getattr.pth'
    torch.save(dict(x=Sneaky()), path)
    with pytest.raises(pickle.UnpicklingError):
        safe_torch_load(str(path))


def test_opt_in_for_trusted_files(tmp_path, monkeypatch):
    path = tmp_path / 'trusted.pth'
    torch.save(dict(meta=dict(obj=pytest.approx(1.0))), path)
    monkeypatch.setenv(ENV_TRUSTED, str(path))
    assert safe_torch_load(str(path))['meta']['obj'] == 1.0
    monkeypatch.delenv(ENV_TRUSTED)
    with pytest.raises(UntrustedCheckpointError):
        safe_torch_load(str(path))
    trust_checkpoint(str(path))
    assert safe_torch_load(str(path))['meta']['obj'] == 1.0


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='nothing.pth'):
        safe_torch_load(str(tmp_path / 'nothing.pth'))


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


def test_crash_during_runner_save_leaves_previous_checkpoint(tmp_path):
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
    assert osp.isfile(path)
