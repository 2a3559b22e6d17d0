"""MultiNetworkOptimWrapperConstructor, and two networks with their own optimizers and schedules trained and
resumed by tools/train.py."""
import json
import os.path as osp
import subprocess
import textwrap

import pytest
import torch
import torch.nn as nn
from mmengine.optim import OptimWrapperDict, build_optim_wrapper

from mmkd.engine import MultiNetworkOptimWrapperDict
from mmkd.models import MultiNetworkModel
from ..conftest import PYTHON, ROOT, TOOLS, tool_env
from ..test_models import _tiny_nets  # noqa: F401  (registers TinyNet and TinyVectorDataset)

SGD = dict(optimizer=dict(type='SGD', lr=0.1))


def _pair():
    torch.manual_seed(0)
    return MultiNetworkModel(dict(net_a=dict(type='TinyNet'), net_b=dict(type='TinyNet', hidden=4)))


def _build(model, **cfg):
    return build_optim_wrapper(model, dict(constructor='MultiNetworkOptimWrapperConstructor', **cfg))


def _ids(params):
    return {id(p) for p in params}


def test_one_wrapper_per_network_with_its_own_settings():
    model = _pair()
    optim = _build(
        model,
        net_a=dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4)),
        net_b=dict(
            optimizer=dict(type='Adam', lr=1e-3),
            clip_grad=dict(max_norm=1.0),
            accumulative_counts=2,
            paramwise_cfg=dict(bias_lr_mult=0.5)),
        paramwise_cfg=dict(bias_decay_mult=0.0))  # the default of entries without their own
    assert isinstance(optim, OptimWrapperDict) and list(optim.keys()) == ['net_a', 'net_b']
    a, b = optim['net_a'], optim['net_b']
    assert type(a.optimizer).__name__ == 'SGD' and type(b.optimizer).__name__ == 'Adam'
    assert _ids(p for g in a.optimizer.param_groups for p in g['params']) == _ids(model.net_a.parameters())
    assert _ids(p for g in b.optimizer.param_groups for p in g['params']) == _ids(model.net_b.parameters())
    assert b.clip_grad_kwargs == dict(max_norm=1.0) and b._accumulative_counts == 2 and not a.clip_grad_kwargs
    bias_lrs = {g['lr'] for g in b.optimizer.param_groups if g['params'][0].dim() == 1}
    weight_lrs = {g['lr'] for g in b.optimizer.param_groups if g['params'][0].dim() == 2}
    assert bias_lrs == {5e-4} and weight_lrs == {1e-3}
    assert {g['weight_decay'] for g in a.optimizer.param_groups if g['params'][0].dim() == 1} == {0.0}
    assert {g['weight_decay'] for g in a.optimizer.param_groups if g['params'][0].dim() == 2} == {1e-4}


def test_any_model_whose_children_are_the_networks():
    model = nn.Module()
    model.gen, model.disc, model.frozen = nn.Linear(2, 2), nn.Linear(2, 1), nn.Linear(2, 2).requires_grad_(False)
    optim = _build(model, gen=SGD, disc=dict(optimizer=dict(type='SGD', lr=0.2)))
    assert _ids(optim['disc'].param_groups[0]['params']) == _ids(model.disc.parameters())


@pytest.mark.parametrize(
    'cfg, error, message', [
        (dict(net_a=SGD, net_b=SGD, net_c=SGD), KeyError, 'optim_wrapper.net_c: .* no trainable network'),
        (dict(net_a=SGD), KeyError, "no entry for network 'net_b'"),
        (dict(net_a=SGD, net_b=SGD, type='AmpOptimWrapper'), TypeError, "optim_wrapper.type='AmpOptimWrapper'"),
        (dict(net_a=SGD, net_b=dict(type='OptimWrapper')), KeyError, 'optim_wrapper.net_b has no optimizer'),
    ],
    ids=['unknown_network', 'network_without_optimizer', 'top_level_option', 'entry_without_optimizer'])
def test_configuration_mistakes_name_the_key(cfg, error, message):
    with pytest.raises(error, match=message):
        _build(_pair(), **cfg)


def test_parameters_shared_by_two_networks_or_in_none_are_refused():
    model = _pair()
    model.net_b.layers[0] = model.net_a.layers[0]
    with pytest.raises(ValueError, match="networks 'net_a' and 'net_b' .* share a parameter"):
        _build(model, net_a=SGD, net_b=SGD)
    model = _pair()
    model.adapter = nn.Linear(2, 2)  # a trainable module outside trainable_networks
    with pytest.raises(ValueError, match=r"2 trainable parameters .* first: \['adapter.weight'"):
        _build(model, net_a=SGD, net_b=SGD)


def test_plain_ddp_wrapper_is_told_to_use_the_separate_one():
    model = _pair()
    optim = _build(model, net_a=SGD, net_b=SGD)
    with pytest.raises(NotImplementedError, match="model_wrapper_cfg=dict.type='MMSeparateDistributedDataParallel'"):
        with optim.optim_context(model):
            pass


