"""Attacks on CoLAD at model level: scoped network configs, per-network checkpoints that are missing or do not fit,
network names that clash with CoLAD's attributes, checkpoints of other networks (resume after a config change),
networks wrapped one DDP each, one AMP wrapper per network, and the switch statistics under bfloat16 autocast."""
import copy
import os
import socket
import warnings

import pytest
import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.runner.checkpoint import load_state_dict

from mmkd.models.distillers import CoLAD
from mmkd.models.task_modules import FisherCriterion, StdMeanCriterion, TwoGaussians
from mmkd.models.task_modules.switch_criteria import candidate_units
from .test_lad import batch, paa


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return fn(*args, **kwargs)


def pair(seed=0, **kwargs):
    torch.manual_seed(seed)
    model = CoLAD(networks=dict(big=paa(16), small=paa(8)), **kwargs)
    quiet(model.init_weights)
    return model


def optim(model, wrapper_type='OptimWrapper', lr=0.01):
    return build_optim_wrapper(
        model,
        dict(
            constructor='MultiNetworkOptimWrapperConstructor',
            **{k: dict(type=wrapper_type, optimizer=dict(type='SGD', lr=lr))
               for k in model.trainable_networks}))


def train_data(seed):
    inputs, samples = batch(seed=seed)
    return dict(inputs=list((inputs * 40 + 120).clamp(0, 255)), data_samples=samples)


def test_scoped_mmdet_networks_build_as_batched_lad_heads():
    model = CoLAD(networks=dict(r50='mmdet::paa/paa_r50_fpn_1x_coco.py', again='mmdet::paa/paa_r50_fpn_1x_coco.py'))
    for key in model.trainable_networks:
        assert type(getattr(model, key).bbox_head).__name__ == 'BatchedLADHead'
        assert getattr(model, key).backbone.depth == 50
    name, network = CoLAD.deployable(
        dict(networks=dict(r50='mmdet::paa/paa_r50_fpn_1x_coco.py'), predict_network='r50'))
    assert name == 'r50' and network['bbox_head']['type'] == 'PAAHead' and network['backbone']['depth'] == 50
    with pytest.raises(FileNotFoundError, match="networks.b 'mmdet::paa/no_such.py' could not be found"):
        CoLAD(networks=dict(a=paa(8), b='mmdet::paa/no_such.py'))


def test_network_checkpoint_errors_name_the_network_and_the_file(tmp_path):
    # was: a missing file failed in init_weights without naming the network; a checkpoint of another width, of a
    # whole CoLAD pair (keys 'x.*') or without detector weights loaded nothing, with a log warning only
    missing = str(tmp_path / 'missing.pth')
    with pytest.raises(FileNotFoundError, match=f"checkpoints.small .*network small.* '{missing}' is not a file"):
        CoLAD(networks=dict(big=paa(16), small=paa(8)), checkpoints=dict(small=missing))
    source = CoLAD(networks=dict(x=paa(16), y=paa(16)))
    wider, whole_pair, junk = tmp_path / 'w16.pth', tmp_path / 'pair.pth', tmp_path / 'junk.pth'
    torch.save(dict(state_dict=source.x.state_dict()), wider)
    torch.save(dict(state_dict=source.state_dict()), whole_pair)
    torch.save(dict(state_dict=dict(foo=torch.zeros(1))), junk)
    for path, why in ((wider, r'shape mismatches, first: backbone.conv1.weight: checkpoint \(16, 3, 7, 7\) vs model '
                       r'\(8, 3, 7, 7\)'), (whole_pair, 'unexpected keys, first: switch_units, x.backbone'),
                      (junk, 'missing keys')):
        model = CoLAD(networks=dict(big=paa(16), small=paa(8)), checkpoints=dict(small=str(path)))
        with pytest.raises(RuntimeError, match=f"network small \\(checkpoints.small\\) '{path}' does not fit.*{why}"):
            quiet(model.init_weights)


def test_network_checkpoint_of_a_colad_run_gives_the_network_it_deployed(tmp_path):
    source = pair(seed=3)
    cfg = Config(dict(model=dict(type='CoLAD', networks=dict(big=paa(16), small=paa(8)), predict_network='small')))
    path = tmp_path / 'colad_run.pth'
    torch.save(dict(state_dict=source.state_dict(), meta=dict(cfg=cfg.pretty_text)), path)
    model = CoLAD(networks=dict(a=paa(8), b=paa(8)), checkpoints=dict(b=str(path)))
    quiet(model.init_weights)
    for key, value in source.small.state_dict().items():
        torch.testing.assert_close(model.b.state_dict()[key], value, rtol=0, atol=0, msg=key)
    # the network without a checkpoint keeps its own initialisation
    assert not torch.equal(model.a.backbone.conv1.weight, source.small.backbone.conv1.weight)


@pytest.mark.parametrize('name', ['switch', 'switch_units', 'network_checkpoints', 'training', 'data_preprocessor'])
def test_network_names_that_clash_with_colad_attributes(name):
    # was: 'switch' a TypeError from torch about child modules, 'switch_units' a KeyError 'attribute already exists'
    with pytest.raises(ValueError, match=f"networks.{name}: '{name}' is an attribute of CoLAD already"):
        CoLAD(networks={'a': paa(8), name: paa(8)})


