"""Random-number-generator states in checkpoints, so that a resumed run continues exactly."""
import random

import numpy as np
import torch
from mmengine.hooks import Hook

from mmkd.registry import HOOKS


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save the main process's Python, NumPy and torch (CPU and CUDA) RNG states with every checkpoint
    and restore them on resume.

    mmengine re-seeds a resumed run from its seed, so whatever the main process draws afterwards
    (augmentations when ``num_workers=0``, random samplers, dropout) differs from the uninterrupted
    run. With this hook it does not. Dataloader workers seed themselves from the seed and their id
    at every epoch when ``persistent_workers=False`` (then a resume at an epoch boundary is exact);
    persistent workers keep RNG states that live in other processes and cannot be saved. In an
    iteration-based loop the states are restored after mmengine has skipped the finished iterations'
    batches (which draw random augmentations again when ``num_workers=0``), before the first new batch.

    The states are plain tuples, ints, an int64 tensor (NumPy's ``uint32`` key) and uint8 tensors: the
    checkpoint stays loadable with ``weights_only=True``, also in torch's legacy (non-zip) format.
    ``tools/train.py`` adds this hook to every run.

    Validation does not draw from the training's stream: the states are taken before a validation and put back
    after it. mmengine saves an epoch's checkpoint before validating (and the best checkpoint during validation),
    so without this a resumed run would continue from the states before the validation of that epoch while the
    uninterrupted run continued from those after it (the validation loader's iterator alone draws from torch's
    generator), and losses that sample (distance-weighted mining, ...) would diverge.
    """

    priority = 'VERY_LOW'
    KEY = 'mmkd_rng_state'

    def __init__(self):
        self._pending = None
        self._before_val = None

    @staticmethod
    def _capture() -> dict:
        name, keys, pos, has_gauss, cached = np.random.get_state()
        state = dict(
            python=random.getstate(),
            # int64: torch's legacy (non-zip) format cannot read back a uint32 tensor
            numpy=(name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
            torch=torch.get_rng_state())
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state['cuda'] = torch.cuda.get_rng_state_all()
        return state

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # a checkpoint saved during validation (the best one) holds the states the training goes on with
        checkpoint[self.KEY] = self._before_val if self._before_val is not None else self._capture()

    def before_val(self, runner) -> None:
        self._before_val = self._capture()

    def after_val(self, runner) -> None:
        state, self._before_val = self._before_val, None
        if state is not None:
            self._set_states(state)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # kept until training starts: mmengine may still re-seed after loading, and a checkpoint
        # loaded as initial weights (load_from without resume) must not set the states
        if not runner._resume:
            return
        self._pending = checkpoint.get(self.KEY)
        if self._pending is None:
            runner.logger.warning(f'{type(self).__name__}: the checkpoint holds no RNG states (written without '
                                  'this hook); random draws after resuming will differ from an uninterrupted run')

    def before_train(self, runner) -> None:
        state, self._pending = self._pending, None
        if state is None:
            return
        loop = runner.train_loop
        if runner.iter > 0 and hasattr(loop, 'dataloader_iterator'):
            # an iteration-based loop draws the finished iterations' batches again after this hook, to
            # skip them; those draws were made before the checkpoint in the uninterrupted run, so the
            # states are restored after them, right before the first new batch
            loop.dataloader_iterator = _RestoreBeforeBatch(loop, runner.iter, lambda: self._restore(runner, state))
            return
        self._restore(runner, state)

    @staticmethod
    def _set_states(state: dict) -> None:
        # every state tensor is read on the CPU: resuming on a GPU, mmengine loads the checkpoint with its tensors
        # on the GPU, where numpy cannot read them and torch's set_rng_state refuses them
        random.setstate(_as_python_state(state['python']))
        name, keys, pos, has_gauss, cached = state['numpy']
        np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state['torch'].cpu())
        if 'cuda' in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])

    @classmethod
    def _restore(cls, runner, state: dict) -> None:
        cls._set_states(state)
        runner.logger.info('RNGStateHook: RNG states restored from the resumed checkpoint')


class _RestoreBeforeBatch:
    """Stands in for an iteration-based loop's data iterator until ``skip`` batches are drawn; calls
    ``restore`` before drawing the next one and gives the loop its iterator back."""

    def __init__(self, loop, skip: int, restore):
        self.loop, self.inner, self.left, self.restore = loop, loop.dataloader_iterator, skip, restore

    def __iter__(self):
        return self

    def __next__(self):
        if self.left > 0:
            self.left -= 1
            return next(self.inner)
        self.restore()
        self.loop.dataloader_iterator = self.inner
        return next(self.inner)


def _as_python_state(state):
    """``random.setstate`` wants tuples where a round trip may have given lists."""
    version, internal, gauss = state
    return version, tuple(internal), gauss
