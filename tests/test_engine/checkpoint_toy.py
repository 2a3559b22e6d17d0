"""A tiny regression run for checkpoint tests: ``tools/train.py`` on it takes seconds, and a fault injected
into the training process kills it (SIGKILL) at a chosen file operation of a save."""
import os.path as osp
import subprocess
import textwrap

import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, MODELS
from torch.utils.data import Dataset

from ..conftest import PYTHON, TOOLS, tool_env


@MODELS.register_module()
class CheckpointToyRegressor(BaseModel):
    """``y = w . x + b`` on 2-d points; loss: mean squared error."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 1)

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor, mode: str = 'tensor'):
        """inputs: (B, 2), targets: (B,). Returns the loss dict or the predictions (B,)."""
        out = self.fc(inputs).squeeze(-1)
        if mode == 'loss':
            return dict(loss=((out - targets)**2).mean())
        return out


@DATASETS.register_module()
class CheckpointToyPoints(Dataset):
    """8 seeded 2-d points; the target is the sum of the coordinates."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict:
        point = torch.randn(2, generator=torch.Generator().manual_seed(index))
        return dict(inputs=point, targets=point.sum())


def write_config(folder: str, max_keep_ckpts: int = -1) -> str:
    """A config of 2 epochs of 4 iterations, a checkpoint per epoch; returns its path."""
    path = osp.join(folder, 'toy_config.py')
    with open(path, 'w') as f:
        f.write(
            textwrap.dedent(f'''
            custom_imports = dict(imports=['mmkd', 'tests.test_engine.checkpoint_toy'], allow_failed_imports=False)
            model = dict(type='CheckpointToyRegressor')
            train_dataloader = dict(batch_size=2, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=True),
                                    collate_fn=dict(type='default_collate'), dataset=dict(type='CheckpointToyPoints'))
            train_cfg = dict(by_epoch=True, max_epochs=2)
            optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.05))
            default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts={max_keep_ckpts}))
            randomness = dict(seed=0)
        '''))
    return path


# Runs tools/train.py in this process after wrapping open / os.open (writes) and os.remove / os.unlink: the
# nth call of kind FAULT[0] ('write' or 'remove') on a file whose name contains FAULT[1] kills the process,
# after the file is opened (a write has begun: open(..., 'w') has emptied it) or before it is removed. The umask
# is the usual 022.
_DRIVER = '''
import builtins, os, runpy, signal, sys
FAULT, TRAIN, ARGS = {fault!r}, {train!r}, {args!r}
calls = [0]
def _hit(kind, path):
    if FAULT and FAULT[0] == kind and FAULT[1] in os.path.basename(str(path)):
        calls[0] += 1
        if calls[0] == FAULT[2]:
            os.kill(os.getpid(), signal.SIGKILL)
real_open, real_os_open, real_remove, real_unlink = builtins.open, os.open, os.remove, os.unlink
def open_(file, mode='r', *args, **kwargs):
    f = real_open(file, mode, *args, **kwargs)
    if any(c in mode for c in 'wax+'):
        _hit('write', file)
    return f
def os_open(path, flags, *args, **kwargs):
    fd = real_os_open(path, flags, *args, **kwargs)
    if flags & (os.O_WRONLY | os.O_RDWR):
        _hit('write', path)
    return fd
def remover(real):
    def remove(path, *args, **kwargs):
        _hit('remove', path)
        return real(path, *args, **kwargs)
    return remove
builtins.open, os.open, os.remove, os.unlink = open_, os_open, remover(real_remove), remover(real_unlink)
os.umask(0o022)
sys.argv = [TRAIN] + ARGS
runpy.run_path(TRAIN, run_name='__main__')
'''


def train(config: str, work_dir: str, *args: str, fault=None) -> subprocess.CompletedProcess:
    """Run ``tools/train.py config --work-dir work_dir *args`` in a subprocess.

    Args:
        fault (tuple[str, str, int], optional): ('write' or 'remove', part of a file name, n): SIGKILL at the
            nth write-open or removal of such a file.
    """
    train_py = osp.join(TOOLS, 'train.py')
    driver = _DRIVER.format(fault=fault, train=train_py, args=[config, '--work-dir', work_dir, *args])
    return subprocess.run([PYTHON, '-c', driver],
                          cwd=osp.dirname(work_dir),
                          env=tool_env(),
                          capture_output=True,
                          text=True,
                          timeout=300)
