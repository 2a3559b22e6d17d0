"""The paper configs of domain-adaptive distillation (configs/seg_dakd, BDD100K / GTA5 -> Cityscapes): every config
has the settings of the paper (Kothandaraman et al., WACV 2021 workshops, supplementary Sec. 1 and Table 1) that
its name promises, builds its model and optimizers on CPU, one distillation config makes a training step, the
dataset configs read fake trees in the official layouts, and metafile.yml lists every config with the paper's
Table 1 numbers."""
import glob
import os
import os.path as osp
import re
from unittest import mock

import cv2
import mmengine.config.config as mmengine_config
import numpy as np
import pytest
import torch
import yaml
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from mmseg.datasets import CityscapesDataset
from mmseg.structures import SegDataSample

from mmkd.models.distillers import base_distiller
from mmkd.registry import SEG_DATASETS, SEG_MODELS
from mmkd.utils.build import build_in_scope, model_config
from .conftest import CONFIGS

FOLDER = osp.join(CONFIGS, 'seg_dakd')
TAIL = '_1xb2-40k_{src}-to-cityscapes-512x1024'
NAME = re.compile(r'^(?:(?P<kind>source-only|adaptseg)_deeplabv3plus-(?P<depth>r101|r18)-d8'
                  r'|dakd-(?P<row>i|ii|iii|iv|v|vi|vii)-(?P<paradigm>[abcd])_deeplabv3plus-r101-r18-d8)'
                  r'_1xb2-40k_(?P<src>bdd100k|gta5)-to-cityscapes-512x1024\.py$')
PAPER_CONFIGS = sorted(p for p in glob.glob(osp.join(FOLDER, '*.py')) if 'toy' not in osp.basename(p))
SOURCES = dict(
    bdd100k=dict(type='BDD100KDataset', img='images/10k/train', seg='labels/sem_seg/masks/train'),
    gta5=dict(type='GTA5Dataset', img='images', seg='labels'))
# supplementary Table 1: the best lambda of each row
ROWS = dict(
    i=dict(kl=0.4),
    ii=dict(mse=0.01),
    iii=dict(ce=1.0),
    iv=dict(kl=0.4, mse=0.01),
    v=dict(kl=0.1, ce=1.0),
    vi=dict(mse=0.01, ce=1.0),
    vii=dict(kl=0.1, mse=0.01, ce=1.0))
LOSS_TYPES = dict(kl='PixelKLLoss', mse='PixelMSELoss', ce='QuasiTeacherCELoss')
DOMAINS = dict(a=('source', ), b=('target', ), c=('source', 'target'), d=('target', ))
DISCRIMINATOR = dict(type='OutputSpaceDiscriminator', base_channels=64, num_convs=5, negative_slope=0.2)
ADV_WEIGHTS = dict(decode_head=1e-3, auxiliary_head=2e-4)
SGD = dict(type='SGD', lr=2.5e-4, momentum=0.9, nesterov=True, weight_decay=1e-4)
ADAM = dict(type='Adam', lr=1e-4, betas=(0.9, 0.99))
POLY = [dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=40000, by_epoch=False)]
BACKBONES = dict(r101='open-mmlab://resnet101_v1c', r18='open-mmlab://resnet18_v1c')
# mmseg's DeepLabV3+ widths: (decode in, decode channels, c1 in, c1 channels, aux in, aux channels)
WIDTHS = dict(r101=(2048, 512, 256, 48, 1024, 256), r18=(512, 128, 64, 12, 256, 64))


@pytest.fixture(scope='module', autouse=True)
def _read_mmseg_metafiles_once():
    """mmengine reads all of mmseg's metafiles again for every ``mmseg::`` base path (about 0.5 s each, a dozen per
    distillation config: its student's and teacher's configs too); the answers do not change within this module."""
    original, answers = mmengine_config._get_external_cfg_path, {}

    def memoised(package_path, cfg_file):
        key = (package_path, cfg_file)
        if key not in answers:
            try:
                answers[key] = (original(package_path, cfg_file), None)
            except ValueError as error:  # a base config, which has no metafile entry: mmengine falls back on it
                answers[key] = (None, error)
        path, error = answers[key]
        if error is not None:
            raise error
        return path

    with mock.patch.object(mmengine_config, '_get_external_cfg_path', memoised):
        yield


