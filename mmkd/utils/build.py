"""Reading configs and building models in a registry's scope: the helpers every mmkd model uses."""
import os.path as osp
from typing import Union

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
