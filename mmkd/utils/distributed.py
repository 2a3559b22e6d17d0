"""Distributed set-up that also works on CPU-only machines (gloo)."""
import os

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.registry import MODEL_WRAPPERS
from torch.nn.parallel import DistributedDataParallel


def prepare_distributed(cfg: Config) -> None:
    """Make ``cfg`` runnable by mmengine's Runner with ``cfg.launcher`` on this machine.

    mmengine 0.10.7 assumes CUDA for the ``pytorch`` launcher (it calls ``torch.cuda.set_device``
    and wraps the model with ``device_ids=[LOCAL_RANK]``). Without CUDA this initialises the
    process group with gloo itself and wraps the model without device ids, so that
    ``tools/dist_train.sh CONFIG 2`` runs on CPU. With CUDA nothing changes.

    A model of several networks with their own optimizers (``MultiNetworkOptimWrapperConstructor``: CoLAD, a
    student and its discriminator) and no ``model_wrapper_cfg`` gets ``MMSeparateDistributedDataParallel`` (one DDP
    per network) under any launcher: mmengine's default DDP wraps the whole model and steps one optimizer.
    """
    launcher = cfg.get('launcher', 'none')
    optim_wrapper = cfg.get('optim_wrapper', None) or {}
    several_networks = str(optim_wrapper.get('constructor', '')).split('.')[-1] == 'MultiNetworkOptimWrapperConstructor'
    if launcher != 'none' and cfg.get('model_wrapper_cfg') is None and several_networks:
        cfg.model_wrapper_cfg = dict(
            type='MMSeparateDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    if launcher != 'pytorch' or torch.cuda.is_available():
        return
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel',
            device_ids=None,
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    elif _is_ddp(cfg.model_wrapper_cfg.get('type', 'MMDistributedDataParallel')):
        # mmengine gives a DDP wrapper device_ids=[LOCAL_RANK], which DDP refuses for a module on the CPU
        cfg.model_wrapper_cfg.setdefault('device_ids', None)
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo', rank=int(os.environ['RANK']), world_size=int(os.environ['WORLD_SIZE']))


def _is_ddp(wrapper_type) -> bool:
    """Whether a ``model_wrapper_cfg`` type (a registry name or a class) is a DistributedDataParallel."""
    wrapper = MODEL_WRAPPERS.get(wrapper_type) if isinstance(wrapper_type, str) else wrapper_type
    return isinstance(wrapper, type) and issubclass(wrapper, DistributedDataParallel)
