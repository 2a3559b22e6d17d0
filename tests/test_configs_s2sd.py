"""The paper-table configs of S2SD (configs/s2sd): every config has the settings of the paper's supplementary (A.2,
B, Tables 4 and 6) that its name promises; one config per (criterion, dataset) builds with the optimizer that the
runner would make (tests/test_configs.py builds every config); the paper's numbers in metafile.yml equal
README.md's tables."""
import glob
import os.path as osp
import re
from unittest import mock

import cv2
import numpy as np
import pytest
import torch
import yaml
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

from mmkd.models.embedding.s2sd import S2SDEmbedder
from mmkd.registry import MODELS, TRANSFORMS
from mmkd.utils.build import build_in_scope
from .conftest import CONFIGS

FOLDER = osp.join(CONFIGS, 's2sd')
NAME = re.compile(r'^(?:embedder|s2sd-(?P<variant>dsd|dsda|msd|msda|msdf|msdfa))_r50-d(?P<dim>128|512)_'
                  r'(?P<crit>margin|rmargin|ms|proxyanchor)_(?P<data>cub|cars|sop)\.py$')
PAPER_CONFIGS = sorted(p for p in glob.glob(osp.join(FOLDER, '*.py')) if not p.endswith('_toy.py'))
CRITERIA = ('margin', 'rmargin', 'ms', 'proxyanchor')
DATA = dict(
    cub=dict(type='CUB200Dataset', classes=100, p_switch=0.4, epochs=150, feat=50.0),
    cars=dict(type='Cars196Dataset', classes=98, p_switch=0.35, epochs=150, feat=50.0),
    sop=dict(type='SOPDataset', classes=11318, p_switch=0.15, epochs=100, feat=5.0))
IMAGENET_R50 = 'https://download.pytorch.org/models/resnet50-0676ba61.pth'


def _parts(path: str) -> dict:
    match = NAME.match(osp.basename(path))
    assert match, f'{osp.basename(path)} does not follow the naming of configs/s2sd/README.md'
    parts = match.groupdict()
    parts['variant'] = parts['variant'] or 'baseline'
    return parts


def test_every_paper_row_has_a_config():
    names = {osp.basename(p) for p in PAPER_CONFIGS}
    expected = set()
    for crit in CRITERIA:
        dim = 512 if crit == 'proxyanchor' else 128
        variants = ('dsd', 'msd', 'msdf') if crit == 'proxyanchor' else ('dsd', 'dsda', 'msd', 'msda', 'msdf', 'msdfa')
        for data in DATA:
            expected.add(f'embedder_r50-d{dim}_{crit}_{data}.py')
            expected.update(f's2sd-{v}_r50-d{dim}_{crit}_{data}.py' for v in variants)
    assert names == expected and len(names) == 3 * 3 * 7 + 3 * 4


