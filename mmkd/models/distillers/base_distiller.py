"""The teacher mechanics shared by every distiller that keeps a fixed teacher."""
from abc import abstractmethod
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.registry import Registry
from torch import Tensor

from mmkd.models.utils import Deployable
from mmkd.utils.build import ConfigType, build_in_scope
from mmkd.utils.teacher import build_teacher
from .distiller_data_preprocessor import DistillerDataPreprocessor


class BaseDistiller(Deployable, BaseModel):
    """A student trained with a frozen teacher, for any task (mmdet detectors, mmseg segmentors, ...).

    The teacher is built from its own config and checkpoint (see :func:`mmkd.utils.build_teacher`)
    and is deliberately *not* a registered submodule: it is absent from ``state_dict()``,
    ``parameters()`` (hence from the optimizer and from DDP) and from saved checkpoints. This class
    makes it follow the student anyway: ``.to()``, ``.cuda()``, ``.half()`` move it, and ``train()``
    leaves it in eval mode. Subclasses run it under ``torch.no_grad()`` on :meth:`teacher_inputs`:
    the same raw images as the student's, normalised the way the teacher's own config says (see
    :class:`DistillerDataPreprocessor`).

    Validation, testing and export use the student alone (``predict`` / ``_forward``, whose arguments
    go to the student unchanged); the student is the deployable network (prefix ``student``).

    Args:
        student: the student model config (or module).
        teacher_cfg: teacher config: file path, ``mmdet::``/``mmseg::`` scoped path, Config or dict.
        teacher_ckpt: teacher checkpoint; ``None`` keeps random weights (tests only), with a warning.
        registry: registry to build both models with.
    """

    def __init__(self,
                 student: Union[dict, nn.Module],
                 teacher_cfg: ConfigType,
                 teacher_ckpt: Optional[str],
                 registry: Registry,
                 init_cfg: Optional[dict] = None):
        student = build_in_scope(student, registry) if isinstance(student, dict) else student
        teacher, teacher_model_cfg = build_teacher(teacher_cfg, teacher_ckpt, registry)
        super().__init__(
            data_preprocessor=DistillerDataPreprocessor(student.data_preprocessor, teacher.data_preprocessor),
            init_cfg=init_cfg)
        self.student = student
        self.teacher_model_cfg = teacher_model_cfg
        self.__dict__['_teacher'] = teacher  # hidden from nn.Module registration on purpose

    @classmethod
    def deployable(cls, model_cfg: dict) -> Tuple[str, dict]:
        """A distiller deploys its student: (``'student'``, ``model_cfg['student']``)."""
        if 'student' not in model_cfg:
            raise KeyError(f'{cls.__name__} config has no student: {sorted(model_cfg)}')
        return 'student', model_cfg['student']

    @property
    def deployable_network(self) -> nn.Module:
        return self.student

    @property
    def teacher(self) -> nn.Module:
        return self.__dict__['_teacher']

    def teacher_inputs(self, inputs: Tensor) -> Tensor:
        """The teacher's (N, C, H, W) batch for the student's (N, C, H, W) batch ``inputs``: the same images
        in the teacher's channel order and normalisation, on the same canvas."""
        return self.data_preprocessor.teacher_inputs(inputs)

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self.teacher._apply(fn, *args, **kwargs)
        return self

    def _set_device(self, device: torch.device) -> None:
        # mmengine's .to() / .cuda() / .cpu() tell every data preprocessor among the children its device; the
        # teacher is no child, and its preprocessor (teacher.test_step, teacher.data_preprocessor(...)) would
        # otherwise keep casting batches to the device it was built on
        super()._set_device(device)
        if isinstance(self.teacher, BaseModel):
            self.teacher._set_device(device)

    def train(self, mode: bool = True) -> 'BaseDistiller':
        super().train(mode)
        self.teacher.train(False)
        return self

    def predict(self, inputs, data_samples=None, **kwargs):
        return self.student.predict(inputs, data_samples, **kwargs)

    def _forward(self, inputs, data_samples=None, **kwargs):
        return self.student._forward(inputs, data_samples, **kwargs)

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self._forward(inputs, data_samples)
        raise RuntimeError(f'Invalid mode "{mode}". Only supports loss, predict and tensor mode')

    @abstractmethod
    def loss(self, inputs, data_samples) -> dict:
        """The student's task losses plus the distillation losses."""
