"""Building a frozen teacher from a config and a checkpoint, written once for every distiller."""
import os.path as osp
import re
from typing import List, Optional, Tuple

import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import Registry

from .build import ConfigType, UnsafeConfigTextError, build_in_scope, checkpoint_config, model_config


def _strip(state_dict: dict, prefix: str) -> dict:
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix):]: v for k, v in state_dict.items()}
    return state_dict


def checkpoint_state_dict(checkpoint: dict) -> dict:
    """The model weights of a loaded checkpoint (mmengine, mmdet/mmseg, DDP-saved or mmkd-exported)."""
    state_dict = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else checkpoint
    if not isinstance(state_dict, dict):
        raise TypeError(f'expected a dict of tensors, got {type(state_dict).__name__}')
    state_dict = _strip(state_dict, 'module.')
    return state_dict


def deployable_prefix(checkpoint: dict, checkpoint_path: str) -> Optional[str]:
    """The ``state_dict`` prefix of the deployable network of the mmkd model that saved ``checkpoint``.

    The model is the one of the config the runner stores in ``meta['cfg']``, read by
    :func:`~mmkd.utils.build.checkpoint_config` (run only if the file is trusted); ``None`` where there is
    no such config or where it is not an mmkd model (see :class:`mmkd.models.utils.Deployable`).

    Args:
        checkpoint (dict): the loaded checkpoint.
        checkpoint_path (str): its file or URL, which decides whether the config text may be run.

    Raises:
        UnsafeConfigTextError: the checkpoint is not trusted and its config is more than plain data.
    """
    from mmkd.models.utils import deployable_of
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    cfg_text = meta.get('cfg') if isinstance(meta, dict) else None
    if not isinstance(cfg_text, str):
        return None
    try:
        cfg = checkpoint_config(cfg_text, checkpoint_path)
    except UnsafeConfigTextError:
        raise
    except Exception:  # mmengine raises many types for a text it cannot read back; the keys then decide alone
        return None
    if not isinstance(cfg.get('model'), dict):
        return None
    try:
        return deployable_of(cfg.model, cfg.get('default_scope'))[0]
    except (KeyError, TypeError):  # an unknown or a plain (non-mmkd) model
        return None


def state_dict_mismatch(model: nn.Module, state_dict: dict, limit: int = 5) -> List[str]:
    """Describe how ``state_dict`` fails to fit ``model``; an empty list means it fits exactly."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}' for k, v in state_dict.items()
        if k in expected and hasattr(v, 'shape') and tuple(v.shape) != tuple(expected[k].shape)
    ]
    problems = []
    for name, keys in (('missing keys', missing), ('unexpected keys', unexpected), ('shape mismatches', shapes)):
        if keys:
            more = f' (+{len(keys) - limit} more)' if len(keys) > limit else ''
            problems.append(f'{len(keys)} {name}, first: {", ".join(keys[:limit])}{more}')
    return problems


def load_weights_strictly(model: nn.Module, checkpoint_path: str, what: str = 'checkpoint') -> None:
    """Load ``checkpoint_path`` into ``model``; every key and shape must fit, else a clear error.

    Raises:
        FileNotFoundError: the file does not exist.
        IsADirectoryError: the path is a folder.
        RuntimeError: the file cannot be read, or its weights do not fit the model (the message names
            the file and the first mismatching keys).
        UnsafeConfigTextError: the weights fit only through the config stored in an untrusted checkpoint,
            and that config is more than plain data.
    """
    from mmengine.runner.checkpoint import _load_checkpoint

    from .checkpoint import UntrustedCheckpointError
    if not re.match(r'^[a-z+]+://', checkpoint_path) and not osp.isfile(osp.expanduser(checkpoint_path)):
        if osp.isdir(osp.expanduser(checkpoint_path)):
            raise IsADirectoryError(f'{what} {checkpoint_path!r} is a folder: give the checkpoint file in it '
                                    '(e.g. epoch_12.pth)')
        raise FileNotFoundError(f'{what} file {checkpoint_path!r} does not exist')
    try:
        checkpoint = _load_checkpoint(checkpoint_path, map_location='cpu')
    except UntrustedCheckpointError:
        raise
    except Exception as e:
        raise RuntimeError(f'{what} {checkpoint_path!r} could not be read: {type(e).__name__}: {e}') from e
    try:
        state_dict = checkpoint_state_dict(checkpoint)
    except TypeError as e:
        raise RuntimeError(f'{what} {checkpoint_path!r} holds no weights: {e}') from e
    if state_dict_mismatch(model, state_dict):
        # an mmkd model's checkpoint (e.g. a distilled student reused as teacher): its deployable network
        prefix = deployable_prefix(checkpoint, checkpoint_path)
        if prefix is not None:
            state_dict = {k[len(prefix) + 1:]: v for k, v in state_dict.items() if k.startswith(prefix + '.')}
    problems = state_dict_mismatch(model, state_dict)
    if problems:
        raise RuntimeError(f'{what} {checkpoint_path!r} does not fit the model {type(model).__name__}: ' +
                           '; '.join(problems))
    model.load_state_dict(state_dict, strict=True)


def freeze(model: nn.Module) -> nn.Module:
    """Freeze every parameter and put the model in eval mode."""
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model


def build_teacher(cfg: ConfigType,
                  checkpoint: Optional[str],
                  registry: Registry,
                  frozen: bool = True) -> Tuple[nn.Module, Config]:
    """Build a teacher model from a config and load its checkpoint strictly.

    Args:
        cfg: the teacher's config: file path, ``mmdet::``/``mmseg::`` scoped path, Config or dict
            (a full config with a ``model`` key, or a model dict with ``type``).
        checkpoint: path or URL of the teacher's weights. ``None`` leaves random weights (only
            sensible for tests and for methods that train the teacher too); a warning says so.
        registry: the registry to build the model with (mmdet's or mmseg's MODELS).
        frozen: freeze the parameters and set eval mode.

    Returns:
        tuple: the model and its model config.
    """
    model_cfg = model_config(cfg, 'teacher config')
    model = build_in_scope(model_cfg, registry)
    if checkpoint is None:
        print_log(
            'teacher_ckpt is None: the teacher keeps random weights (fine for evaluation and export, '
            'which use the student only; wrong for training)',
            logger='current',
            level=30)
    else:
        load_weights_strictly(model, checkpoint, 'teacher checkpoint')
    if frozen:
        freeze(model)
    return model, model_cfg
