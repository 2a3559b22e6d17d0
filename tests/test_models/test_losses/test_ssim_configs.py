"""The COCO configs of the SSIM-type losses: gradient clipping, and the loss each row of the paper's table names."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

from ...conftest import CONFIGS

COCO_CONFIGS = sorted(glob.glob(osp.join(CONFIGS, 'ssim_kd', '*_coco*.py')))
STRUCTURAL = ('SSIMLoss', 'MSSSIMLoss', 'L1MSSSIMLoss')


def test_there_are_coco_configs():
    assert len(COCO_CONFIGS) >= 8


@pytest.mark.parametrize('path', COCO_CONFIGS, ids=osp.basename)
def test_structural_losses_train_with_clipped_gradients(path):
    cfg = Config.fromfile(path)
    loss = cfg.model.get('distill_loss') or {}
    if loss.get('type') in STRUCTURAL:
        # min-max normalisation and MS-SSIM can still give ~100x the typical gradient on nearly constant channels
        assert cfg.optim_wrapper.get('clip_grad') == dict(max_norm=35, norm_type=2), path
        assert loss.get('normalize', 'minmax') == 'minmax'
        assert loss.get('multiscale', 'downsample') == 'downsample'
