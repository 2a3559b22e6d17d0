"""MultiNetworkModel and MultiNetworkTrainMixin: each network learns from its own losses with its own optimizer."""
import copy
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F
from mmdet.models.detectors import RetinaNet
from mmengine.optim import OptimWrapper, OptimWrapperDict, build_optim_wrapper
from mmengine.registry import DefaultScope
from torch.optim import SGD

from mmkd.models import MultiNetworkModel, MultiNetworkTrainMixin
from mmkd.models.distillers import BaseDistiller
from mmkd.models.utils import deployable_of
from mmkd.registry import MODELS
from mmkd.utils import build_in_scope, model_config
from . import _tiny_nets  # noqa: F401  (registers TinyNet and TinyVectorDataset)

LR = dict(net_a=0.1, net_b=0.05, student=0.1, discriminator=0.05)


class CoupledPair(MultiNetworkModel):
    """net_a (4 -> 2) also minimises net_b's output on its own output, through net_b (like an adversarial
    term through a discriminator); net_b (2 -> 2) learns the targets from net_a's detached output."""

    def network_loss(self, name, inputs, data_samples=None):
        out_a = self.net_a(inputs)
        if name == 'net_a':
            return dict(loss_mse=F.mse_loss(out_a, data_samples), loss_through_b=self.net_b(out_a).pow(2).mean())
        return dict(loss_mse=F.mse_loss(self.net_b(out_a.detach()), data_samples))


class TinyAdversarialDistiller(MultiNetworkTrainMixin, BaseDistiller):
    """A student that mimics a frozen teacher and fools a discriminator, which learns to tell them apart."""
    trainable_networks = ('student', 'discriminator')

    def __init__(self, student: dict, teacher_cfg: dict, discriminator: dict):
        super().__init__(student, teacher_cfg, None, MODELS)
        self.discriminator = build_in_scope(discriminator, MODELS)

    def network_loss(self, name, inputs, data_samples=None):
        student = self.student(inputs)
        with torch.no_grad():
            teacher = self.teacher(inputs)
        if name == 'student':
            return dict(loss_kd=F.mse_loss(student, teacher), loss_adv=self.discriminator(student).mean())
        return dict(loss_disc=self.discriminator(teacher).mean() - self.discriminator(student.detach()).mean())

    def loss(self, inputs, data_samples):
        return self.network_loss('student', inputs, data_samples)


def _batch(n=4, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return dict(inputs=torch.randn(n, 4, generator=generator), data_samples=torch.randn(n, 2, generator=generator))


def _pair(cls=CoupledPair, **kwargs):
    torch.manual_seed(0)
    return cls(networks=dict(net_a=dict(type='TinyNet'), net_b=dict(type='TinyNet', in_dim=2)), **kwargs)


def _distiller():
    torch.manual_seed(0)
    return TinyAdversarialDistiller(
        dict(type='TinyNet'), dict(type='TinyNet', hidden=16), dict(type='TinyNet', in_dim=2, out_dim=1))


def _sgd(model, **extra):
    cfg = {name: dict(optimizer=dict(type='SGD', lr=LR[name]), **extra) for name in model.trainable_networks}
    return build_optim_wrapper(model, dict(constructor='MultiNetworkOptimWrapperConstructor', **cfg))


def _reference_step(model, data):
    """The networks after one SGD step each, in order, on the gradients of their own losses only."""
    model = copy.deepcopy(model)
    for name in model.trainable_networks:
        params = [p for p in getattr(model, name).parameters() if p.requires_grad]
        grads = torch.autograd.grad(sum(model.network_loss(name, **data).values()), params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= LR[name] * g
    return model.state_dict()


@pytest.mark.parametrize('make', [_pair, _distiller], ids=['pair', 'distiller_with_discriminator'])
def test_each_network_steps_on_its_own_losses_with_its_own_optimizer(make):
    model = make()
    first, second = model.trainable_networks
    frozen = getattr(model, second).layers[0].bias  # a parameter frozen by the config stays frozen
    frozen.requires_grad_(False)
    optim = _sgd(model)
    data = model.data_preprocessor(_batch(), True)
    before = copy.deepcopy(model.state_dict())
    teacher = copy.deepcopy(model.teacher.state_dict()) if hasattr(model, 'teacher') else None
    expected = _reference_step(model, data)

    # one network's update leaves the other bit for bit unchanged, without a gradient leaking into it
    model.update_network(first, optim, lambda: model.network_loss(first, **data))
    for key, value in model.state_dict().items():
        if key.startswith(f'{second}.'):
            assert torch.equal(value, before[key]), key
        elif key.startswith(f'{first}.') and 'layers' in key:
            torch.testing.assert_close(value, expected[key], msg=key)
            assert not torch.equal(value, before[key]), key
    assert all(p.grad is None for p in getattr(model, second).parameters())

    model.update_network(second, optim, lambda: model.network_loss(second, **data))
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, expected[key], msg=key)
    assert torch.equal(frozen, before[f'{second}.layers.0.bias']) and not frozen.requires_grad
    assert all(p.requires_grad for name, p in model.named_parameters() if name != f'{second}.layers.0.bias')
    if teacher is not None:
        for key, value in model.teacher.state_dict().items():
            assert torch.equal(value, teacher[key]), key


@pytest.mark.parametrize('make', [_pair, _distiller], ids=['pair', 'distiller_with_discriminator'])
def test_train_step_is_the_updates_in_order_with_prefixed_logs(make):
    model = make()
    data = _batch()
    preprocessed = model.data_preprocessor(data, True)
    expected = _reference_step(model, preprocessed)
    first, second = model.trainable_networks
    first_losses = copy.deepcopy(model).network_loss(first, **preprocessed)
    log_vars = model.train_step(data, _sgd(model))
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, expected[key], msg=key)
    second_losses = model.network_loss(second, **preprocessed)
    names = [(first, first_losses), (second, second_losses)]
    assert set(log_vars) == {f'{name}.{key}' for name, losses in names for key in ['loss', *losses]}
    torch.testing.assert_close(log_vars[f'{first}.loss'], sum(first_losses.values()))


