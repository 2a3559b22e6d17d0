"""tools/train.py --amp on a CPU-only machine: the toy SSIM distiller trains a few iterations in bfloat16 autocast."""
import json
import os.path as osp

import pytest
import torch

from ..conftest import PYTHON, TOOLS
from .test_train_tools import CONFIG, _options, _run


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU (bfloat16) path of --amp')
def test_amp_trains_the_ssim_distiller_on_the_cpu(toy_root, tmp_path):
    # mmengine's AmpOptimWrapper refuses a machine without an accelerator; under CPU autocast the SSIM loss
    # crashed in the banded GEMM (bfloat16 against float32) or computed its statistics in bfloat16
    work = tmp_path / 'amp'
    _run([PYTHON, osp.join(TOOLS, 'train.py'), CONFIG, '--amp', '--work-dir',
          str(work)] + _options(toy_root) + ['default_hooks.logger.interval=1'], tmp_path)
    checkpoint = torch.load(work / 'epoch_1.pth', weights_only=False)
    assert 'loss_scaler' in checkpoint['optimizer']  # an AMP optimizer wrapper trained
    logs = [json.loads(line) for path in work.glob('*/vis_data/scalars.json') for line in open(path)]
    train_logs = [log for log in logs if 'loss_feat_l0' in log]
    assert len(train_logs) == 4  # 16 images, batch 4
    for log in train_logs:
        feature_losses = [v for k, v in log.items() if k.startswith('loss_feat_l')]
        assert len(feature_losses) == 5
        # 2 (1 - SSIM) of five FPN levels: finite, in [0, 4]
        assert all(0 <= v <= 4 for v in feature_losses), log
        assert torch.isfinite(torch.tensor(log['loss'])), log