@pytest.fixture(scope='module')
def teachers_built_once():
    """Each source's distillation configs share one teacher config (checked by test_config_settings): build the
    frozen R101 teacher once per config path instead of once per distillation config."""
    built = {}

    def build_teacher(cfg, checkpoint, registry):
        if not isinstance(cfg, str) or checkpoint is not None:
            return original(cfg, checkpoint, registry)
        if cfg not in built:
            built[cfg] = original(cfg, checkpoint, registry)
        return built[cfg]

    original = base_distiller.build_teacher
    with mock.patch.object(base_distiller, 'build_teacher', build_teacher):
        yield


def config_name(kind: str, src: str, depth: str = None, row: str = None, paradigm: str = None) -> str:
    if kind == 'dakd':
        return f'dakd-{row}-{paradigm}_deeplabv3plus-r101-r18-d8' + TAIL.format(src=src)
    return f'{kind}_deeplabv3plus-{depth}-d8' + TAIL.format(src=src)


def _parts(path: str) -> dict:
    match = NAME.match(osp.basename(path))
    assert match, f'{osp.basename(path)} does not follow the naming of configs/seg_dakd'
    parts = match.groupdict()
    parts['kind'] = parts['kind'] or 'dakd'
    return parts


def _ids(paths):
    return [osp.basename(p).split('_1xb2')[0] + '_' + _parts(p)['src'] for p in paths]


def test_every_paper_row_has_a_config():
    expected = set()
    for src in SOURCES:
        for depth in ('r101', 'r18'):
            expected |= {config_name('source-only', src, depth), config_name('adaptseg', src, depth)}
        expected |= {config_name('dakd', src, row=row, paradigm='a') for row in ROWS}
        expected |= {config_name('dakd', src, row='vii', paradigm=p) for p in 'bcd'}
    assert {osp.basename(p)[:-3] for p in PAPER_CONFIGS} == expected and len(expected) == 28


def _segmentor_settings(model: dict, depth: str) -> None:
    """An mmseg DeepLabV3+ of the given depth, 19 classes, ImageNet backbone, 512 x 1024 batches."""
    assert model.type == 'EncoderDecoder' and model.pretrained == BACKBONES[depth]
    assert (model.backbone.type, model.backbone.depth) == ('ResNetV1c', int(depth[1:]))
    assert model.backbone.dilations == (1, 1, 2, 4) and model.backbone.strides == (1, 2, 1, 1)  # output stride 8
    head, aux = model.decode_head, model.auxiliary_head
    assert head.type == 'DepthwiseSeparableASPPHead' and aux.type == 'FCNHead' and aux.in_index == 2
    assert (head.in_channels, head.channels, head.c1_in_channels, head.c1_channels, aux.in_channels,
            aux.channels) == WIDTHS[depth]
    assert head.num_classes == aux.num_classes == 19
    assert model.data_preprocessor.size == (512, 1024)


def _pipeline_types(pipeline) -> list:
    return [t['type'] for t in pipeline]