def test_checkpoint_of_other_networks_is_refused_not_mixed():
    """mmengine's resume and load_from load leniently (strict=False): a network renamed, reordered or resized in the
    config since the checkpoint would start from scratch (or, reordered, take the other's switch counts)."""
    saved = pair(seed=1)
    saved.switch_units += torch.tensor([5, 2])
    state = saved.state_dict()
    same = pair(seed=2)
    quiet(load_state_dict, same, state, strict=False)
    for key, value in state.items():
        torch.testing.assert_close(same.state_dict()[key], value, rtol=0, atol=0, msg=key)
    torch.manual_seed(0)
    reordered = CoLAD(networks=dict(small=paa(8), big=paa(16)))
    with pytest.raises(
            RuntimeError,
            match=r"holds the networks \['big', 'small'\] \(in this order\), the config "
            r"\['small', 'big'\]"):
        quiet(load_state_dict, reordered, state, strict=False)
    renamed = CoLAD(networks=dict(big=paa(16), tiny=paa(8)))
    with pytest.raises(RuntimeError, match=r"the config \['big', 'tiny'\]"):
        quiet(load_state_dict, renamed, state, strict=False)
    resized = CoLAD(networks=dict(big=paa(16), small=paa(16)))
    with pytest.raises(
            RuntimeError,
            match=r'do not fit .* small.backbone.conv1.weight: checkpoint \(8, 3, 7, 7\) '
            r'vs model \(16, 3, 7, 7\)'):
        quiet(load_state_dict, resized, state, strict=False)
    # nothing was loaded before the refusal
    assert int(resized.switch_units.sum()) == 0


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_train_step_under_one_ddp_per_network_equals_the_plain_step():
    """MMSeparateDistributedDataParallel (what distributed CoLAD runs under) wraps each network in a DDP, which hides
    the network's attributes: the step must reach the heads through it and run each network's forward through its
    DDP (the one that synchronises gradients). One process: the result equals the unwrapped step's."""
    from mmengine.model import MMSeparateDistributedDataParallel
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(_free_port()))
    torch_dist.init_process_group('gloo', rank=0, world_size=1)
    try:
        plain, wrapped = pair(seed=4), pair(seed=4)
        plain.train(), wrapped.train()
        ddp = MMSeparateDistributedDataParallel(wrapped)
        assert type(wrapped.big).__name__ == 'MMDistributedDataParallel'
        expected = quiet(plain.train_step, train_data(5), optim(plain))
        got = quiet(ddp.train_step, train_data(5), optim(wrapped))
    finally:
        torch_dist.destroy_process_group()
    assert set(got) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=1e-6, atol=1e-7, msg=key)
    unwrapped = {k.replace('.module.', '.', 1): v for k, v in wrapped.state_dict().items()}
    for key, value in plain.state_dict().items():
        torch.testing.assert_close(unwrapped[key], value, rtol=1e-6, atol=1e-7, msg=key)


def test_amp_every_network_runs_under_its_own_wrapper():
    model = pair(seed=6)
    model.train()
    wrappers = optim(model, 'CPUAmpOptimWrapper')
    assert wrappers['big'] is not wrappers['small']
    dtypes = {}

    def record(key):

        def hook(module, args, out):
            dtypes[key] = out[0].dtype

        return hook

    for key in model.trainable_networks:
        getattr(model, key).neck.register_forward_hook(record(key))
    before = {key: model.head_of(key).atss_cls.weight.detach().clone() for key in model.trainable_networks}
    log_vars = quiet(model.train_step, train_data(7), wrappers)
    assert dtypes == dict(big=torch.bfloat16, small=torch.bfloat16)
    assert all(torch.isfinite(v).all() for v in log_vars.values())
    for key in model.trainable_networks:  # each AMP wrapper stepped its own network
        assert 'loss_scaler' in wrappers[key].state_dict(), key
        assert not torch.equal(model.head_of(key).atss_cls.weight, before[key]), key


# per candidate: image, GT row, level; two images, two GT slots per image, two levels
IMAGE = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1])
GT_ROW = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
LEVEL = torch.tensor([0, 0, 1, 0, 0, 0, 1, 1, 1])


