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
    runner = SimpleNamespace(_resume=True, logger=mock.Mock())
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
    runner = SimpleNamespace(_resume=True, logger=mock.Mock())
    hook.after_load_checkpoint(runner, {'state_dict': {}})
    runner.logger.warning.assert_called_once()
    hook.before_train(runner)  # nothing to restore: no error
