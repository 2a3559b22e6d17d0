import random
from types import SimpleNamespace
from unittest import mock

import numpy as np
import torch

from mmkd.engine import RNGStateHook
from mmkd.utils.checkpoint import safe_torch_load


def _draws():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    hook = RNGStateHook()
    runner = SimpleNamespace(_resume=True, logger=mock.Mock(), iter=0, train_loop=None)
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    _draws()
    checkpoint = {}
    hook.before_save_checkpoint(runner, checkpoint)
    expected = _draws()
    torch.save(checkpoint, tmp_path / 'ckpt.pth')
    random.seed(2)
    np.random.seed(2)
    torch.manual_seed(2)  # what mmengine's re-seeding on resume does
    loaded = safe_torch_load(str(tmp_path / 'ckpt.pth'), map_location='cpu')
    hook.after_load_checkpoint(runner, loaded)
    assert _draws() != expected  # nothing is restored before training starts
    hook.after_load_checkpoint(runner, loaded)
    hook.before_train(runner)
    assert _draws() == expected


def test_initial_weights_do_not_set_states_and_old_checkpoints_warn():
    hook = RNGStateHook()
    checkpoint = {}
    hook.before_save_checkpoint(SimpleNamespace(), checkpoint)
    hook.after_load_checkpoint(SimpleNamespace(_resume=False, logger=mock.Mock()), checkpoint)  # load_from only
    assert hook._pending is None
    runner = SimpleNamespace(_resume=True, logger=mock.Mock(), iter=0, train_loop=None)
    hook.after_load_checkpoint(runner, {'state_dict': {}})
    runner.logger.warning.assert_called_once()
    hook.before_train(runner)  # nothing to restore: no error


class _Augmenting:
    """A data iterator whose batches are random draws of the main process (augmentation with num_workers=0)."""

    def __iter__(self):
        return self

    def __next__(self):
        return _draws()


def test_iteration_based_resume_restores_after_the_skipped_batches(tmp_path):
    # what mmengine's IterBasedTrainLoop does: before_train, then draw the finished iterations' batches again
    # to skip them, then train on new batches
    hook = RNGStateHook()
    torch.manual_seed(0), random.seed(0), np.random.seed(0)
    loop = SimpleNamespace(dataloader_iterator=_Augmenting())
    straight = [next(loop.dataloader_iterator) for _ in range(8)]
    torch.manual_seed(0), random.seed(0), np.random.seed(0)
    first = [next(loop.dataloader_iterator) for _ in range(4)]
    checkpoint = {}
    hook.before_save_checkpoint(None, checkpoint)  # the checkpoint of iteration 4
    assert first == straight[:4]

    torch.manual_seed(0), random.seed(0), np.random.seed(0)  # mmengine re-seeds the resumed run
    runner = SimpleNamespace(_resume=True, logger=mock.Mock(), iter=4, train_loop=loop)
    hook.after_load_checkpoint(runner, checkpoint)
    hook.before_train(runner)
    for _ in range(4):
        next(loop.dataloader_iterator)  # skipped
    resumed = [next(loop.dataloader_iterator) for _ in range(4)]
    assert resumed == straight[4:]
    assert isinstance(loop.dataloader_iterator, _Augmenting)  # the loop has its own iterator back


def test_validation_does_not_draw_from_the_training_stream():
    # mmengine saves an epoch's checkpoint before validating, and the best checkpoint while validating: both must
    # hold the states that the training goes on with after the validation
    hook = RNGStateHook()
    torch.manual_seed(0), random.seed(0), np.random.seed(0)
    epoch_checkpoint = {}
    hook.before_save_checkpoint(None, epoch_checkpoint)
    after_epoch = _draws()
    torch.manual_seed(0), random.seed(0), np.random.seed(0)
    hook.before_save_checkpoint(None, {})
    hook.before_val(None)
    _draws()  # the validation loader's iterator, random transforms, ...
    best_checkpoint = {}
    hook.before_save_checkpoint(None, best_checkpoint)
    hook.after_val(None)
    assert _draws() == after_epoch
    for checkpoint in (epoch_checkpoint, best_checkpoint):
        hook._set_states(checkpoint[RNGStateHook.KEY])
        assert _draws() == after_epoch
    hook.after_val(None)  # a validation without before_val (e.g. a hook added late): nothing to put back


class _OnGPU(torch.Tensor):
    """Stands for a state tensor that a GPU resume loaded onto the GPU (mmengine's ``map_location='default'``):
    numpy cannot read it, and ``.cpu()`` gives the plain tensor back."""

    def numpy(self, *args, **kwargs):
        raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor to "
                        'host memory first.')

    def cpu(self, *args, **kwargs):
        return self.as_subclass(torch.Tensor).clone()


def test_states_restore_from_a_checkpoint_loaded_onto_the_gpu():
    """Found on an H200: resuming on a GPU failed in the hook with numpy's TypeError (the states came back on the
    GPU); every state tensor is read on the CPU."""
    hook = RNGStateHook()
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    state = hook._capture()
    expected = _draws()
    name, keys, pos, has_gauss, cached = state['numpy']
    state = dict(
        state, numpy=(name, keys.as_subclass(_OnGPU), pos, has_gauss, cached), torch=state['torch'].as_subclass(_OnGPU))
    _draws()
    hook._set_states(state)
    assert _draws() == expected
