"""The teacher mechanics shared by every distiller that keeps a fixed teacher."""
from abc import abstractmethod
from typing import Optional, Union

import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.registry import Registry

from mmkd.utils.build import ConfigType, build_in_scope
from mmkd.utils.teacher import build_teacher


class BaseDistiller(BaseModel):
    """A student trained with a frozen teacher.

    The teacher is built from its own config and checkpoint (see :func:`mmkd.utils.build_teacher`)
    and is deliberately *not* a registered submodule: it is absent from ``state_dict()``,
    ``parameters()`` (hence from the optimizer and from DDP) and from saved checkpoints. This class
    makes it follow the student anyway: ``.to()``, ``.cuda()``, ``.half()`` move it, and ``train()``
    leaves it in eval mode. Subclasses run it under ``torch.no_grad()``.

    Validation, testing and export use the student alone (``predict`` / ``_forward``).

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
        super().__init__(data_preprocessor=student.data_preprocessor, init_cfg=init_cfg)
        self.student = student
        teacher, self.teacher_model_cfg = build_teacher(teacher_cfg, teacher_ckpt, registry)
        self.__dict__['_teacher'] = teacher  # hidden from nn.Module registration on purpose

    @property
    def teacher(self) -> nn.Module:
        return self.__dict__['_teacher']

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self.teacher._apply(fn, *args, **kwargs)
        return self

    def train(self, mode: bool = True) -> 'BaseDistiller':
        super().train(mode)
        self.teacher.train(False)
        return self

    def predict(self, inputs, data_samples=None, rescale: bool = True):
        return self.student.predict(inputs, data_samples, rescale=rescale)

    def _forward(self, inputs, data_samples=None):
        return self.student._forward(inputs, data_samples)

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
