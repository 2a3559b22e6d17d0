"""Every config under configs/ parses and its model builds on CPU without data or checkpoints, in the MODELS
registry of the config's ``default_scope`` (mmdet, mmseg or mmkd), found the way a Runner finds it; every config
folder has a metafile.yml that lists its configs."""
import glob
import os.path as osp
import re
import subprocess

import pytest
import torch
import yaml
from mmdet.registry import MODELS as DET_MODELS
from mmengine.config import Config
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import Registry
from mmseg.registry import MODELS as SEG_MODELS

from mmkd.registry import MODELS as MMKD_MODELS
from mmkd.utils.build import build_in_scope
from .conftest import CONFIGS, PYTHON, ROOT, TOOLS, tool_env
from .toy_mmkd_scope import make_points

# configs/ holds no config of mmkd's own scope nor of mmseg's yet: test-only ones stand in for them
MMKD_SCOPE_CONFIG = osp.join(ROOT, 'tests', 'data', 'tiny-regressor_points_mmkd-scope.py')
MMSEG_SCOPE_CONFIG = osp.join(ROOT, 'tests', 'data', 'tiny-fcn_mmseg-scope.py')
IN_CONFIGS = sorted(p for p in glob.glob(osp.join(CONFIGS, '**', '*.py'), recursive=True) if '_base_' not in p)
ALL = IN_CONFIGS + [MMKD_SCOPE_CONFIG, MMSEG_SCOPE_CONFIG]
FOLDERS = sorted(d for d in glob.glob(osp.join(CONFIGS, '*')) if osp.isdir(d) and osp.basename(d) != '_base_')


def models_of_scope(scope: str) -> Registry:
    """The MODELS registry of ``scope``: mmengine imports ``<scope>.registry`` and finds the root's child."""
    with ROOT_MODELS.switch_scope_and_registry(scope) as registry:
        if registry.scope != scope:
            raise KeyError(f'default_scope={scope!r} has no MODELS registry (no child of mmengine\'s MODELS)')
        return registry


def test_there_are_configs():
    assert len(IN_CONFIGS) >= 3


@pytest.mark.parametrize('folder', FOLDERS, ids=[osp.basename(d) for d in FOLDERS])
def test_metafile_lists_every_config(folder):
    """mmdet's model-index format: collections cite their paper; every config of the folder is a model of a
    collection, and every listed config exists."""
    path = osp.join(folder, 'metafile.yml')
    assert osp.isfile(path), f'{osp.relpath(folder, ROOT)} has no metafile.yml'
    with open(path) as f:
        meta = yaml.safe_load(f)
    collections = {c['Name']: c for c in meta['Collections']}
    for collection in collections.values():
        assert collection['Paper']['Title'] and collection['Paper']['URL'].startswith('https://')
        assert osp.isfile(osp.join(ROOT, collection['README']))
    listed = []
    for model in meta['Models']:
        assert model['In Collection'] in collections, model['Name']
        assert model['Name'] == osp.splitext(osp.basename(model['Config']))[0]
        for result in model.get('Results', []):
            assert all(isinstance(v, float) and 0 < v < 100 for v in result['Metrics'].values()), model['Name']
        listed.append(osp.join(ROOT, model['Config']))
    assert sorted(listed) == sorted(glob.glob(osp.join(folder, '*.py')))


def test_model_index_imports_every_metafile():
    with open(osp.join(ROOT, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    assert sorted(index['Import']) == sorted(osp.relpath(osp.join(d, 'metafile.yml'), ROOT) for d in FOLDERS)


def test_every_scope_has_a_config():
    assert {Config.fromfile(p).default_scope for p in ALL} == {'mmdet', 'mmseg', 'mmkd'}


def test_models_of_scope():
    assert models_of_scope('mmdet') is DET_MODELS
    assert models_of_scope('mmseg') is SEG_MODELS
    assert models_of_scope('mmkd') is MMKD_MODELS
    with pytest.raises(KeyError, match='no_such_scope'):
        models_of_scope('no_such_scope')


@pytest.mark.parametrize('path', ALL, ids=[osp.relpath(p, ROOT) for p in ALL])
def test_config_builds(path):
    cfg = Config.fromfile(path)
    assert 'mmkd' in cfg.custom_imports.imports
    model = cfg.model
    if 'teacher_ckpt' in model:
        model.teacher_ckpt = None
    built = build_in_scope(model, models_of_scope(cfg.default_scope))
    assert sum(p.numel() for p in built.parameters()) > 0


@pytest.mark.slow
def test_mmkd_scope_config_runs_through_stock_tools(tmp_path):
    """Runner builds the model, datasets, transform, samplers and metric of a default_scope='mmkd' config from
    mmkd's registries (nothing else can find them), without falling back to mmengine's root registries; the
    metric that tools/test.py prints equals the MSE recomputed here from the checkpoint's weights."""
    work_dir = str(tmp_path)
    train = subprocess.run([PYTHON, osp.join(TOOLS, 'train.py'), MMKD_SCOPE_CONFIG, '--work-dir', work_dir],
                           env=tool_env(),
                           cwd=work_dir,
                           capture_output=True,
                           text=True,
                           timeout=300)
    assert train.returncode == 0, train.stderr[-3000:]
    checkpoint = osp.join(work_dir, 'epoch_2.pth')
    test = subprocess.run(
        [PYTHON, osp.join(TOOLS, 'test.py'), MMKD_SCOPE_CONFIG, checkpoint, '--work-dir', work_dir],
        env=tool_env(),
        cwd=work_dir,
        capture_output=True,
        text=True,
        timeout=300)
    assert test.returncode == 0, test.stderr[-3000:]
    for run in (train, test):
        assert 'Failed to search registry' not in run.stdout + run.stderr
    printed = float(re.search(r'tiny/mse: ([0-9.]+)', test.stdout + test.stderr).group(1))

    state = torch.load(checkpoint, map_location='cpu', weights_only=False)['state_dict']
    points = make_points(6, seed=1)  # the test dataset of the config, its targets shifted by 1
    predictions = points @ state['fc.weight'][0] + state['fc.bias'][0]
    reference = ((predictions - (points.sum(1) + 1.0))**2).mean().item()
    assert printed == pytest.approx(reference, abs=1e-4)