@pytest.mark.parametrize('path', PAPER_CONFIGS, ids=[osp.basename(p) for p in PAPER_CONFIGS])
def test_config_settings(path):
    parts = _parts(path)
    crit, data, variant = parts['crit'], parts['data'], parts['variant']
    spec = DATA[data]
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmkd'
    model = cfg.model

    # the embedder: frozen-BN ImageNet ResNet-50, L2-normalised embedding
    if variant == 'baseline':
        assert model.type == 'ImageEmbedder'
        embedder = model
    else:
        assert model.type == 'S2SDEmbedder'
        embedder = model.embedder
    backbone = embedder.backbone
    assert (backbone.type, backbone.depth, backbone.out_indices, backbone.norm_eval) == ('ResNet', 50, (3, ), True)
    assert backbone.get('frozen_stages', -1) == -1 and 'norm_cfg' not in backbone  # BN affine parameters train
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=IMAGENET_R50)
    assert embedder.normalize is True
    if crit == 'proxyanchor':
        assert (embedder.embed_dim, embedder.pooling) == (512, 'avg_max')
    else:
        assert (embedder.embed_dim, embedder.pooling) == (128, 'avg')

    # the criterion (supplementary B; beta 0.9 for S2SD with the margin loss on SOP, Table 4's footnote)
    loss = embedder.loss
    if crit in ('margin', 'rmargin'):
        beta = 0.9 if (crit, data) == ('margin', 'sop') and variant != 'baseline' else 1.2
        assert loss.type == ('MarginLoss' if crit == 'margin' else 'RegularizedMarginLoss')
        settings = (loss.margin, loss.beta, loss.learn_beta, loss.num_classes, loss.cutoff)
        assert settings == (0.2, beta, True, spec['classes'], 0.5)
        assert loss.get('p_switch') == (spec['p_switch'] if crit == 'rmargin' else None)
    elif crit == 'ms':
        assert dict(loss) == dict(type='MultiSimilarityLoss', alpha=2.0, beta=40.0, base=0.5, epsilon=0.1)
    else:
        assert dict(loss) == dict(
            type='ProxyAnchorLoss', num_classes=spec['classes'], embedding_size=512, margin=0.1, alpha=32.0)

    # the S2SD variant
    hooks = [h.type for h in cfg.custom_hooks]
    assert hooks[:2] == ['SamplerBatchCheckHook', 'SyncBuffersHook']
    if variant == 'baseline':
        assert hooks == ['SamplerBatchCheckHook', 'SyncBuffersHook']
    else:
        assert model.target_dims == ((2048, ) if variant.startswith('dsd') else (512, 1024, 1536, 2048))
        assert model.target_pooling == ('avg_max' if variant.endswith('a') else 'avg')
        assert (model.distill_weight, model.temperature) == (50.0, 1.0)
        assert model.get('detach_targets', True) is True and model.get('target_loss') is None
        with_f = 'f' in variant
        assert model.get('feat_distill_weight', 0.0) == (spec['feat'] if with_f else 0.0)
        feature_hooks = [h for h in cfg.custom_hooks if h.type == 'S2SDFeatureDistillationHook']
        assert feature_hooks == ([dict(type='S2SDFeatureDistillationHook', start_iter=1000)] if with_f else [])

    # optimisation (A.2; ProxyAnchor: Kim et al.'s AdamW 1e-4, proxies x 100)
    optimizer = cfg.optim_wrapper.optimizer
    if crit == 'proxyanchor':
        assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == ('AdamW', 1e-4, 3e-4)
        assert cfg.optim_wrapper.paramwise_cfg == dict(custom_keys={'loss.proxies': dict(lr_mult=100.0)})
    else:
        assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == ('Adam', 1e-5, 3e-4)
        if crit == 'ms':
            assert 'paramwise_cfg' not in cfg.optim_wrapper
        else:
            assert cfg.optim_wrapper.paramwise_cfg == dict(custom_keys={'loss.beta': dict(lr_mult=50.0)})
    assert cfg.param_scheduler == []
    assert (cfg.train_cfg.type, cfg.train_cfg.max_epochs) == ('EpochBasedTrainLoop', spec['epochs'])
    assert spec['epochs'] % cfg.train_cfg.val_interval == 0  # the last epoch is validated
    assert spec['epochs'] % cfg.default_hooks.checkpoint.interval == 0  # and saved

    # data: batches of 112 = 56 classes x 2, random resized crop 224 + flip; test: short side 256, centre crop 224
    train = cfg.train_dataloader
    assert train.batch_size == train.sampler.batch_size == 112
    assert (train.sampler.type, train.sampler.instances_per_class) == ('ClassBalancedSampler', 2)
    for loader in (train, cfg.val_dataloader, cfg.test_dataloader):
        assert loader.dataset.type == spec['type']
    steps = ['LoadImageFromFile', 'RandomResizedCrop', 'RandomFlip', 'PackEmbeddingInputs']
    assert [t.type for t in train.dataset.pipeline] == steps
    assert train.dataset.pipeline[1] == dict(type='RandomResizedCrop', size=224)
    assert train.dataset.pipeline[2].prob == 0.5
    assert cfg.test_dataloader.dataset.pipeline == cfg.val_dataloader.dataset.pipeline
    test_steps = [dict(type='Resize', scale=(100000, 256), keep_ratio=True), dict(type='CenterCrop', crop_size=224)]
    assert [dict(t) for t in cfg.val_dataloader.dataset.pipeline[1:3]] == test_steps
    assert set(cfg.val_evaluator.measures) == {'recall', 'map_at_r', 'nmi'} and cfg.val_evaluator.ks[0] == 1


