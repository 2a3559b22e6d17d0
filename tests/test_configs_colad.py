"""The COCO configs of configs/colad reproduce the settings of the CoLAD paper's Tables 4, 5, 6 and 11 and of
LAD with the dynamic switch (Nguyen et al., WACV 2022, Sec. 3.4, 4.1-4.4, appendix C): which networks train
together, which starts from a COCO checkpoint, which one is validated, the switch criterion, each network's
optimizer and schedule. The expected values are typed from the paper; checkpoint URLs are checked against
mmdet's own PAA metafile. The CoLAD configs are also built (tests/test_configs.py builds every config) to check
that the model trains the networks the config names, in that order, with its switch and its per-network
optimizers."""
import glob
import os.path as osp

import mmdet
import pytest
import yaml
from mmengine.config import Config

from mmkd.registry import DET_MODELS
from .conftest import CONFIGS

COLAD_DIR = osp.join(CONFIGS, 'colad')
MMDET_CONFIGS = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs')
STD_MEAN = dict(type='StdMeanCriterion', granularity='gt_level')
FISHER = dict(type='FisherCriterion', granularity='gt')
SGD = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001)
# Sec. 4.1: 1x = 12 epochs, lr / 10 after epochs 8 and 11; 2x = 24 epochs, after 16 and 22
SCHEDULES = {'1x': (12, [8, 11]), '2x': (24, [16, 22])}

# a network: (ResNet depth, the mmdet PAA metafile model whose COCO checkpoint it starts from, or None: ImageNet)
R18, R50, R101 = (18, None), (50, None), (101, None)
R50_1X, R101_1X = (50, 'paa_r50_fpn_1x_coco'), (101, 'paa_r101_fpn_1x_coco')
# CoLAD rows: config -> (paper source, paper AP of the validated network, networks in order (the initial teacher
# first), validated network, switch, schedule)
# Table 4's pair (= Table 5 row 5): PAA-R50 from mmdet's COCO 1x checkpoint, PAA-R101 from ImageNet
TABLE4_PAIR = dict(r50=R50_1X, r101=R101)
COLAD = {
    'colad-stdmean_paa-r50-1x_paa-r101_fpn_1x_coco': ('Table 4, Table 5', 43.3, TABLE4_PAIR, 'r101', STD_MEAN, '1x'),
    'colad-fisher_paa-r50-1x_paa-r101_fpn_1x_coco': ('Table 4', 43.4, TABLE4_PAIR, 'r101', FISHER, '1x'),
    'colad-stdmean_paa-r50-1x_paa-r101_fpn_2x_coco': ('Table 4', 43.9, TABLE4_PAIR, 'r101', STD_MEAN, '2x'),
    'colad-fisher_paa-r50-1x_paa-r101_fpn_2x_coco': ('Table 4', 43.9, TABLE4_PAIR, 'r101', FISHER, '2x'),
    'colad_paa-r101_paa-r50_fpn_1x_coco': ('Table 5, Table 11', 41.3, dict(r101=R101, r50=R50), 'r50', STD_MEAN, '1x'),
    'colad_paa-r101-1x_paa-r50_fpn_1x_coco': ('Table 5', 41.6, dict(r101=R101_1X, r50=R50), 'r50', STD_MEAN, '1x'),
    'colad_paa-r101_paa-r50_fpn_2x_coco': ('Table 5', 42.4, dict(r101=R101, r50=R50), 'r50', STD_MEAN, '2x'),
    'colad_paa-r50_paa-r18_fpn_1x_coco': ('Table 6, Table 11', 36.5, dict(r50=R50, r18=R18), 'r18', STD_MEAN, '1x'),
    'colad_paa-r101_paa-r18_fpn_1x_coco': ('Table 6, Table 11', 36.6, dict(r101=R101, r18=R18), 'r18', STD_MEAN, '1x'),
}
# rows with one trained student and a fixed COCO-pretrained teacher: config -> (paper source, paper AP or None,
# distiller type, teacher depth, student depth, switch or None)
LAD = {
    'lad_paa-r50_paa-r18_fpn_1x_coco': ('Table 6, Table 11', 36.9, 'LADDistiller', 50, 18, None),
    'lad_paa-r101_paa-r18_fpn_1x_coco': ('Table 6, Table 11', 36.8, 'LADDistiller', 101, 18, None),
    'solad_paa-r50_paa-r18_fpn_1x_coco': ('Table 11', 38.0, 'SoLADDistiller', 50, 18, None),
    'solad_paa-r101_paa-r18_fpn_1x_coco': ('Table 11', 38.4, 'SoLADDistiller', 101, 18, None),
    'lad-switch_paa-r50_paa-r101_fpn_1x_coco': (None, None, 'LADDistiller', 50, 101, STD_MEAN),
    'lad-switch_paa-r101_paa-r50_fpn_1x_coco': (None, None, 'LADDistiller', 101, 50, STD_MEAN),
}
SWIN = 'lad-switch_paa-cop-x101-64x4d-dcn_paa-swin-b_fpn_ms-crop-3x_coco'
# the other configs: config -> (paper source, paper AP or None)
OTHERS = {
    'paa_r18_fpn_1x_coco': ('Table 6, Table 11', 35.8),
    SWIN: ('Sec. 4.4', 51.4),
    'paa_swin-b-p4-w7_fpn_ms-crop-3x_coco': (None, None),
    'paa-cop_x101-64x4d-dcn_fpn_ms-2x_coco': (None, None),
}
PAPER = {name: spec[:2] for name, spec in {**COLAD, **LAD, **OTHERS}.items()}