@pytest.mark.parametrize('granularity', ['batch', 'image', 'gt', 'gt_level'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_switch_statistics_are_not_computed_in_bfloat16(granularity, dtype):
    """Costs near 1 with spreads of ~1e-3: bfloat16 (8 bits of mantissa) would round the spread away."""
    g = torch.Generator().manual_seed(0)
    costs = [(1 + 1e-3 * torch.randn(9, generator=g)).to(dtype) for _ in range(2)]
    units = candidate_units(granularity, IMAGE, GT_ROW, LEVEL, num_imgs=2, gts_per_image=2, num_levels=2)
    criteria = [StdMeanCriterion(granularity, sync_batch=False)]
    fits = None
    if granularity != 'gt_level':
        criteria.append(FisherCriterion(granularity, sync_batch=False))
        means = torch.tensor([[1.0, 1.002], [1.0, 1.001], [1.0, 1.003], [0.0, 0.0]], dtype=torch.float64)
        fit = TwoGaussians(
            torch.full_like(means, 0.5), means, torch.full_like(means, 1e-6), torch.tensor([5, 3, 2, 0]),
            torch.ones(4, dtype=torch.bool))
        fits = [fit, fit._replace(means=means * 1.0005)]
    for criterion in criteria:
        plain = criterion.decide(costs, units, fits)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            autocast = criterion.decide(costs, units, fits)
        assert autocast.rho.dtype == torch.float64
        torch.testing.assert_close(autocast.rho, plain.rho, rtol=1e-6, atol=0, equal_nan=True)
        assert torch.equal(autocast.teacher, plain.teacher)
    # against float64 by hand: std / mean of the costs exactly as given
    rho = criteria[0].decide(costs, units).rho
    for unit in range(units.num_units):
        for net in range(2):
            values = costs[net][units.of_candidate == unit].double()
            if values.numel() >= 2:
                assert rho[net, unit].item() == pytest.approx((values.std() / values.mean()).item(), rel=1e-9)


def test_switched_losses_under_bfloat16_autocast_match_float32_costs():
    """The switch under autocast decides on float32 costs: the heads' bfloat16 outputs are costed in float32."""
    model = pair(seed=8)
    model.train()
    inputs, samples = batch(seed=9)
    seen = []
    criterion = model.switch
    decide = criterion.decide

    def spy(costs, units, fits=None):
        seen.extend(c.dtype for c in costs)
        return decide(costs, units, fits)

    criterion.decide = spy
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = quiet(model, inputs, copy.deepcopy(samples), mode='loss')
    assert seen and all(d in (torch.float32, torch.float64) for d in seen)
    assert all(torch.isfinite(v).all() for v in losses.values())


def test_clipped_gradient_norm_is_logged_per_network():
    """Was: both wrappers wrote 'train/grad_norm', so the logged grad_norm averaged the two networks' norms (or, with
    logger interval 1, showed the last network's only)."""
    from mmengine.logging import MessageHub
    model = pair(seed=10)
    model.train()
    data = train_data(11)
    reference = copy.deepcopy(model)
    losses, _ = quiet(reference.co_losses, **reference.data_preprocessor(copy.deepcopy(data), True))
    expected = {}
    for key, network_losses in losses.items():
        reference.zero_grad(set_to_none=True)
        sum(v for k, v in network_losses.items() if 'loss' in k).backward()
        grads = [p.grad for p in getattr(reference, key).parameters() if p.grad is not None]
        expected[key] = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item()
    wrappers = build_optim_wrapper(
        model,
        dict(
            constructor='MultiNetworkOptimWrapperConstructor',
            **{
                k: dict(optimizer=dict(type='SGD', lr=0.01), clip_grad=dict(max_norm=1e6))
                for k in model.trainable_networks
            }))
    hub = MessageHub.get_instance('test_clipped_gradient_norm_is_logged_per_network')
    for wrapper in wrappers.values():
        wrapper.message_hub = hub
    quiet(model.train_step, data, wrappers)
    assert 'train/grad_norm' not in hub.log_scalars
    for key, value in expected.items():
        assert hub.get_scalar(f'train/{key}.grad_norm').current() == pytest.approx(value, rel=1e-5), key
    assert expected['big'] != pytest.approx(expected['small'], rel=1e-3)


def test_prepare_distributed_gives_a_multi_network_config_one_ddp_per_network():
    """Was: a config with one optimizer per network and no model_wrapper_cfg got mmengine's one DDP for the whole
    model (which fails at the first step), and a configured MMSeparateDistributedDataParallel got device_ids=[rank],
    which DDP refuses on the CPU."""
    from mmkd.utils import prepare_distributed
    several = dict(constructor='MultiNetworkOptimWrapperConstructor', a=dict(optimizer=dict(type='SGD', lr=0.1)))
    cfg = Config(dict(launcher='slurm', optim_wrapper=several))
    prepare_distributed(cfg)
    assert cfg.model_wrapper_cfg.type == 'MMSeparateDistributedDataParallel'
    single = Config(dict(launcher='slurm', optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1))))
    prepare_distributed(single)
    assert single.get('model_wrapper_cfg') is None  # mmengine's default DDP
    if torch.cuda.is_available():
        return
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(_free_port()))
    torch_dist.init_process_group('gloo', rank=0, world_size=1)
    try:
        configured = Config(
            dict(
                launcher='pytorch',
                optim_wrapper=several,
                model_wrapper_cfg=dict(type='MMSeparateDistributedDataParallel', broadcast_buffers=False)))
        prepare_distributed(configured)
    finally:
        torch_dist.destroy_process_group()
    assert configured.model_wrapper_cfg == dict(
        type='MMSeparateDistributedDataParallel', broadcast_buffers=False, device_ids=None)