def test_each_update_runs_in_its_wrappers_optim_context_and_accumulates_gradients():

    class AutocastWrapper(OptimWrapper):

        @contextmanager
        def optim_context(self, model):
            with super().optim_context(model), torch.autocast('cpu', dtype=torch.bfloat16):
                yield

    class Recording(CoupledPair):

        def network_loss(self, name, inputs, data_samples=None):
            self.autocast[name] = torch.is_autocast_enabled('cpu')
            return super().network_loss(name, inputs, data_samples)

    model = _pair(Recording)
    model.autocast = {}
    optim = OptimWrapperDict(
        net_a=AutocastWrapper(SGD(model.net_a.parameters(), lr=0.1)),
        net_b=OptimWrapper(SGD(model.net_b.parameters(), lr=0.1), accumulative_counts=2))
    start = copy.deepcopy(model.state_dict())
    model.train_step(_batch(), optim)
    assert model.autocast == dict(net_a=True, net_b=False)
    after_one = model.state_dict()
    assert not torch.equal(after_one['net_a.layers.0.weight'], start['net_a.layers.0.weight'])
    assert torch.equal(after_one['net_b.layers.0.weight'], start['net_b.layers.0.weight'])  # accumulating
    model.train_step(_batch(seed=2), optim)
    assert not torch.equal(model.state_dict()['net_b.layers.0.weight'], start['net_b.layers.0.weight'])


def test_predict_tensor_and_loss_modes_use_the_chosen_network():
    model = _pair(predict_network='net_b')
    x = torch.randn(3, 2)
    expected = model.net_b(x)
    torch.testing.assert_close(model(x, mode='tensor'), expected)
    predictions = model.predict(x, scale=2.0)  # keyword arguments reach the network unchanged
    torch.testing.assert_close(torch.stack(predictions), expected.detach() * 2)
    assert model.deployable_network is model.net_b
    batch = _batch()
    losses = model(**batch, mode='loss')
    assert set(losses) == {'net_a.loss_mse', 'net_a.loss_through_b', 'net_b.loss_mse'}
    torch.testing.assert_close(losses['net_b.loss_mse'], model.network_loss('net_b', **batch)['loss_mse'])


def test_deployable_names_the_predict_network_and_its_config_loads_its_weights():
    networks = dict(net_a=dict(type='TinyNet'), net_b=dict(type='TinyNet', in_dim=2))
    cfg = dict(type='MultiNetworkModel', networks=networks, predict_network='net_b')
    assert MultiNetworkModel.deployable(cfg) == ('net_b', networks['net_b'])
    assert deployable_of(dict(cfg, predict_network=None)) == ('net_a', networks['net_a'])
    model = MODELS.build(cfg)
    prefix, network_cfg = deployable_of(cfg, default_scope='mmkd')
    deployed = MODELS.build(network_cfg)
    weights = {k[len(prefix) + 1:]: v for k, v in model.state_dict().items() if k.startswith(prefix + '.')}
    deployed.load_state_dict(weights, strict=True)
    x = torch.randn(3, 2)
    torch.testing.assert_close(deployed(x), model(x))


def test_networks_build_in_the_default_scope_or_their_own():
    retinanet = model_config('mmdet::retinanet/retinanet_r18_fpn_1x_coco.py')
    model = MultiNetworkModel(dict(tiny=dict(type='TinyNet'), det=dict(retinanet, _scope_='mmdet')))
    assert isinstance(model.det, RetinaNet) and model.data_preprocessor is model.tiny.data_preprocessor
    with DefaultScope.overwrite_default_scope('mmdet'):  # as in a runner of an mmdet config
        model = MultiNetworkModel(dict(det=retinanet, tiny=dict(type='TinyNet', _scope_='mmkd')))
    assert isinstance(model.det, RetinaNet) and type(model.tiny).__name__ == 'TinyNet'
    assert model.data_preprocessor is model.det.data_preprocessor


def test_configuration_mistakes_fail_with_the_key_named():
    with pytest.raises(KeyError, match="predict_network='net_c'"):
        _pair(predict_network='net_c')
    with pytest.raises(ValueError, match='networks.data_preprocessor'):
        MultiNetworkModel(dict(net_a=dict(type='TinyNet'), data_preprocessor=dict(type='TinyNet')))
    model = _pair()
    with pytest.raises(KeyError, match="constructor='MultiNetworkOptimWrapperConstructor'"):
        model.train_step(_batch(), OptimWrapper(SGD(model.parameters(), lr=0.1)))


def test_an_mmkd_network_builds_without_scope_in_another_default_scope():
    # a runner of an mmdet config sets the default scope to mmdet: TinyNet (mmkd scope) is still found
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MultiNetworkModel(dict(tiny=dict(type='TinyNet')))
    assert type(model.tiny).__name__ == 'TinyNet'
