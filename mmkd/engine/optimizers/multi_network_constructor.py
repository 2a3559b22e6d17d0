"""One optimizer wrapper per network of a model (mmengine 0.10.7 has no such constructor)."""
import copy
from typing import Dict, Optional

import torch.nn as nn
from mmengine.model import is_model_wrapper
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapperDict

from mmkd.registry import OPTIM_WRAPPER_CONSTRUCTORS


class MultiNetworkOptimWrapperDict(OptimWrapperDict):
    """mmengine's :class:`OptimWrapperDict`, whose wrappers also learn the run's iteration counts.

    The runner calls ``initialize_count_status`` on the dict when training starts or resumes; mmengine's dict
    ignores it, so that a wrapper with ``accumulative_counts > 1`` would neither step on the last, incomplete
    accumulation window nor know the resumed iteration. Here every wrapper gets the counts, as a single wrapper
    does; this assumes that each network is updated once per iteration.

    mmengine's ``MMDistributedDataParallel.train_step`` asks the dict for one ``optim_context``: the error then says
    which model wrapper to use instead.
    """

    def initialize_count_status(self, model: nn.Module, init_counts: int, max_counts: int) -> None:
        for wrapper in self.values():
            wrapper.initialize_count_status(model, init_counts, max_counts)

    def optim_context(self, model: nn.Module):
        """Only a model wrapper's own ``train_step`` asks the dict for a context: say which wrapper to use."""
        raise NotImplementedError(
            f'{type(model).__name__}.train_step asked for one optimizer context for all networks: the model must '
            "run each network's update itself (mmkd.models.MultiNetworkTrainMixin), and distributed training needs "
            "model_wrapper_cfg=dict(type='MMSeparateDistributedDataParallel') in the config")


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class MultiNetworkOptimWrapperConstructor:
    """Build one optimizer wrapper per network of a model, as an :class:`OptimWrapperDict` keyed by network.

    .. code-block:: python

        optim_wrapper = dict(
            constructor='MultiNetworkOptimWrapperConstructor',
            student=dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01, momentum=0.9),
                         paramwise_cfg=dict(norm_decay_mult=0.)),
            discriminator=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4, betas=(0.9, 0.99))))
        param_scheduler = dict(student=[dict(type='PolyLR', power=0.9)], discriminator=[])

    Each entry is built by mmengine's :class:`DefaultOptimWrapperConstructor` on its network alone, so that
    ``paramwise_cfg`` (inside an entry, or at the top level for every entry without its own) and ``clip_grad``,
    ``accumulative_counts`` or ``type='AmpOptimWrapper'`` work as for a single optimizer. A model's networks are
    its ``trainable_networks`` (see :class:`~mmkd.models.MultiNetworkTrainMixin`), or, for another model, its
    direct submodules with trainable parameters. Every network needs an entry; every trainable parameter of
    the model must belong to exactly one network.

    Args:
        optim_wrapper_cfg: network name -> optimizer-wrapper config.
        paramwise_cfg: the ``paramwise_cfg`` of entries that have none.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None):
        for name, cfg in optim_wrapper_cfg.items():
            if not isinstance(cfg, dict):
                raise TypeError(f'optim_wrapper.{name}={cfg!r}: with MultiNetworkOptimWrapperConstructor every key '
                                'of optim_wrapper names a network and holds its optimizer-wrapper config; options '
                                "such as type='AmpOptimWrapper' go into each network's entry")
            if 'optimizer' not in cfg:
                raise KeyError(f'optim_wrapper.{name} has no optimizer: give the network its own, e.g. '
                               f"optim_wrapper.{name}=dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01))")
        self.optim_wrapper_cfg = optim_wrapper_cfg
        self.paramwise_cfg = paramwise_cfg

    def __call__(self, model: nn.Module) -> MultiNetworkOptimWrapperDict:
        model = model.module if is_model_wrapper(model) else model
        networks = self._networks(model)
        kind = type(model).__name__
        for name in self.optim_wrapper_cfg:
            if name not in networks:
                raise KeyError(f'optim_wrapper.{name}: {kind} has no trainable network {name!r}; its networks are '
                               f'{list(networks)}')
        for name in networks:
            if name not in self.optim_wrapper_cfg:
                raise KeyError(f'optim_wrapper has no entry for network {name!r} of {kind}: add '
                               f"optim_wrapper.{name}=dict(type='OptimWrapper', optimizer=dict(...))")
        self._check_each_parameter_in_one_network(model, networks)
        wrappers = {}
        for name, network in networks.items():
            cfg = copy.deepcopy(self.optim_wrapper_cfg[name])
            paramwise_cfg = cfg.pop('paramwise_cfg', self.paramwise_cfg)
            wrappers[name] = DefaultOptimWrapperConstructor(cfg, paramwise_cfg)(network)
            if hasattr(wrappers[name], 'grad_name'):
                # the clipped norm is logged per network: under one name the networks' norms would be averaged
                wrappers[name].grad_name = f'{name}.{wrappers[name].grad_name}'
        return MultiNetworkOptimWrapperDict(**wrappers)

    @staticmethod
    def _networks(model: nn.Module) -> Dict[str, nn.Module]:
        names = getattr(model, 'trainable_networks', None) or [
            name for name, child in model.named_children() if any(p.requires_grad for p in child.parameters())
        ]
        return {name: getattr(model, name) for name in names}

    @staticmethod
    def _check_each_parameter_in_one_network(model: nn.Module, networks: Dict[str, nn.Module]) -> None:
        """Two optimizers stepping one parameter, or none training it, is a configuration mistake."""
        owner = {}
        for name, network in networks.items():
            for p in network.parameters():
                if p.requires_grad and owner.setdefault(id(p), name) != name:
                    raise ValueError(f'networks {owner[id(p)]!r} and {name!r} of {type(model).__name__} share a '
                                     'parameter: both optimizers would update it')
        orphans = [name for name, p in model.named_parameters() if p.requires_grad and id(p) not in owner]
        if orphans:
            raise ValueError(f'{len(orphans)} trainable parameters of {type(model).__name__} are in none of the '
                             f'networks {list(networks)} and would never be trained, first: {orphans[:3]}')
