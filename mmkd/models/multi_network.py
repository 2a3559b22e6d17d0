"""Models made of several trainable networks, each updated by its own optimizer wrapper (a CoLAD pair of
detectors, a student and its discriminator)."""
from contextlib import ExitStack, contextmanager
from functools import partial
from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple, Union

import torch.nn as nn
from mmengine.model import BaseModel, is_model_wrapper
from mmengine.optim import OptimWrapperDict
from mmengine.registry import Registry
from torch import Tensor

from mmkd.registry import MODELS, SHARED_MODELS
from mmkd.utils.build import build_in_scope
from .utils import Deployable, model_registry_of


def _unwrap(module: nn.Module) -> nn.Module:
    """The network itself, also where ``MMSeparateDistributedDataParallel`` has wrapped it for DDP."""
    return module.module if is_model_wrapper(module) else module


def _network_registry(cfg: dict) -> Registry:
    """The model registry to build a network config with: the default scope's (a runner's ``default_scope``:
    mmdet, mmseg, mmkd, ...; mmkd's where none is set) when it knows the type, else the first of mmkd's,
    mmdet's and mmseg's that does (so that an mmkd-scope network needs no ``_scope_`` in an mmdet run)."""
    with MODELS.switch_scope_and_registry(None) as registry:
        if '_scope_' in cfg or not isinstance(cfg.get('type'), str) or registry.get(cfg['type']) is not None:
            return registry
    try:
        return model_registry_of(cfg, registry.scope)
    except KeyError:
        return registry  # its build raises mmengine's error naming the type


class MultiNetworkTrainMixin:
    """``train_step`` for a model whose networks each have their own optimizer wrapper.

    The host class (a :class:`mmengine.model.BaseModel`: :class:`MultiNetworkModel`, or a
    :class:`~mmkd.models.distillers.BaseDistiller` subclass that trains a discriminator beside its student)
    lists its trainable networks in ``trainable_networks``, in update order: names of its submodules, which are
    also the keys of the ``optim_wrapper`` and ``param_scheduler`` dicts of the config (see
    :class:`~mmkd.engine.MultiNetworkOptimWrapperConstructor`). A frozen teacher is not listed.

    One update (:meth:`update_network`) computes one network's losses inside its wrapper's ``optim_context``
    (autocast under AMP, no DDP gradient sync while accumulating) with the other listed networks frozen, so
    that e.g. an adversarial term through the discriminator gives the discriminator no gradient; then that
    wrapper's ``update_params``. Its log entries are prefixed ``'<network>.'``.

    Subclasses choose what a network learns by overriding :meth:`network_loss`, and the order of the updates
    or what they share by overriding :meth:`train_step` with calls to :meth:`update_network`:

    .. code-block:: python

        def train_step(self, data, optim_wrapper):
            data = self.data_preprocessor(data, True)
            seen = {}  # the student's update keeps its (detached) outputs for the discriminator's
            log_vars = self.update_network('student', optim_wrapper, partial(self.student_loss, data, seen))
            log_vars.update(self.update_network('discriminator', optim_wrapper, partial(self.disc_loss, seen)))
            return log_vars

    The wrappers' gradient-accumulation counts assume that every network is updated once per iteration.
    """

    trainable_networks: Sequence[str] = ()

    def train_step(self, data: dict, optim_wrapper: OptimWrapperDict) -> Dict[str, Tensor]:
        """Update every network of ``trainable_networks``, in that order, on the same batch.

        Args:
            data (dict): a batch from the dataloader.
            optim_wrapper (OptimWrapperDict): one optimizer wrapper per trainable network.

        Returns:
            dict[str, Tensor]: every network's parsed losses, keys prefixed with the network's name.
        """
        data = self.data_preprocessor(data, True)
        log_vars = {}
        for name in self.trainable_networks:
            log_vars.update(self.update_network(name, optim_wrapper, partial(self.network_loss, name, **data)))
        return log_vars

    def network_loss(self, name: str, inputs, data_samples=None) -> Dict[str, Tensor]:
        """The losses that train network ``name``; by default its own task losses on the batch.

        Args:
            name: one of ``trainable_networks``.
            inputs, data_samples: the preprocessed batch.
        """
        return getattr(self, name)(inputs, data_samples, mode='loss')

    def update_network(self, name: str, optim_wrapper: OptimWrapperDict,
                       compute_losses: Callable[[], Dict[str, Tensor]]) -> Dict[str, Tensor]:
        """One update of network ``name`` on the losses that ``compute_losses()`` returns.

        Args:
            name: one of ``trainable_networks``; its key in ``optim_wrapper``.
            optim_wrapper: the wrappers of all trainable networks.
            compute_losses: computes network ``name``'s dict of losses. Tensors that it reuses from an earlier
                update must be detached: that update's graph is freed.

        Returns:
            dict[str, Tensor]: the parsed losses (their sum as ``'loss'``), keys prefixed ``f'{name}.'``.
        """
        self._check_wrapper(name, optim_wrapper)
        wrapper = optim_wrapper[name]
        with wrapper.optim_context(getattr(self, name)), self._only_trainable(name):
            losses = compute_losses()
        loss, log_vars = self.parse_losses(losses)
        wrapper.update_params(loss)
        return {f'{name}.{key}': value for key, value in log_vars.items()}

    def update_networks_together(self, names: Sequence[str], optim_wrapper: OptimWrapperDict,
                                 compute_losses: Callable[[], Dict[str, Dict[str, Tensor]]]) -> Dict[str, Tensor]:
        """One update of each network of ``names`` on losses computed in one pass, for networks whose losses need
        each other's outputs (CoLAD's pair: the network with the better costs labels both).

        ``compute_losses()`` runs inside every wrapper's ``optim_context`` and returns ``{name: losses}``; each
        network's losses must depend on its own parameters only (what one network hands to another is detached):
        the networks are then updated one after the other, each by its own wrapper.

        Returns:
            dict[str, Tensor]: every network's parsed losses, keys prefixed ``f'{name}.'``.
        """
        for name in names:
            self._check_wrapper(name, optim_wrapper)
        with ExitStack() as stack:
            for name in names:
                stack.enter_context(optim_wrapper[name].optim_context(getattr(self, name)))
            losses = compute_losses()
        log_vars = {}
        for name in names:
            loss, network_log_vars = self.parse_losses(losses[name])
            optim_wrapper[name].update_params(loss)
            log_vars.update({f'{name}.{key}': value for key, value in network_log_vars.items()})
        return log_vars

    def _check_wrapper(self, name: str, optim_wrapper: OptimWrapperDict) -> None:
        if not isinstance(optim_wrapper, OptimWrapperDict) or name not in optim_wrapper:
            raise KeyError(f'{type(self).__name__} updates network {name!r} with its own optimizer: the config '
                           "needs optim_wrapper=dict(constructor='MultiNetworkOptimWrapperConstructor', "
                           f'{name}=dict(optimizer=...), ...) with one entry per network of '
                           f'{list(self.trainable_networks)}')

    @contextmanager
    def _only_trainable(self, name: str) -> Iterator[None]:
        """The other trainable networks' parameters need no gradient meanwhile (frozen ones stay frozen)."""
        others = [
            p for other in self.trainable_networks if other != name for p in getattr(self, other).parameters()
            if p.requires_grad
        ]
        for p in others:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in others:
                p.requires_grad_(True)


