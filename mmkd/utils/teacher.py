"""Building a frozen teacher from a config and a checkpoint, written once for every distiller."""
import os.path as osp
import re
from typing import List, Optional, Sequence, Tuple

import torch.nn as nn
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log
from mmengine.registry import Registry

from .build import ConfigType, UnsafeConfigTextError, build_in_scope, checkpoint_config, load_config, model_config


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
        network = deployable_network_config(cfg.model, cfg.get('default_scope'), f'checkpoint {checkpoint_path!r}')
    except (KeyError, ValueError):  # an unknown or a malformed model: the keys then decide alone
        return None
    return None if network is None else network[0]


def _fit(expected: dict, state_dict: dict) -> Tuple[List[str], List[str], List[str]]:
    """(missing keys, unexpected keys, ``'key: checkpoint shape vs model shape'`` entries) of ``state_dict``
    against the ``expected`` state dict of a model."""
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}' for k, v in state_dict.items()
        if k in expected and hasattr(v, 'shape') and tuple(v.shape) != tuple(expected[k].shape)
    ]
    return missing, unexpected, shapes


def _describe(missing: List[str], unexpected: List[str], shapes: List[str], limit: int) -> List[str]:
    problems = []
    for name, keys in (('missing keys', missing), ('unexpected keys', unexpected), ('shape mismatches', shapes)):
        if keys:
            more = f' (+{len(keys) - limit} more)' if len(keys) > limit else ''
            problems.append(f'{len(keys)} {name}, first: {", ".join(keys[:limit])}{more}')
    return problems


def state_dict_mismatch(model: nn.Module, state_dict: dict, limit: int = 5) -> List[str]:
    """Describe how the keys and shapes of ``state_dict`` fail to fit ``model.state_dict()`` (parameters and
    persistent buffers such as BN ``num_batches_tracked``); an empty list means it fits exactly."""
    return _describe(*_fit(model.state_dict(), state_dict), limit)


def deployable_network_config(model_cfg: dict, default_scope: Optional[str], what: str) -> Optional[Tuple[str, dict]]:
    """(key prefix, model config) of the network that an mmkd model config deploys (see
    :class:`mmkd.models.utils.Deployable`), or ``None`` for a model that declares none (a plain mmdet / mmseg
    / mmkd network).

    Args:
        model_cfg: the model config.
        default_scope: the config's ``default_scope``: the registry asked first for the model type.
        what: the config's origin, named in the errors (e.g. ``"the config stored in 'epoch_2.pth'"``).

    Raises:
        KeyError: no model registry knows the model type.
        ValueError: the model declares a deployable network but its config lacks what that needs (e.g. an
            ``S2SDEmbedder`` without an ``embedder`` dict), or the declared network has no model config.
    """
    from mmkd.models.utils import find_model_class
    try:
        cls = find_model_class(model_cfg, default_scope)
    except KeyError as e:
        raise KeyError(f'{what}: {e.args[0] if e.args else e}') from None
    if not callable(getattr(cls, 'deployable', None)):
        return None
    try:
        prefix, network_cfg = cls.deployable(model_cfg)
    except Exception as e:  # each model's deployable() reads its own keys: any failure means a malformed model
        detail = e.args[0] if isinstance(e, KeyError) and e.args else e  # str(KeyError) quotes its message
        raise ValueError(f'{what}: the {cls.__name__} model config does not give its deployable network '
                         f'({type(e).__name__}: {detail}); the model keys are {sorted(model_cfg)}') from e
    if not isinstance(network_cfg, dict) or 'type' not in network_cfg:
        raise ValueError(f'{what}: the {cls.__name__} model deploys network {prefix!r}, whose config is not a model '
                         f'config with a type: {network_cfg!r:.200}')
    return prefix, network_cfg


def _strip_prefix(state_dict: dict, prefix: Optional[str]) -> dict:
    if prefix is None:
        return state_dict
    return {k[len(prefix) + 1:]: v for k, v in state_dict.items() if k.startswith(prefix + '.')}