def _path(name: str) -> str:
    return osp.join(COLAD_DIR, name + '.py')


def _mmdet_paa_weights() -> dict:
    """Model name -> checkpoint URL, from the PAA metafile that mmdet ships."""
    with open(osp.join(MMDET_CONFIGS, 'paa', 'metafile.yml')) as f:
        return {m['Name']: m['Weights'] for m in yaml.safe_load(f)['Models']}


def _network(cfg) -> Config:
    """A network given as a model dict, or as a config file / ``mmdet::`` path whose ``model`` it is."""
    if not isinstance(cfg, str):
        return cfg
    if cfg.startswith('mmdet::'):
        cfg = osp.join(MMDET_CONFIGS, cfg[len('mmdet::'):])
    return Config.fromfile(cfg).model


def _check_resnet_paa(model, depth: int):
    assert model.type == 'PAA' and model.bbox_head.type == 'PAAHead'
    assert model.backbone.type == 'ResNet' and model.backbone.depth == depth
    assert model.backbone.init_cfg.checkpoint == f'torchvision://resnet{depth}'
    stages = {18: [64, 128, 256, 512], 50: [256, 512, 1024, 2048], 101: [256, 512, 1024, 2048]}[depth]
    assert model.neck.in_channels == stages


def _check_schedule(schedule, epochs: int, milestones: list):
    warmup, steps = schedule
    assert warmup.type == 'LinearLR' and not warmup.by_epoch and (warmup.begin, warmup.end) == (0, 500)
    assert steps.type == 'MultiStepLR' and steps.by_epoch and steps.gamma == 0.1
    assert (steps.end, steps.milestones) == (epochs, milestones)


def _check_coco_data(cfg):
    # Sec. 4.1: batch 16 (8 GPUs x 2 images), 1333x800 with horizontal flip
    assert cfg.train_dataloader.batch_size == 2 and cfg.auto_scale_lr.base_batch_size == 16
    resize, flip = cfg.train_pipeline[2], cfg.train_pipeline[3]
    assert resize.type == 'Resize' and resize.scale == (1333, 800) and resize.keep_ratio
    assert flip.type == 'RandomFlip' and flip.prob == 0.5


def test_every_config_is_a_paper_row():
    """Every COCO config here (but the COP ones) is checked below, and every row has its config."""
    found = {
        osp.splitext(osp.basename(p))[0]
        for p in glob.glob(osp.join(COLAD_DIR, '*_coco.py')) if not osp.basename(p).startswith('cop')
    }
    assert found == set(PAPER)


