import pytest
import torch
import torch.nn as nn

from mmkd.models.utils import FeatureRecorder


def _net():
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Sequential(nn.Linear(4, 2)))


def test_records_named_outputs_only_inside_block():
    net = _net()
    recorder = FeatureRecorder(net, ['0', '2.0'])
    x = torch.randn(5, 3)
    net(x)
    assert recorder.outputs == {}
    with recorder:
        out = net(x)
    torch.testing.assert_close(recorder['0'], net[0](x))
    assert recorder['2.0'] is not None and torch.equal(recorder['2.0'], out)
    with recorder:
        pass
    with pytest.raises(KeyError, match='did not run'):
        recorder['0']
    recorder.remove()
    with recorder:
        net(x)
    assert recorder.outputs == {}


def test_unknown_module_is_a_clear_error():
    with pytest.raises(KeyError, match="no submodule 'neck'"):
        FeatureRecorder(_net(), ['neck'])