def test_every_wrapper_learns_the_runs_counts_for_gradient_accumulation():
    # 3 iterations with accumulative_counts=2: mmengine steps at the 2nd and, knowing max_counts, at the 3rd
    model = _pair()
    optim = _build(model, net_a=SGD, net_b=dict(optimizer=dict(type='Adam', lr=0.1), accumulative_counts=2))
    assert isinstance(optim, MultiNetworkOptimWrapperDict)
    optim.initialize_count_status(model, 0, 3)  # what the runner does when training starts
    data = _tiny_nets.TinyVectorDataset(num=4)[:]
    for _ in range(3):
        model.train_step(data, optim)
    assert [s['step'].item() for s in optim['net_b'].optimizer.state.values()] == [2.0] * 4


# --- tools/train.py: each network's optimizer and schedule, saved and resumed exactly ---------------------------

CONFIG = '''
custom_imports = dict(imports=['mmkd', 'tests.test_models._tiny_nets'], allow_failed_imports=False)
default_scope = 'mmkd'
model = dict(type='MultiNetworkModel', networks=dict(net_a=dict(type='TinyNet'), net_b=dict(type='TinyNet', hidden=4)))
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False, collate_fn=dict(type='default_collate'),
                        sampler=dict(type='DefaultSampler', shuffle=True), dataset=dict(type='TinyVectorDataset'))
train_cfg = dict(by_epoch=True, max_epochs=2)
optim_wrapper = dict(constructor='MultiNetworkOptimWrapperConstructor',
                     net_a=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
                     net_b=dict(optimizer=dict(type='Adam', lr=0.01), clip_grad=dict(max_norm=1.0)))
# explicit ends: the first half runs with max_epochs=1, which would otherwise become the saved schedules' end
param_scheduler = dict(net_a=[dict(type='MultiStepLR', milestones=[1], gamma=0.1, end=2)],
                       net_b=[dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=6)])
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1), logger=dict(type='LoggerHook', interval=1))
randomness = dict(seed=0)
'''


def _train(config, work_dir, *args):
    args = [PYTHON, osp.join(TOOLS, 'train.py'), config, '--work-dir', str(work_dir), *args]
    proc = subprocess.run(args, cwd=ROOT, env=tool_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """Two epochs (8 iterations) straight; one epoch, then --resume to two."""
    work = tmp_path_factory.mktemp('multi_network')
    config = work / 'tiny_pair.py'
    config.write_text(textwrap.dedent(CONFIG))
    _train(config, work / 'full')
    _train(config, work / 'part', '--cfg-options', 'train_cfg.max_epochs=1')
    _train(config, work / 'part', '--resume')
    return work


def _assert_equal(a, b, where=''):
    """Nested dicts / lists of tensors and numbers, equal bit for bit."""
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_equal(a[key], b[key], f'{where}.{key}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal(x, y, f'{where}[{i}]')
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


def test_checkpoint_holds_both_optimizers_and_both_schedules(trained):
    ckpt = torch.load(trained / 'full' / 'epoch_1.pth', weights_only=False)
    optimizers = ckpt['optimizer']
    assert set(optimizers) == set(ckpt['param_schedulers']) == {'net_a', 'net_b'}
    assert {'momentum_buffer'} == set(optimizers['net_a']['state'][0])
    assert {'step', 'exp_avg', 'exp_avg_sq'} == set(optimizers['net_b']['state'][0])
    # after epoch 1 (4 iterations): net_a 0.05 * 0.1 (epoch milestone); net_b's factor goes linearly from 0.5 at
    # iteration 0 to 1 at iteration 5 (mmengine's end=6 is exclusive): 0.01 * (0.5 + 0.5 * 4 / 5)
    assert optimizers['net_a']['param_groups'][0]['lr'] == pytest.approx(0.005)
    assert optimizers['net_b']['param_groups'][0]['lr'] == pytest.approx(0.009)
    assert ckpt['param_schedulers']['net_b'][0]['last_step'] == 4


def test_resume_continues_bit_for_bit(trained):
    full = torch.load(trained / 'full' / 'epoch_2.pth', weights_only=False)
    resumed = torch.load(trained / 'part' / 'epoch_2.pth', weights_only=False)
    assert full['meta']['iter'] == resumed['meta']['iter'] == 8
    halfway = torch.load(trained / 'full' / 'epoch_1.pth', weights_only=False)
    assert not torch.equal(halfway['state_dict']['net_b.layers.0.weight'], full['state_dict']['net_b.layers.0.weight'])
    for key in ('state_dict', 'optimizer', 'param_schedulers'):
        _assert_equal(full[key], resumed[key], key)


def test_every_networks_losses_and_learning_rate_are_logged(trained):
    logs = [p for p in (trained / 'full').glob('*/vis_data/scalars.json')]
    assert len(logs) == 1
    first = json.loads(logs[0].read_text().splitlines()[0])
    assert {'net_a.loss', 'net_a.loss_mse', 'net_b.loss', 'net_b.loss_mse', 'net_a.lr', 'net_b.lr'} <= set(first)