@pytest.mark.parametrize('path', PAPER_CONFIGS, ids=_ids(PAPER_CONFIGS))
def test_config_settings(path):
    parts = _parts(path)
    kind, src = parts['kind'], parts['src']
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmseg' and 'mmkd' in cfg.custom_imports.imports

    # data: a labelled source batch and an unlabelled Cityscapes batch of 2 each; Cityscapes val, mIoU
    train = cfg.train_dataloader
    assert train.batch_size == 2 and train.sampler.type == 'InfiniteSampler'
    spec = SOURCES[src]
    source = train.dataset if kind == 'source-only' else train.dataset.source
    assert (source.type, source.data_root,
            dict(source.data_prefix)) == (spec['type'], f'data/{src}/',
                                          dict(img_path=spec['img'], seg_map_path=spec['seg']))
    steps = [
        'LoadImageFromFile', 'LoadAnnotations', 'RandomResize', 'RandomCrop', 'RandomFlip', 'PhotoMetricDistortion',
        'PackSegInputs'
    ]
    assert _pipeline_types(source.pipeline) == steps
    resize = dict(type='RandomResize', scale=(2048, 1024), ratio_range=(0.5, 2.0), keep_ratio=True)
    assert {k: v for k, v in source.pipeline[2].items() if k != '_scope_'} == resize
    assert source.pipeline[3].crop_size == (512, 1024)
    if kind != 'source-only':
        assert train.dataset.type == 'TwoDomainDataset'
        target = train.dataset.target
        assert (target.type, target.data_root, dict(target.data_prefix)) == ('CityscapesDataset', 'data/cityscapes/',
                                                                             dict(img_path='leftImg8bit/train'))
        assert _pipeline_types(target.pipeline) == [s for s in steps if s != 'LoadAnnotations']
        assert dict(target.pipeline[1]) == resize
        assert dict(target.pipeline[2]) == dict(type='RandomCrop', crop_size=(512, 1024))
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        val = loader.dataset
        assert (val.type, val.data_root,
                dict(val.data_prefix)) == ('CityscapesDataset', 'data/cityscapes/',
                                           dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'))
        assert 'classes' not in val.get('metainfo', {})  # the 19 Cityscapes classes
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        assert (evaluator.type, evaluator.iou_metrics) == ('IoUMetric', ['mIoU'])

    # optimisation (supplementary Sec. 1); 40k iterations, the last one saved
    assert (cfg.train_cfg.type, cfg.train_cfg.max_iters) == ('IterBasedTrainLoop', 40000)
    assert 40000 % cfg.default_hooks.checkpoint.interval == 0 and 40000 % cfg.train_cfg.val_interval == 0
    if kind == 'source-only':
        student_optim, scheduler = cfg.optim_wrapper, cfg.param_scheduler
        assert 'model_wrapper_cfg' not in cfg
    else:
        assert set(cfg.optim_wrapper) == {'constructor', 'student', 'discriminator'}
        assert cfg.optim_wrapper.constructor == 'MultiNetworkOptimWrapperConstructor'
        student_optim, scheduler = cfg.optim_wrapper.student, cfg.param_scheduler.student
        disc = cfg.optim_wrapper.discriminator
        assert disc.type == 'OptimWrapper' and dict(disc.optimizer) == ADAM
        assert cfg.param_scheduler.discriminator == POLY
        assert cfg.model_wrapper_cfg.type == 'MMSeparateDistributedDataParallel'
    assert student_optim.type == 'OptimWrapper' and dict(student_optim.optimizer) == SGD
    assert [{k: v for k, v in s.items() if k != '_scope_'} for s in scheduler] == POLY

    # the models
    model = cfg.model
    if kind == 'source-only':
        _segmentor_settings(model, parts['depth'])
        return
    assert dict(model.discriminator) == DISCRIMINATOR and dict(model.adv_weights) == ADV_WEIGHTS
    folder = osp.dirname(path)
    if kind == 'adaptseg':
        assert model.type == 'SegOutputSpaceAdaptation'
        assert model.student == osp.join(folder, config_name('source-only', src, parts['depth']) + '.py')
        _segmentor_settings(model_config(model.student), parts['depth'])
        return
    row, paradigm = parts['row'], parts['paradigm']
    teacher = config_name('adaptseg', src, 'r101')
    assert model.type == 'DomainAdaptiveDistiller'
    assert model.student == osp.join(folder, config_name('source-only', src, 'r18') + '.py')
    assert model.teacher_cfg == osp.join(folder, teacher + '.py')
    assert model.teacher_ckpt == f'work_dirs/{teacher}/iter_40000.pth'
    losses = {term: (loss.type, loss.loss_weight) for term, loss in model.distill_losses.items()}
    assert losses == {term: (LOSS_TYPES[term], weight) for term, weight in ROWS[row].items()}
    assert all(set(loss) == {'type', 'loss_weight'} for loss in model.distill_losses.values())  # plain KL, decode
    assert tuple(model.distill_domains) == DOMAINS[paradigm]
    expected_load = (f'work_dirs/{config_name("dakd", src, row="vii", paradigm="c")}/iter_40000.pth'
                     if paradigm == 'd' else None)
    assert cfg.load_from == expected_load


def _named_params(module) -> dict:
    return {id(p): name for name, p in module.named_parameters()}


@pytest.mark.parametrize('path', PAPER_CONFIGS, ids=_ids(PAPER_CONFIGS))
def test_model_and_optimizers_build(path, teachers_built_once):
    """The model builds (no checkpoint: random teacher, no ImageNet weights fetched at build) and the runner's
    optimizer wrappers give each network the paper's optimizer."""
    parts = _parts(path)
    cfg = Config.fromfile(path)
    if 'teacher_ckpt' in cfg.model:
        cfg.model.teacher_ckpt = None
    no_loading = AssertionError('a checkpoint was loaded at build')
    with mock.patch('mmengine.runner.checkpoint.CheckpointLoader.load_checkpoint', side_effect=no_loading):
        model = build_in_scope(cfg.model, SEG_MODELS)
    with DefaultScope.overwrite_default_scope('mmseg'):
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    if parts['kind'] == 'source-only':
        wrappers, networks = dict(student=optim_wrapper), dict(student=model)
        student = model
    else:
        wrappers, student = dict(optim_wrapper.items()), model.student
        networks = dict(student=student, discriminator=model.discriminator)
        assert set(model.discriminator) == {'decode_head', 'auxiliary_head'}
        for disc in model.discriminator.values():
            convs = [m for m in disc.modules() if isinstance(m, torch.nn.Conv2d)]
            assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(19, 64, (4, 4)),
                                                                                       (64, 128, (4, 4)),
                                                                                       (128, 256, (4, 4)),
                                                                                       (256, 512, (4, 4)),
                                                                                       (512, 1, (4, 4))]
    assert set(wrappers) == set(networks)
    depth = 18 if parts['kind'] == 'dakd' else int(parts['depth'][1:])
    assert student.backbone.depth == depth and student.decode_head.out_channels == 19
    assert not student.backbone.is_init
    if parts['kind'] == 'dakd':
        assert model.teacher.backbone.depth == 101 and model.teacher.decode_head.out_channels == 19
        assert not any(p.requires_grad for p in model.teacher.parameters())
        assert {term: loss.loss_weight for term, loss in model.distill_losses.items()} == ROWS[parts['row']]
        assert model.distilled_domains() == DOMAINS[parts['paradigm']]
    for name, wrapper in wrappers.items():
        optimizer = wrapper.optimizer
        # every trainable parameter of the network, and only those, in its own optimizer
        params = [p for group in optimizer.param_groups for p in group['params']]
        assert sorted(id(p) for p in params) == sorted(id(p) for p in networks[name].parameters() if p.requires_grad)
        for group in optimizer.param_groups:
            if name == 'student':
                assert isinstance(optimizer, torch.optim.SGD)
                assert (group['lr'], group['momentum'], group['nesterov'], group['weight_decay']) == (2.5e-4, 0.9, True,
                                                                                                      1e-4)
            else:
                assert isinstance(optimizer, torch.optim.Adam)
                assert (group['lr'], group['betas'], group['weight_decay']) == (1e-4, (0.9, 0.99), 0)


