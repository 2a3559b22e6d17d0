"""Reading configs and building models in a registry's scope: the helpers every mmkd model uses."""
import ast
import os.path as osp
from typing import Any, Union

import torch.nn as nn
from mmengine.config import Config, ConfigDict
from mmengine.registry import DefaultScope, Registry

ConfigType = Union[str, Config, ConfigDict, dict]


def load_config(cfg: ConfigType, what: str = 'config') -> Config:
    """Read a config given as a file path, an ``mmdet::``/``mmseg::`` scoped path, a Config or a dict."""
    if isinstance(cfg, Config):
        return cfg
    if isinstance(cfg, dict):
        return Config(dict(cfg))
    if not isinstance(cfg, str):
        raise TypeError(f'{what} must be a file path, a scoped path such as "mmdet::retinanet/..." , '
                        f'a Config or a dict, but got {type(cfg).__name__}')
    if '::' in cfg:
        from mmengine.hub import get_config
        try:
            return get_config(cfg)
        except Exception as e:  # mmengine raises several types for an unknown package or file
            raise FileNotFoundError(f'{what} {cfg!r} could not be found in the installed package: {e}') from e
    if not osp.isfile(cfg):
        raise FileNotFoundError(f'{what} file {cfg!r} does not exist')
    return Config.fromfile(cfg)


def model_config(cfg: ConfigType, what: str = 'config') -> ConfigDict:
    """The model part of a config: ``cfg.model`` for a full config, else the dict itself."""
    cfg = load_config(cfg, what)
    if 'model' in cfg:
        return cfg.model
    if 'type' in cfg:
        return ConfigDict(cfg.to_dict())
    raise KeyError(f'{what} has neither a "model" key nor a "type" key: cannot tell which model to build')


def build_in_scope(cfg: dict, registry: Registry) -> nn.Module:
    """Build ``cfg`` with ``registry``, its scope the default while building, so that nested
    components (data preprocessors, losses) resolve in mmdet / mmseg even outside a runner."""
    with DefaultScope.overwrite_default_scope(registry.scope):
        return registry.build(ConfigDict(cfg))  # mmdet models read nested options as attributes


class UnsafeConfigTextError(ValueError):
    """A config text stored in an untrusted checkpoint is more than the plain data mmengine dumps."""


def _config_value(node: ast.AST, refuse) -> Any:
    """The value of one expression of a dumped config: literals, containers, ``dict(...)`` and unary signs."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        values = [_config_value(item, refuse) for item in node.elts]
        return {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)](values)
    if isinstance(node, ast.Dict):
        if any(key is None for key in node.keys):  # ``{**x}``
            raise refuse(node, 'a ** expansion')
        return {_config_value(k, refuse): _config_value(v, refuse) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _config_value(node.operand, refuse)
        if type(operand) not in (int, float, complex):
            raise refuse(node, 'a sign before a non-number')
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == 'dict':
        # mmengine writes dict(key=value, ...), and dict({key: value, ...}) for keys that are not identifiers
        if len(node.args) > 1 or (node.args and not isinstance(node.args[0], ast.Dict)) or any(kw.arg is None
                                                                                               for kw in node.keywords):
            raise refuse(node, 'a dict() call with other than keyword arguments or one {...} literal')
        value = _config_value(node.args[0], refuse) if node.args else {}
        value.update((kw.arg, _config_value(kw.value, refuse)) for kw in node.keywords)
        return value
    raise refuse(node, f'an expression of kind {type(node).__name__}')


def config_from_checkpoint_text(text: str, checkpoint: str) -> Config:
    """Read the config text that the runner stores in a checkpoint's ``meta['cfg']`` without running it.

    The text comes from the file, so unlike ``Config.fromstring`` nothing in it is executed: it must be
    mmengine's dump (``Config.pretty_text``), top-level ``name = value`` lines whose values are literals
    (strings, numbers, ``True``/``False``/``None``), lists, tuples, sets, ``{...}`` dicts, ``dict(key=value,
    ...)`` / ``dict({...})`` calls and signed numbers. Use ``Config.fromstring`` only for a trusted checkpoint.

    Args:
        text (str): the config text.
        checkpoint (str): the checkpoint it was read from, named in the error.

    Returns:
        Config: the config.

    Raises:
        UnsafeConfigTextError: the text holds anything else (a call, a name, an import, ...); the message
            names the checkpoint and the offending line.
    """
    lines = text.splitlines()

    def refuse(node: ast.AST, what: str) -> UnsafeConfigTextError:
        lineno = getattr(node, 'lineno', 0)
        line = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ''
        return UnsafeConfigTextError(
            f"the config stored in checkpoint '{checkpoint}' (meta['cfg']) holds {what} on line {lineno}: "
            f'{line!r:.200}. A config dumped by mmengine holds only plain values, and this checkpoint is not '
            'trusted, so the text was not run. If you trust the file, opt in with mmkd.utils.trust_checkpoint '
            'or MMKD_TRUSTED_CHECKPOINTS, or pass the training config explicitly.')

    try:
        tree = ast.parse(text, mode='exec')
    except (SyntaxError, ValueError) as e:  # ValueError: null bytes
        raise UnsafeConfigTextError(f"the config stored in checkpoint '{checkpoint}' (meta['cfg']) is not "
                                    f'Python config text: {e}') from None
    values = {}
    for statement in tree.body:
        if not (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name)):
            raise refuse(statement, f'a statement of kind {type(statement).__name__} (only name = value is allowed)')
        values[statement.targets[0].id] = _config_value(statement.value, refuse)
    try:
        return Config(values)
    except Exception as e:  # e.g. a reserved key such as 'filename'
        raise UnsafeConfigTextError(f"the config stored in checkpoint '{checkpoint}' (meta['cfg']) is not a valid "
                                    f'config: {e}') from None


def checkpoint_config(text: str, checkpoint: str) -> Config:
    """The config stored in checkpoint ``checkpoint``'s ``meta['cfg']``: run by ``Config.fromstring`` only if the
    checkpoint is trusted (:func:`mmkd.utils.checkpoint.is_trusted`), else read by
    :func:`config_from_checkpoint_text`, which runs nothing."""
    from .checkpoint import is_trusted
    if is_trusted(checkpoint):
        return Config.fromstring(text, file_format='.py')
    return config_from_checkpoint_text(text, checkpoint)
