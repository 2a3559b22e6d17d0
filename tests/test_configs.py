"""Every config under configs/ parses and its model builds on CPU without data or checkpoints."""
import glob
import os.path as osp

import pytest
from mmdet.registry import MODELS as DET_MODELS
from mmengine.config import Config
from mmseg.registry import MODELS as SEG_MODELS

from mmkd.utils.build import build_in_scope

from .conftest import CONFIGS

REGISTRIES = dict(mmdet=DET_MODELS, mmseg=SEG_MODELS)
ALL = sorted(p for p in glob.glob(osp.join(CONFIGS, '**', '*.py'), recursive=True) if '_base_' not in p)


def test_there_are_configs():
    assert len(ALL) >= 3


@pytest.mark.parametrize('path', ALL, ids=[osp.relpath(p, CONFIGS) for p in ALL])
def test_config_builds(path):
    cfg = Config.fromfile(path)
    assert 'mmkd' in cfg.custom_imports.imports
    model = cfg.model
    if 'teacher_ckpt' in model:
        model.teacher_ckpt = None
    built = build_in_scope(model, REGISTRIES[cfg.default_scope])
    assert sum(p.numel() for p in built.parameters()) > 0