def _two_domain_batch(size=(64, 128), num=2, seed=0) -> dict:
    rng = np.random.RandomState(seed)
    batch = {}
    for domain in ('source', 'target'):
        inputs, samples = [], []
        for _ in range(num):
            inputs.append(torch.from_numpy(rng.randint(0, 256, (3, *size)).astype(np.uint8)))
            sample = SegDataSample(metainfo=dict(img_shape=size, ori_shape=size, pad_shape=size))
            if domain == 'source':
                label = rng.randint(0, 19, (1, *size))
                label[:, :8] = 255
                sample.gt_sem_seg = PixelData(data=torch.from_numpy(label).long())
            samples.append(sample)
        batch[domain] = dict(inputs=inputs, data_samples=samples)
    return batch


def test_source_target_distillation_config_trains_one_step(teachers_built_once):
    """Paradigm (c) of BDD100K -> Cityscapes, as configured (random teacher; 64 x 128 images instead of 512 x 1024
    crops, to stay fast on a CPU): one iteration updates the student with its supervised, distillation (both
    domains) and adversarial terms, and the discriminators, each through its own optimizer."""
    path = osp.join(FOLDER, config_name('dakd', 'bdd100k', row='vii', paradigm='c') + '.py')
    cfg = Config.fromfile(path)
    cfg.model.teacher_ckpt = None
    cfg.model.student = model_config(cfg.model.student)
    cfg.model.student.data_preprocessor.size = (64, 128)
    torch.manual_seed(0)
    model = build_in_scope(cfg.model, SEG_MODELS)
    with DefaultScope.overwrite_default_scope('mmseg'):
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    teacher_before = {name: p.detach().clone() for name, p in model.teacher.named_parameters()}
    model.train()
    log_vars = model.train_step(_two_domain_batch(), optim_wrapper)
    terms = {f'student.{d}.decode.loss_{t}' for d in ('source', 'target') for t in ('kl', 'mse', 'ce')}
    terms |= {'student.decode.loss_ce', 'student.aux.loss_ce', 'student.decode.loss_adv', 'student.aux.loss_adv'}
    terms |= {f'discriminator.{h}.loss_{d}' for h in ('decode', 'aux') for d in ('source', 'target')}
    assert terms <= set(log_vars), sorted(log_vars)
    assert all(torch.isfinite(torch.as_tensor(log_vars[k])) for k in terms)
    changed = {name.split('.')[0] for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed == {'student', 'discriminator'}
    assert all(torch.equal(p, teacher_before[name]) for name, p in model.teacher.named_parameters())


# ---------------------------------------------------------------------------------------------- fake dataset trees
def _write(path: str, array: np.ndarray) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, array)


