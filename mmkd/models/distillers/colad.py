"""CoLAD: two (or more) PAA detectors trained together, the one with the better assignment costs labelling both."""
import os.path as osp
import re
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmdet.models.utils import unpack_gt_instances
from mmengine import dist
from mmengine.config import ConfigDict
from mmengine.optim import OptimWrapperDict
from torch import Tensor

from mmkd.registry import DET_MODELS
from mmkd.utils.build import ConfigType, model_config
from mmkd.utils.teacher import load_weights_strictly
from ..dense_heads import BatchedPAAHead, check_same_anchors, detached, switch_log_vars, switched_label_assignment
from ..multi_network import MultiNetworkModel
from ..task_modules import build_switch
from .lad import stock_paa_network, with_lad_head

_PREPROCESSING = ('mean', 'std', '_channel_conversion', 'pad_size_divisor', 'pad_value')


@DET_MODELS.register_module()
class CoLAD(MultiNetworkModel):
    """Co-learning Label Assignment Distillation (Sec. 3.4 of Nguyen et al., "Improving Object Detection by Label
    Assignment Distillation", WACV 2022).

    Two PAA detectors (none needs to be pretrained) train together on the same batches, each with its own optimizer
    and schedule. At every iteration both predict, the switch criterion (Eq. (3): std/mean or Fisher, see
    :mod:`mmkd.models.task_modules.switch_criteria`) compares the costs each gives to the pre-assigned candidates,
    and the network with the higher rho assigns the labels of both (per batch, image, GT box or GT box and level, as
    the criterion's granularity says); each network then learns its LAD losses on that assignment (mmdet's LAD head:
    focal loss, plain-average GIoU, IoU prediction). The roles are not fixed: the first network of ``networks`` is
    the initial teacher only in that it wins ties (the paper calls the larger or pretrained one the teacher).

    The checkpoint holds every network (prefix = its name) and every optimizer and scheduler; the buffer
    ``switch_units`` (units each network has assigned since the start, summed over the ranks) is the switch's state
    and resumes with them. Validation, testing and export use ``predict_network`` (``tools/test.py --cfg-options
    model.predict_network=<name>`` tests another; ``tools/export_student.py --network <name>`` exports another as a
    stock mmdet PAA detector).

    Args:
        networks: name -> the network's PAA detector: a model config dict, a config file path or an
            ``mmdet::`` scoped path (the file's ``model``). Heads: mmdet's ``PAAHead`` / ``LADHead`` or mmkd's
            batched heads (built as :class:`~mmkd.models.dense_heads.BatchedLADHead`, same weights), or an mmkd
            head built on ``BatchedPAAHead`` (``COPHead``), kept as is. All on the same anchors.
        checkpoints: name -> checkpoint (path or URL) to start that network from (e.g. COCO-pretrained, Table 5);
            networks without one start from their config's initialisation (ImageNet backbones). Loaded strictly
            by :meth:`init_weights`, after that initialisation: a missing file, or weights that do not fit the
            network, raise an error naming the network and the file (an mmkd run's checkpoint gives the network
            that run deploys).
        switch: the switch criterion config (``StdMeanCriterion`` or ``FisherCriterion``); by default std/mean
            per GT box and FPN level, the official code's. None is refused.
        predict_network: the network validated, tested and exported; by default the first.
        gmm_backend: must be ``'torch'`` (the switch needs the batched assignment).
        data_preprocessor: by default ``predict_network``'s; every network must normalise and pad alike (they
            share the batch).
        init_cfg: initialisation config of the pair.
        also_predict: other networks validated and tested too, through
            :class:`~mmkd.evaluation.NetworkMetric` (see :class:`~mmkd.models.MultiNetworkModel`).
    """

    reserved_names = ('switch', 'switch_units', 'network_checkpoints')

    def __init__(self,
                 networks: Dict[str, ConfigType],
                 checkpoints: Optional[Dict[str, str]] = None,
                 switch: Optional[dict] = dict(type='StdMeanCriterion', granularity='gt_level'),
                 predict_network: Optional[str] = None,
                 gmm_backend: str = 'torch',
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[dict] = None,
                 also_predict: Sequence[str] = ()) -> None:
        name = type(self).__name__
        if not isinstance(networks, dict) or len(networks) < 2:
            raise ValueError(f'{name} trains two or more networks together: networks=dict(<name>=<PAA detector '
                             f'config>, <name>=...), got {networks!r}')
        if switch is None:
            raise ValueError(f'{name} needs a switch criterion, e.g. switch=dict(type="StdMeanCriterion")')
        if gmm_backend != 'torch':
            raise ValueError(f"{name}: the dynamic switch needs gmm_backend='torch', got {gmm_backend!r}")
        checkpoints = dict(checkpoints or {})
        unknown = sorted(set(checkpoints) - set(networks))
        if unknown:
            raise KeyError(f'{name}: checkpoints names {unknown}, which are not networks: {list(networks)}')
        for key, path in checkpoints.items():
            if path and not re.match(r'^[a-z+]+://', path) and not osp.isfile(osp.expanduser(path)):
                raise FileNotFoundError(f'{name}: checkpoints.{key} (the checkpoint of network {key}) '
                                        f'{path!r} is not a file')
        configs = {
            key: with_lad_head(self._network_config(cfg, key), f'networks.{key}', gmm_backend)
            for key, cfg in networks.items()
        }
        super().__init__(configs, predict_network, data_preprocessor, init_cfg, also_predict)
        self.network_checkpoints = {key: path for key, path in checkpoints.items() if path}
        self.switch = build_switch(switch)
        heads = [self.head_of(key) for key in self.trainable_networks]
        check_same_anchors(heads, self.trainable_networks, name)
        self._check_same_training(heads)
        self._check_same_preprocessing()
        self.register_buffer('switch_units', torch.zeros(len(networks), dtype=torch.long))

    def init_weights(self) -> None:
        """Every network's own initialisation, then the networks of ``checkpoints`` loaded strictly."""
        super().init_weights()
        for key, path in self.network_checkpoints.items():
            load_weights_strictly(self.network(key), path, f'the checkpoint of network {key} (checkpoints.{key})')

    @staticmethod
    def _network_config(cfg: ConfigType, key: str) -> ConfigDict:
        if isinstance(cfg, dict) and 'type' in cfg:
            return ConfigDict(cfg)
        return model_config(cfg, f'networks.{key}')

    @classmethod
    def deployable(cls, model_cfg: dict) -> Tuple[str, dict]:
        """(``predict_network``, its config as a stock mmdet PAA detector)."""
        key, network = super().deployable(model_cfg)
        return key, stock_paa_network(cls._network_config(network, key))

    def head_of(self, key: str) -> BatchedPAAHead:
        return self.network(key).bbox_head

    def _check_same_training(self, heads: Sequence[BatchedPAAHead]) -> None:
        """One assignment for all: the networks must label alike (topk and the pre-assignment's train_cfg)."""
        ref = self.trainable_networks[0]
        for key, head in zip(self.trainable_networks[1:], heads[1:]):
            if head.topk != heads[0].topk:
                raise ValueError(f'{type(self).__name__}: networks {ref} and {key} assign labels differently: '
                                 f'bbox_head.topk {heads[0].topk} vs {head.topk}')
            if dict(head.train_cfg or {}) != dict(heads[0].train_cfg or {}):
                raise ValueError(f'{type(self).__name__}: networks {ref} and {key} have different train_cfg '
                                 f'(their pre-assignment must be the same): {dict(heads[0].train_cfg or {})} vs '
                                 f'{dict(head.train_cfg or {})}')

    def _check_same_preprocessing(self) -> None:
        ref = self.trainable_networks[0]
        for key in self.trainable_networks[1:]:
            a, b = getattr(self, ref).data_preprocessor, getattr(self, key).data_preprocessor
            for attr in _PREPROCESSING:
                va, vb = getattr(a, attr, None), getattr(b, attr, None)
                same = torch.equal(va, vb) if isinstance(va, Tensor) and isinstance(vb, Tensor) else va == vb
                if not same:
                    raise ValueError(f'{type(self).__name__}: networks {ref} and {key} share the batch, so their '
                                     f'data_preprocessor must agree, but {attr.lstrip("_")} differs: {va} vs {vb}')

    # ------------------------------------------------------------------------------------------------ training
    def co_losses(self, inputs: Tensor, data_samples: list) -> Tuple[Dict[str, dict], dict]:
        """Every network's LAD losses on the switched assignment, and the switch's scalars.

        Returns:
            tuple: ``{network: {loss name: loss}}`` and ``{'switch.rho.<network>': ..., 'switch.share.<network>':
            ...}``.
        """
        batch_gt_instances, batch_gt_instances_ignore, batch_img_metas = unpack_gt_instances(data_samples)
        keys = self.trainable_networks
        heads = [self.head_of(key) for key in keys]
        # through each network's forward (its DDP wrapper's in distributed training, which syncs the gradients)
        outs = [getattr(self, key)(inputs, mode='tensor') for key in keys]
        assignment, decision = switched_label_assignment(heads, [detached(out) for out in outs], self.switch,
                                                         batch_gt_instances, batch_img_metas, batch_gt_instances_ignore)
        if self.training:
            units = decision.teacher[decision.has_candidates]
            assigned = torch.bincount(units, minlength=len(keys)).to(self.switch_units.device)
            dist.all_reduce(assigned)  # summed over the ranks: every rank keeps (and a resume restores) the same state
            self.switch_units += assigned
        losses = {
            key: head.losses_from_assignment(*out, assignment, len(batch_img_metas), iou_weighted_bbox=False)
            for key, head, out in zip(keys, heads, outs)
        }
        return losses, switch_log_vars(decision, keys)

    def train_step(self, data: dict, optim_wrapper: OptimWrapperDict) -> Dict[str, Tensor]:
        """Both networks predict, the switch picks the labels, each network takes one step on its losses."""
        data = self.data_preprocessor(data, True)
        switch_log = {}

        def compute_losses():
            losses, log = self.co_losses(data['inputs'], data['data_samples'])
            switch_log.update(log)
            return losses

        log_vars = self.update_networks_together(self.trainable_networks, optim_wrapper, compute_losses)
        log_vars.update(switch_log)
        return log_vars

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss':
            losses, switch_log = self.co_losses(inputs, data_samples)
            out = {f'{key}.{name}': value for key, network in losses.items() for name, value in network.items()}
            out.update(switch_log)
            return out
        return super().forward(inputs, data_samples, mode)