def _most_complete(crit: str, data: str) -> str:
    variant = 'msdf' if crit == 'proxyanchor' else 'msdfa'
    dim = 512 if crit == 'proxyanchor' else 128
    return osp.join(FOLDER, f's2sd-{variant}_r50-d{dim}_{crit}_{data}.py')


@pytest.mark.parametrize('crit', CRITERIA)
@pytest.mark.parametrize('data', list(DATA))
def test_builds_without_loading_weights_and_with_the_paper_lrs(crit, data):
    """The richest variant of each (criterion, dataset) builds, without fetching the ImageNet weights (init_weights
    runs at training, not at build), and its optimizer gives the criteria's parameters (beta, proxies) of the base
    and of every branch the paper's lr and everything else the base lr."""
    cfg = Config.fromfile(_most_complete(crit, data))
    no_loading = AssertionError('a checkpoint was loaded at build')
    with mock.patch('mmengine.runner.checkpoint.CheckpointLoader.load_checkpoint', side_effect=no_loading):
        model = build_in_scope(cfg.model, MODELS)
    assert isinstance(model, S2SDEmbedder)
    assert not model.embedder.backbone.is_init
    classes = DATA[data]['classes']
    base_dim = cfg.model.embedder.embed_dim
    assert model.embedder.embedding.out_features == base_dim
    assert [branch[-1].out_features for branch in model.target_branches] == list(cfg.model.target_dims)
    assert [branch[0].in_features for branch in model.target_branches] == [2048] * len(cfg.model.target_dims)
    assert len(model.target_losses) == len(cfg.model.target_dims)
    special = 'loss.proxies' if crit == 'proxyanchor' else 'loss.beta'
    if crit == 'proxyanchor':
        shapes = [(classes, base_dim)] + [(classes, d) for d in cfg.model.target_dims]
        assert [tuple(p.shape) for n, p in model.named_parameters() if special in n] == shapes
    elif crit in ('margin', 'rmargin'):
        shapes = [tuple(p.shape) for n, p in model.named_parameters() if special in n]
        assert shapes == [(classes, )] * (1 + len(cfg.model.target_dims))
    with DefaultScope.overwrite_default_scope('mmkd'):
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    base_lr = cfg.optim_wrapper.optimizer.lr
    mult = 100.0 if crit == 'proxyanchor' else 50.0
    lr_of = {id(p): group['lr'] for group in optim_wrapper.optimizer.param_groups for p in group['params']}
    for name, param in model.named_parameters():
        expected = base_lr * mult if special in name and crit != 'ms' else base_lr
        assert lr_of[id(param)] == pytest.approx(expected), name
    assert len(lr_of) == sum(1 for _ in model.parameters())
    with torch.no_grad():
        model.eval()
        embedding = model(torch.rand(2, 3, 64, 64), mode='tensor')
    assert embedding.shape == (2, base_dim)
    torch.testing.assert_close(embedding.norm(dim=1), torch.ones(2))