def _image(height: int, width: int) -> np.ndarray:
    ramp = np.linspace(0, 255, width, dtype=np.uint8)
    return np.stack([np.broadcast_to(ramp, (height, width))] * 3, axis=-1).copy()


def _cityscapes_tree(root: str) -> None:
    """Official layout: leftImg8bit/<split>/<city>/<name>_leftImg8bit.png and, as mmseg's converter writes them,
    gtFine/<split>/<city>/<name>_gtFine_labelTrainIds.png; images of 1024 x 2048."""
    for split, city in (('train', 'aachen'), ('val', 'frankfurt')):
        stem = f'{city}_000000_000019'
        _write(osp.join(root, 'leftImg8bit', split, city, f'{stem}_leftImg8bit.png'), _image(1024, 2048))
        label = np.full((1024, 2048), 255, np.uint8)
        label[:512], label[512:] = 10, 0  # sky over road
        _write(osp.join(root, 'gtFine', split, city, f'{stem}_gtFine_labelTrainIds.png'), label)


def _bdd100k_tree(root: str) -> set:
    """Official layout: images/10k/<split>/<name>.jpg, labels/sem_seg/masks/<split>/<name>.png (train ids, 255:
    unlabelled); frames of 720 x 1280. Returns the train ids written."""
    label = np.full((720, 1280), 255, np.uint8)
    label[:300], label[400:] = 2, 0  # building over road, a band of unlabelled pixels between
    for name in ('7d06fefd-f7be05a6', '7d128593-0ccfea4c'):
        _write(osp.join(root, 'images', '10k', 'train', f'{name}.jpg'), _image(720, 1280))
        _write(osp.join(root, 'labels', 'sem_seg', 'masks', 'train', f'{name}.png'), label)
    return {2, 0, 255}


def _gta5_tree(root: str) -> set:
    """Official layout: images/NNNNN.png, labels/NNNNN.png with Cityscapes label ids; frames of 1052 x 1914.
    Returns the train ids that the labels' ids stand for."""
    label = np.zeros((1052, 1914), np.uint8)  # 0: unlabelled
    label[:400], label[500:] = 26, 7  # car over road
    for name in ('00001', '00002'):
        _write(osp.join(root, 'images', f'{name}.png'), _image(1052, 1914))
        _write(osp.join(root, 'labels', f'{name}.png'), label)
    return {13, 0, 255}  # car, road, ignored


@pytest.mark.parametrize('src', list(SOURCES))
def test_datasets_read_fake_trees_in_the_official_layouts(tmp_path, src):
    """The training set of the (a) config pairs a labelled 512 x 1024 source crop (labels as Cityscapes train ids)
    with an unlabelled 512 x 1024 Cityscapes crop; validation reads Cityscapes val at 1024 x 2048 with its labels."""
    cfg = Config.fromfile(osp.join(FOLDER, config_name('dakd', src, row='vii', paradigm='a') + '.py'))
    root = str(tmp_path)
    _cityscapes_tree(osp.join(root, 'cityscapes'))
    train_ids = (_bdd100k_tree if src == 'bdd100k' else _gta5_tree)(osp.join(root, src))
    train = cfg.train_dataloader.dataset
    train.source.data_root = osp.join(root, src)
    train.target.data_root = val_root = osp.join(root, 'cityscapes')
    val = cfg.val_dataloader.dataset
    val.data_root = val_root
    np.random.seed(0)
    with DefaultScope.overwrite_default_scope('mmseg'):
        train_set, val_set = SEG_DATASETS.build(train), SEG_DATASETS.build(val)
    assert (len(train_set), len(train_set.source), len(train_set.target), len(val_set)) == (2, 2, 1, 1)
    assert val_set.metainfo['classes'] == CityscapesDataset.METAINFO['classes']
    assert train_set.metainfo['classes'] == CityscapesDataset.METAINFO['classes']
    for index in range(2):
        item = train_set[index]
        source, target = item['source'], item['target']
        # the source frames are not 2:1: at a random scale of 0.5 a frame is narrower than the crop
        height, width = source['inputs'].shape[-2:]
        assert height <= 512 and width <= 1024 and (height == 512 or width == 1024), (height, width)
        labels = source['data_samples'].gt_sem_seg.data
        assert labels.shape[-2:] == source['inputs'].shape[-2:]
        assert set(labels.unique().tolist()) <= train_ids and set(labels.unique().tolist()) - {255}
        assert tuple(target['inputs'].shape) == (3, 512, 1024)
        assert 'gt_sem_seg' not in target['data_samples'] and 'seg_map_path' not in target['data_samples'].metainfo
    item = val_set[0]
    assert tuple(item['inputs'].shape) == (3, 1024, 2048)
    assert set(item['data_samples'].gt_sem_seg.data.unique().tolist()) == {0, 10}