@pytest.mark.parametrize('name', sorted(COLAD))
def test_colad_config_matches_paper(name):
    _, _, networks, predict, switch, schedule = COLAD[name]
    cfg = Config.fromfile(_path(name))
    model = cfg.model
    assert cfg.custom_imports == dict(imports=['mmkd'], allow_failed_imports=False)
    assert model.type == 'CoLAD' and model.get('gmm_backend', 'torch') == 'torch'
    assert list(model.networks) == list(networks), 'the first network is the initial teacher'
    weights = _mmdet_paa_weights()
    expected_ckpts = {key: weights[ckpt] for key, (_, ckpt) in networks.items() if ckpt}
    assert dict(model.get('checkpoints') or {}) == expected_ckpts
    for key, (depth, _) in networks.items():
        _check_resnet_paa(_network(model.networks[key]), depth)
    assert model.predict_network == predict
    assert model.switch == switch

    # each network its own optimizer and schedule, both the paper's (Sec. 4.1)
    assert cfg.optim_wrapper.constructor == 'MultiNetworkOptimWrapperConstructor'
    assert sorted(k for k in cfg.optim_wrapper if k != 'constructor') == sorted(networks)
    epochs, milestones = SCHEDULES[schedule]
    assert sorted(cfg.param_scheduler) == sorted(networks)
    for key in networks:
        assert cfg.optim_wrapper[key].optimizer == SGD
        _check_schedule(cfg.param_scheduler[key], epochs, milestones)
    assert cfg.train_cfg.max_epochs == epochs
    _check_coco_data(cfg)


@pytest.mark.parametrize('name', sorted(LAD))
def test_lad_config_matches_paper(name):
    _, _, kind, teacher, student, switch = LAD[name]
    cfg = Config.fromfile(_path(name))
    model = cfg.model
    assert model.type == kind and model.assign_by == 'teacher'
    _check_resnet_paa(model.student, student)
    assert model.teacher_cfg == f'mmdet::paa/paa_r{teacher}_fpn_1x_coco.py'
    assert model.teacher_ckpt == _mmdet_paa_weights()[f'paa_r{teacher}_fpn_1x_coco']
    assert model.get('switch') == switch
    if kind == 'SoLADDistiller':  # Table 2's SoLAD: soft-label KL, gamma 0.5, box distillation
        assert model.soft_label_loss == dict(type='SoftLabelKLLoss', gamma=0.5, loss_weight=1.0)
        assert model.box_distill_loss == dict(type='GIoULoss', loss_weight=1.3)
    assert cfg.optim_wrapper.optimizer == SGD
    _check_schedule(cfg.param_scheduler, *SCHEDULES['1x'])
    assert cfg.train_cfg.max_epochs == 12
    _check_coco_data(cfg)


def test_paa_r18_baseline():
    cfg = Config.fromfile(_path('paa_r18_fpn_1x_coco'))
    _check_resnet_paa(cfg.model, 18)
    assert cfg.optim_wrapper.optimizer == SGD
    _check_schedule(cfg.param_scheduler, *SCHEDULES['1x'])
    _check_coco_data(cfg)


def test_swin_b_lad_with_switch():
    """Sec. 4.4: PAA-Swin-B learns from the PAA-COP ResNeXt-64x4d-101-DCN teacher by LAD with the dynamic switch,
    in Swin's own 3x setting (AdamW lr 1e-4, weight decay 0.05, 36 epochs, multi-scale, batch 16)."""
    cfg = Config.fromfile(_path(SWIN))
    model = cfg.model
    assert model.type == 'LADDistiller' and model.switch == STD_MEAN
    backbone = model.student.backbone
    assert backbone.type == 'SwinTransformer' and backbone.embed_dims == 128
    assert backbone.depths == [2, 2, 18, 2] and backbone.num_heads == [4, 8, 16, 32] and backbone.window_size == 7
    assert model.student.neck.in_channels == [128, 256, 512, 1024]
    # the ImageNet-1k Swin-B weights that mmdet's own configs use
    url = backbone.init_cfg.checkpoint
    mmdet_configs = glob.glob(osp.join(MMDET_CONFIGS, '**', '*.py'), recursive=True)
    assert any(url in open(p).read() for p in mmdet_configs), f'{url} is in none of mmdet configs'
    assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05)
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys['norm'] == dict(decay_mult=0.)
    warmup, steps = cfg.param_scheduler
    assert steps.milestones == [27, 33] and steps.end == 36 and cfg.train_cfg.max_epochs == 36
    assert cfg.train_dataloader.batch_size == 2 and cfg.auto_scale_lr.base_batch_size == 16
    scales = cfg.train_pipeline[3].transforms[0][0].scales
    assert min(s[1] for s in scales) == 480 and max(s[1] for s in scales) == 800

    teacher = _network(model.teacher_cfg)
    assert teacher.backbone.type == 'ResNeXt' and teacher.backbone.depth == 101
    assert (teacher.backbone.groups, teacher.backbone.base_width) == (64, 4) and teacher.backbone.dcn.type == 'DCN'
    assert teacher.bbox_head.type == 'COPHead'
    # the paper's teacher is not published: a local placeholder, not a download
    assert not model.teacher_ckpt.startswith(('http', 'open-mmlab', 'torchvision'))
    assert model.teacher_ckpt not in _mmdet_paa_weights().values()