def load_weights_strictly(model: nn.Module,
                          checkpoint_path: str,
                          what: str = 'checkpoint',
                          prefixes: Sequence[str] = ()) -> None:
    """Load ``checkpoint_path`` into ``model``; every key and shape must fit, else a clear error.

    The weights are read as saved, then under each of ``prefixes``, then under the prefix of the deployable
    network of the mmkd model whose config the checkpoint stores (e.g. a distilled student reused as
    teacher): the first reading that fits loads. When none fits, the error describes the closest one (fewest
    missing + unexpected keys).

    Args:
        model: the model to load into.
        checkpoint_path: file or URL of the checkpoint.
        what: the checkpoint's role, named in the errors (e.g. ``'teacher checkpoint'``).
        prefixes: ``state_dict`` key prefixes (without the trailing dot) that the model's weights may be saved
            under, e.g. the deployable network's prefix of the mmkd model config that the model was built from.

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
        saved = checkpoint_state_dict(checkpoint)
    except TypeError as e:
        raise RuntimeError(f'{what} {checkpoint_path!r} holds no weights: {e}') from e
    expected = model.state_dict()
    tried = []
    # the checkpoint's own config is read last, and only if needed: an untrusted one that is more than data raises
    for prefix in [None, *prefixes, lambda: deployable_prefix(checkpoint, checkpoint_path)]:
        prefix = prefix() if callable(prefix) else prefix
        if any(prefix == p for p, _ in tried):
            continue
        state_dict = _strip_prefix(saved, prefix)
        fit = _fit(expected, state_dict)
        if not any(fit):
            model.load_state_dict(state_dict, strict=True)
            return
        tried.append((prefix, fit))
    prefix, fit = min(tried, key=lambda attempt: (len(attempt[1][0]) + len(attempt[1][1]), len(attempt[1][2])))
    readings = ['as saved' if p is None else f"under '{p}.'" for p, _ in tried]
    reading = 'keys as saved' if prefix is None else f"keys under '{prefix}.', the prefix stripped"
    if len(tried) > 1:
        reading += f' (the closest of the readings tried: {", ".join(readings)})'
    raise RuntimeError(f'{what} {checkpoint_path!r} does not fit the model {type(model).__name__}: ' +
                       '; '.join(_describe(*fit, limit=5)) + f' [{reading}]')


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

    The config of an mmkd model that deploys one of its networks (a distiller, an ``S2SDEmbedder``, a trained
    pair, see :class:`mmkd.models.utils.Deployable`) gives that network as the teacher: only it is built, and
    its weights load from a training checkpoint of the model (under the network's prefix, e.g. ``embedder.``)
    or from the exported network (``tools/export_student.py``).

    Args:
        cfg: the teacher's config: file path, ``mmdet::``/``mmseg::`` scoped path, Config or dict
            (a full config with a ``model`` key, or a model dict with ``type``).
        checkpoint: path or URL of the teacher's weights. ``None`` leaves random weights (only
            sensible for tests and for methods that train the teacher too); a warning says so.
        registry: the registry to build the model with (mmdet's or mmseg's MODELS).
        frozen: freeze the parameters and set eval mode.

    Returns:
        tuple: the model and its model config (the deployed network's for an mmkd model).
    """
    full = load_config(cfg, 'teacher config')
    model_cfg = model_config(full, 'teacher config')
    scope = full.get('default_scope', registry.scope) if 'model' in full else registry.scope
    origin = f'teacher config {cfg!r:.200}' if isinstance(cfg, str) else 'teacher config'
    try:
        network = deployable_network_config(model_cfg, scope, origin)
    except KeyError:  # an unknown type: building it raises the registry's own error
        network = None
    prefixes = ()
    if network is not None:
        prefix, model_cfg = network
        model_cfg, prefixes = ConfigDict(model_cfg), (prefix, )
    model = build_in_scope(model_cfg, registry)
    if checkpoint is None:
        print_log(
            'teacher_ckpt is None: the teacher keeps random weights (fine for evaluation and export, '
            'which use the student only; wrong for training)',
            logger='current',
            level=30)
    else:
        load_weights_strictly(model, checkpoint, 'teacher checkpoint', prefixes)
    if frozen:
        freeze(model)
    return model, model_cfg
