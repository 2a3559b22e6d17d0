import os.path as osp
from typing import Callable, Dict, Optional, Tuple

import torch
from mmengine.config import Config

from mmkd.registry import DET_MODELS
from mmkd.utils.build import build_in_scope
from ..conftest import CONFIGS


def random_toy_retinanets(folder: str,
                          data_root: str,
                          edit: Optional[Callable[[Config], None]] = None,
                          zero_cls_bias: bool = False) -> Dict[str, Tuple[str, str]]:
    """The toy RetinaNets 'w16' and 'w32' with random weights (seeds 0 and 1) on the toy shapes at ``data_root``:
    width -> (config, checkpoint) written in ``folder``. ``edit`` changes each config before it is written;
    ``zero_cls_bias`` zeroes the classifier's prior-probability bias, which otherwise scores every anchor .01, under the
    test score threshold (no detection at all)."""
    models = {}
    for seed, width in enumerate(('w16', 'w32')):
        cfg = Config.fromfile(osp.join(CONFIGS, 'toy', f'retinanet_tiny-{width}_toy.py'))
        cfg.test_dataloader.dataset.data_root = data_root
        if edit is not None:
            edit(cfg)
        config = osp.join(folder, f'{width}.py')
        cfg.dump(config)
        torch.manual_seed(seed)
        model = build_in_scope(cfg.model, DET_MODELS)
        if zero_cls_bias:
            with torch.no_grad():
                model.bbox_head.retina_cls.bias.zero_()
        checkpoint = osp.join(folder, f'{width}.pth')
        torch.save(dict(state_dict=model.state_dict(), meta=dict()), checkpoint)
        models[width] = (config, checkpoint)
    return models


def score_everything_at_64(cfg: Config) -> None:
    """A config edit for :func:`random_toy_retinanets`: every score kept, test images resized to 64x64."""
    cfg.model.test_cfg.score_thr = 0.0
    cfg.test_dataloader.dataset.pipeline[1].scale = (64, 64)