@pytest.mark.parametrize('data', list(DATA))
def test_pipelines_make_224_crops(data):
    cfg = Config.fromfile(osp.join(FOLDER, f'embedder_r50-d128_ms_{data}.py'))
    img = np.random.RandomState(0).randint(0, 256, (300, 500, 3)).astype(np.uint8)
    with DefaultScope.overwrite_default_scope('mmkd'):
        train = Compose([TRANSFORMS.build(t) for t in cfg.train_dataloader.dataset.pipeline[1:]])
        test = Compose([TRANSFORMS.build(t) for t in cfg.test_dataloader.dataset.pipeline[1:]])
    results = dict(img=img, img_shape=(300, 500), ori_shape=(300, 500), img_path='a.jpg', gt_label=1)
    packed = train(dict(results))
    assert tuple(packed['inputs'].shape) == (3, 224, 224)
    packed = test(dict(results))
    assert tuple(packed['inputs'].shape) == (3, 224, 224)
    # the shorter side went to 256 (300 x 500 -> 256 x 427, cv2 bilinear), then mmcv's centre 224 x 224 (offsets
    # round((256 - 224) / 2) = 16 and round((427 - 224) / 2) = 102)
    expected = cv2.resize(img, (427, 256), interpolation=cv2.INTER_LINEAR)[16:240, 102:326]
    assert packed['data_samples'].img_shape == (224, 224)
    np.testing.assert_array_equal(packed['inputs'].permute(1, 2, 0).numpy(), expected)


def _readme_rows() -> dict:
    """{config name: {column header: cell}} of every README table that has a 'config' column."""
    rows, header = {}, None
    with open(osp.join(FOLDER, 'README.md'), encoding='utf-8') as f:
        for line in f:
            if not line.startswith('|'):
                header = None
                continue
            cells = [c.strip() for c in line.strip().strip('|').split('|')]
            if header is None:
                header = cells
            elif not set(''.join(cells)) <= set('-'):
                row = dict(zip(header, cells))
                if 'config' in row:
                    assert row['config'] not in rows, f'README.md lists {row["config"]} twice'
                    rows[row['config']] = row
    return rows


def _number(cell: str):
    return None if cell == '—' else float(cell.split('±')[0])


def test_metafile_numbers_equal_the_readme_tables():
    with open(osp.join(FOLDER, 'metafile.yml')) as f:
        models = {m['Name']: m for m in yaml.safe_load(f)['Models']}
    rows = _readme_rows()
    paper = {osp.splitext(osp.basename(p))[0] for p in PAPER_CONFIGS}
    assert set(rows) == paper
    for name in paper:
        (result, ) = models[name]['Results']
        metrics = result['Metrics']
        row = rows[name]
        source = models[name]['Metadata']['Results Source']
        assert source.startswith('Table 6' if 'proxyanchor' in name else 'Table 4'), name
        assert ('Table 5' in source) == ('mAP@R' in metrics), name
        assert {k: _number(row[k]) for k in ('R@1', 'NMI')} == {k: metrics[k] for k in ('R@1', 'NMI')}, name
        assert _number(row.get('mAP@R', '—')) == metrics.get('mAP@R'), name
        assert row['mmkd R@1'] == '—', name  # not trained: no dataset on this machine


def test_paper_numbers_spot_checks():
    """A few numbers read off the paper by hand (methods notes of this project, Table 4; Table 6; Table 5), against
    a transcription error shared by the metafile and the README."""
    with open(osp.join(FOLDER, 'metafile.yml')) as f:
        metrics = {m['Name']: m['Results'][0]['Metrics'] for m in yaml.safe_load(f)['Models'] if 'Results' in m}
    cub_margin = [
        metrics[f'{prefix}_r50-d128_margin_cub']['R@1']
        for prefix in ('embedder', 's2sd-dsd', 's2sd-msd', 's2sd-msdf', 's2sd-msdfa')
    ]
    assert cub_margin == [63.09, 65.11, 66.13, 67.58, 67.21]
    assert metrics['embedder_r50-d128_ms_cub']['R@1'] == 62.80
    assert metrics['s2sd-msdfa_r50-d128_ms_cub']['R@1'] == 67.68
    assert metrics['s2sd-msdf_r50-d128_margin_cub']['NMI'] == 71.47  # printed '71,47' in the paper
    assert metrics['s2sd-msdfa_r50-d128_rmargin_cars'] == {'R@1': 86.81, 'NMI': 71.48, 'mAP@R': 37.67}
    assert metrics['s2sd-msdf_r50-d512_proxyanchor_sop'] == {'R@1': 78.50, 'NMI': 90.31}
