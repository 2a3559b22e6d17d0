"""Which network of an mmkd model ships: the protocol that export and teacher loading read."""
from abc import ABCMeta, abstractmethod
from typing import Optional, Tuple

import torch.nn as nn
from mmengine.registry import Registry


class Deployable(metaclass=ABCMeta):
    """Mixin for mmkd models made of several networks, one of which is deployed.

    A distiller deploys its student, a trained pair the network it chose, a self-distilled model its
    base embedder. The declaration has two sides:

    * ``deployable(model_cfg)`` (classmethod): from the model's config alone, without building it,
      the ``state_dict`` key prefix of the deployed network (without the trailing dot, e.g.
      ``'student'``) and that network's own model config, buildable by the host registry (mmdet,
      mmseg or mmkd). ``tools/export_student.py`` and the strict teacher loading use it on the
      config stored in a checkpoint.
    * ``deployable_network`` (property): the deployed module of a built model.

    The protocol is duck-typed (:func:`deployable_of` looks for the classmethod), this mixin only
    documents it and makes a subclass that forgets a side abstract.
    """

    @classmethod
    @abstractmethod
    def deployable(cls, model_cfg: dict) -> Tuple[str, dict]:
        """(key prefix of the deployed network, its model config) for a model config of this class."""

    @property
    @abstractmethod
    def deployable_network(self) -> nn.Module:
        """The deployed network of this model."""


def _model_registries() -> dict:
    from mmkd.registry import DET_MODELS, MODELS, SEG_MODELS
    return {'mmkd': MODELS, 'mmdet': DET_MODELS, 'mmseg': SEG_MODELS}


def model_registry_of(model_cfg: dict, default_scope: Optional[str] = None) -> Registry:
    """The first of mmkd's, mmdet's and mmseg's model registries that knows ``model_cfg['type']``, the
    ``default_scope``'s asked first.

    Args:
        model_cfg: a model config with a ``type`` (a name, or a scoped name such as ``'mmseg.EncoderDecoder'``).
        default_scope: the config's ``default_scope``.

    Raises:
        KeyError: no registry knows the type.
    """
    kind = model_cfg.get('type') if isinstance(model_cfg, dict) else None
    if not isinstance(kind, str):
        raise KeyError(f'model config has no type name: {model_cfg!r:.200}')
    registries = _model_registries()
    order = [default_scope] if default_scope in registries else []
    order += [scope for scope in registries if scope not in order]
    for scope in order:
        if registries[scope].get(kind) is not None:
            return registries[scope]
    raise KeyError(f'model type {kind!r} is in none of the model registries of {", ".join(order)}')


def find_model_class(model_cfg: dict, default_scope: Optional[str] = None) -> type:
    """The class that ``model_cfg['type']`` names (a class, or a name looked up as in
    :func:`model_registry_of`).

    Raises:
        KeyError: no registry knows the type.
    """
    kind = model_cfg.get('type') if isinstance(model_cfg, dict) else None
    if isinstance(kind, type):
        return kind
    return model_registry_of(model_cfg, default_scope).get(kind)


def deployable_of(model_cfg: dict, default_scope: Optional[str] = None) -> Tuple[str, dict]:
    """(key prefix, model config) of the network that an mmkd model deploys (see :class:`Deployable`).

    Args:
        model_cfg: the ``model`` part of a config.
        default_scope: the config's ``default_scope``.

    Raises:
        TypeError: the model is not an mmkd model (its class declares no deployable network).
    """
    cls = find_model_class(model_cfg, default_scope)
    if not callable(getattr(cls, 'deployable', None)):
        raise TypeError(f'{cls.__name__} is not an mmkd model: it declares no deployable network')
    prefix, network_cfg = cls.deployable(model_cfg)
    return prefix, network_cfg