@SHARED_MODELS.register_module()
class MultiNetworkModel(MultiNetworkTrainMixin, Deployable, BaseModel):
    """Several registered networks trained side by side, each by its own optimizer and schedule.

    Each network is a submodule named by its key in ``networks`` (its ``state_dict`` prefix) and has an
    entry of that name in the config's ``optim_wrapper`` (built by ``MultiNetworkOptimWrapperConstructor``) and,
    optionally, in ``param_scheduler`` (mmengine's dict form)::

        model = dict(type='MultiNetworkModel', networks=dict(a=dict(type='RetinaNet', ...), b=...),
                     predict_network='a')
        optim_wrapper = dict(constructor='MultiNetworkOptimWrapperConstructor',
                             a=dict(optimizer=dict(type='SGD', lr=0.01)), b=dict(optimizer=...))
        param_scheduler = dict(a=[dict(type='MultiStepLR', milestones=[8, 11])], b=[...])

    By default every network learns from its own task losses on the shared batch, in the order of
    ``networks`` (see :class:`MultiNetworkTrainMixin` for changing that). Validation, testing and export
    use ``predict_network`` alone. Distributed training needs
    ``model_wrapper_cfg=dict(type='MMSeparateDistributedDataParallel')`` (one DDP per network), which
    ``tools/train.py`` sets for a config with ``MultiNetworkOptimWrapperConstructor`` and no wrapper.

    A checkpoint (``--resume``, ``load_from``) must hold the same networks, in the same order and with the
    same shapes: a network renamed, added, reordered or resized in the config since is refused by name
    instead of being loaded in part (mmengine loads leniently and would start that network from scratch).

    Args:
        networks: network name -> model config (or built module). A config is built in the default scope's
            model registry (the runner's ``default_scope``; mmkd's outside a runner) when that registry knows
            its type, else in mmkd's, mmdet's or mmseg's (the first that does), or in the scope that its
            ``_scope_`` key names (``'mmdet'``, ``'mmseg'``, ``'mmkd'``).
        predict_network: the network that predicts in validation and testing and that export ships; by
            default the first of ``networks``.
        also_predict: other networks that predict too, in validation and testing, each into the data samples'
            field ``<name>_pred_instances``, where :class:`~mmkd.evaluation.NetworkMetric` evaluates it: with
            ``val_evaluator=[<metric>, dict(type='NetworkMetric', network=<name>, metric=<metric>)]`` both
            networks are validated in every validation (each prediction costs that network's forward).
        data_preprocessor: the data preprocessor of the batch that all networks share (a config or module);
            by default ``predict_network``'s own.
        init_cfg: initialisation config.
    """

    reserved_names: Tuple[str, ...] = ()  # attributes that a subclass sets after the networks are added

    def __init__(self,
                 networks: Dict[str, Union[dict, nn.Module]],
                 predict_network: Optional[str] = None,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[dict] = None,
                 also_predict: Sequence[str] = ()):
        predict_network = self._predict_network(networks, predict_network)
        also_predict = (also_predict, ) if isinstance(also_predict, str) else tuple(also_predict)
        unknown = [name for name in also_predict if name not in networks]
        if unknown:
            raise KeyError(f'also_predict names {unknown}, which are not networks: {list(networks)}')
        built = {
            name: build_in_scope(cfg, _network_registry(cfg)) if isinstance(cfg, dict) else cfg
            for name, cfg in networks.items()
        }
        if data_preprocessor is None:
            data_preprocessor = built[predict_network].data_preprocessor
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.predict_network = predict_network
        self.also_predict = also_predict
        for name, network in built.items():
            if hasattr(self, name) or name in self.reserved_names:
                raise ValueError(f'networks.{name}: {name!r} is an attribute of {type(self).__name__} already; '
                                 'give this network another name')
            self.add_module(name, network)
        self.trainable_networks = tuple(built)

    @staticmethod
    def _predict_network(networks: dict, predict_network: Optional[str]) -> str:
        if not networks:
            raise ValueError('MultiNetworkModel needs networks=dict(<name>=<model config>, ...), got none')
        predict_network = predict_network or next(iter(networks))
        if predict_network not in networks:
            raise KeyError(f'predict_network={predict_network!r} is not one of the networks {list(networks)}')
        return predict_network

    @classmethod
    def deployable(cls, model_cfg: dict) -> Tuple[str, dict]:
        """(name of ``predict_network``, its model config): the network that export ships."""
        name = cls._predict_network(model_cfg.get('networks'), model_cfg.get('predict_network'))
        return name, model_cfg['networks'][name]

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        """Refuse a checkpoint of other networks before anything is loaded (see the class docstring)."""
        self._check_checkpoint_networks(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _check_checkpoint_networks(self, state_dict: dict, prefix: str) -> None:
        """Raise unless ``state_dict`` (keys under ``prefix``) holds this model's networks, in this order, with
        the shapes of this model's tensors."""
        saved = []
        for key in state_dict:
            if key.startswith(prefix) and '.' in key[len(prefix):]:
                name = key[len(prefix):].split('.', 1)[0]
                if name not in saved:
                    saved.append(name)
        expected = list(self.trainable_networks)
        if saved != expected:
            raise RuntimeError(f'{type(self).__name__}: the checkpoint holds the networks {saved} (in this order), '
                               f'the config {expected}: the networks of a run cannot change when it resumes or '
                               'loads a checkpoint. Restore the networks of the checkpoint in the config, or start '
                               'the changed networks from their own checkpoints (e.g. exported with '
                               'tools/export_student.py --network NAME).')
        own = self.state_dict(prefix=prefix, keep_vars=True)
        resized = [
            f'{key[len(prefix):]}: checkpoint {tuple(value.shape)} vs model {tuple(own[key].shape)}'
            for key, value in state_dict.items()
            if key in own and hasattr(value, 'shape') and tuple(value.shape) != tuple(own[key].shape)
        ]
        if resized:
            more = f' (+{len(resized) - 3} more)' if len(resized) > 3 else ''
            raise RuntimeError(f'{type(self).__name__}: the checkpoint\'s tensors do not fit the networks of the '
                               f'config (was a network changed since the checkpoint?): {"; ".join(resized[:3])}{more}')

    def network(self, name: str) -> nn.Module:
        """Network ``name`` itself, also under ``MMSeparateDistributedDataParallel`` (which wraps each network in
        a DDP that hides its attributes). Call the network (``getattr(self, name)(...)``), not this, for a forward
        pass that trains: only the wrapper's forward synchronises the gradients across ranks."""
        return _unwrap(getattr(self, name))

    @property
    def deployable_network(self) -> nn.Module:
        return self.network(self.predict_network)

    def predict(self, inputs, data_samples=None, **kwargs):
        """``predict_network``'s predictions; those of ``also_predict`` in ``<name>_pred_instances`` fields."""
        for name in self.also_predict:
            if name == self.predict_network:
                continue
            # mmdet / mmseg models write their predictions into the given samples: move each aside
            for sample in self.network(name).predict(inputs, data_samples, **kwargs):
                for field in ('pred_instances', 'pred_sem_seg', 'seg_logits'):
                    if field in sample:
                        sample.set_field(sample.get(field), f'{name}_{field}')
                        delattr(sample, field)
        return self.deployable_network.predict(inputs, data_samples, **kwargs)

    def _forward(self, inputs, data_samples=None, **kwargs):
        return self.deployable_network._forward(inputs, data_samples, **kwargs)

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss':
            return {
                f'{name}.{key}': value
                for name in self.trainable_networks
                for key, value in self.network_loss(name, inputs, data_samples).items()
            }
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self._forward(inputs, data_samples)
        raise RuntimeError(f'Invalid mode "{mode}". Only supports loss, predict and tensor mode')