def test_metafile_gives_the_paper_numbers():
    with open(osp.join(COLAD_DIR, 'metafile.yml')) as f:
        models = {m['Name']: m for m in yaml.safe_load(f)['Models']}
    for name, (source, ap) in PAPER.items():
        model = models[name]
        assert model['Config'] == f'configs/colad/{name}.py'
        assert model['Metadata'].get('Results Source') == source, name
        results = model.get('Results')
        if ap is None:
            assert results is None, f'{name}: the paper has no number for it'
        else:
            assert results[0]['Metrics']['box AP'] == ap, name


@pytest.mark.parametrize('name', sorted(COLAD))
def test_colad_model_builds_as_configured(name):
    """The built pair trains the configured networks in the configured order (first = initial teacher), with
    the configured switch, the COCO checkpoints of the networks, and one optimizer per network."""
    if DET_MODELS.get('CoLAD') is None:
        pytest.skip('mmkd has no CoLAD detector yet')
    from mmkd.engine import MultiNetworkOptimWrapperConstructor
    from mmkd.utils.build import build_in_scope

    _, _, networks, predict, switch, _ = COLAD[name]
    cfg = Config.fromfile(_path(name))
    model = build_in_scope(cfg.model, DET_MODELS)
    assert tuple(model.trainable_networks) == tuple(networks) and model.predict_network == predict
    assert type(model.switch).__name__ == switch['type'] and model.switch.granularity == switch['granularity']
    for key, (depth, ckpt) in networks.items():
        network = getattr(model, key)
        assert network.backbone.depth == depth
        assert model.network_checkpoints.get(key) == (_mmdet_paa_weights()[ckpt] if ckpt else None)
    optim_cfg = {k: v for k, v in cfg.optim_wrapper.items() if k != 'constructor'}
    wrappers = MultiNetworkOptimWrapperConstructor(optim_cfg)(model)
    for key in networks:
        params = {id(p) for p in getattr(model, key).parameters()}
        group_params = {id(p) for group in wrappers[key].optimizer.param_groups for p in group['params']}
        assert group_params == params, f'the optimizer of {key} should hold exactly its parameters'


@pytest.mark.parametrize(
    'path',
    sorted(
        glob.glob(osp.join(COLAD_DIR, 'colad*.py')) + glob.glob(osp.join(COLAD_DIR, 'lad-switch*.py')) +
        glob.glob(osp.join(CONFIGS, 'lad', 'lad-switch*.py'))),
    ids=osp.basename)
def test_switch_scalars_are_averaged_like_the_losses(path):
    """mmengine's LogProcessor averages only the scalars its mean_pattern matches and logs the others at the logging
    iteration: the switch configs add the switch scalars, so that the log and the switch plot show the window."""
    import re
    cfg = Config.fromfile(path)
    pattern = re.compile(cfg.log_processor.mean_pattern)
    for key in ('switch.share.w16', 'switch.rho.teacher', 'r50.loss_cls', 'time'):
        assert pattern.search(key), key
    assert not pattern.search('w16.lr')
