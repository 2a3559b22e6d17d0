"""Distributed set-up that also works on CPU-only machines (gloo)."""
import os

import torch
import torch.distributed as dist
from mmengine.config import Config


def prepare_distributed(cfg: Config) -> None:
    """Make ``cfg`` runnable by mmengine's Runner with ``cfg.launcher`` on this machine.

    mmengine 0.10.7 assumes CUDA for the ``pytorch`` launcher (it calls ``torch.cuda.set_device``
    and wraps the model with ``device_ids=[LOCAL_RANK]``). Without CUDA this initialises the
    process group with gloo itself and wraps the model without device ids, so that
    ``tools/dist_train.sh CONFIG 2`` runs on CPU. With CUDA nothing changes.
    """
    if cfg.get('launcher', 'none') != 'pytorch' or torch.cuda.is_available():
        return
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel',
            device_ids=None,
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo', rank=int(os.environ['RANK']), world_size=int(os.environ['WORLD_SIZE']))