# ---------------------------------------------------------------------------------------------------- metafile
# supplementary Table 1 (BDD100K -> Cityscapes, paradigm (a)), the best lambda of each row: mIoU, "mAcc"
PAPER = dict(
    i=(40.27, 87.15),
    ii=(39.86, 87.17),
    iii=(42.18, 88.28),
    iv=(40.32, 87.15),
    v=(41.92, 88.3),
    vi=(42.2, 88.54),
    vii=(42.33, 88.42))
# the per-class IoUs of those rows (road ... bicycle), read off the same table; row (iv)'s are illegible in the
# project's copy of the supplementary
PER_CLASS = dict(
    i=(90.63, 51.2, 79.53, 18.11, 21.67, 24.96, 20.75, 35.54, 81.29, 29.08, 74.86, 47.71, 14.81, 79.65, 23.94, 34.39,
       0.46, 8.32, 28.28),
    ii=(90.92, 50.78, 79.45, 19.59, 21.23, 23.55, 18.82, 36.34, 81.06, 29.12, 75.31, 47.05, 12.5, 79.99, 23.05, 33.07,
        0.86, 7.48, 27.21),
    iii=(92.27, 55.57, 80.26, 19.2, 24.6, 25.66, 21.98, 36.03, 82.88, 34.75, 77.52, 48.42, 17.72, 82.06, 24.57, 37.29,
         0.14, 9.32, 31.2),
    v=(92.4, 53.8, 80.44, 18.62, 24.52, 25.61, 22.17, 36.95, 82.63, 33.45, 78.14, 48.18, 14.92, 81.72, 26.63, 35.9,
       0.09, 8.95, 31.43),
    vi=(92.62, 54.64, 80.71, 18.19, 23.17, 26.04, 22.63, 35.32, 82.98, 34.49, 78.13, 48.35, 16.19, 82.93, 27.17, 37.28,
        0.04, 8.72, 32.17),
    vii=(92.41, 53.91, 80.57, 19.3, 22.89, 26.88, 23.03, 36.05, 82.59, 34.67, 77.42, 48.39, 15.39, 82.8, 27.57, 40.04,
         0.03, 9.22, 31.12))


def test_metafile_lists_every_config_with_the_paper_numbers():
    with open(osp.join(FOLDER, 'metafile.yml')) as f:
        meta = yaml.safe_load(f)
    models = {m['Name']: m for m in meta['Models']}
    assert sorted(m['Config'] for m in models.values()) == sorted(
        osp.relpath(p, osp.dirname(CONFIGS)) for p in glob.glob(osp.join(FOLDER, '*.py')))
    assert meta['Collections'][0]['Paper']['URL'] == 'https://arxiv.org/abs/2011.08007'
    for path in PAPER_CONFIGS:
        parts = _parts(path)
        model = models[osp.basename(path)[:-3]]
        assert model['Metadata']['Iterations'] == 40000 and model['Metadata']['Batch Size'] == 2
        if parts['kind'] == 'dakd' and parts['paradigm'] == 'a' and parts['src'] == 'bdd100k':
            (result, ) = model['Results']
            assert (result['Dataset'], result['Task']) == ('Cityscapes', 'Semantic Segmentation')
            assert (result['Metrics']['mIoU'], result['Metrics']['mAcc']) == PAPER[parts['row']]
            assert 'Table 1' in model['Metadata']['Results Source']
        else:
            assert 'Results' not in model, model['Name']  # the supplementary has no number for it


@pytest.mark.parametrize('row', list(PER_CLASS))
def test_paper_miou_is_the_mean_of_its_per_class_ious(row):
    """An independent check of the transcription: each mIoU equals the mean of its row's 19 class IoUs."""
    assert len(PER_CLASS[row]) == 19
    assert round(sum(PER_CLASS[row]) / 19, 2) == PAPER[row][0]
