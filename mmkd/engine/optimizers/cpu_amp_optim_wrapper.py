"""Automatic mixed precision on a CPU-only machine (``tools/train.py --amp`` without a GPU)."""
from typing import Union

import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper

from mmkd.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(AmpOptimWrapper):
    """mmengine's :class:`AmpOptimWrapper` for a machine without an accelerator.

    mmengine 0.10.7's ``AmpOptimWrapper`` refuses to be built without a GPU / NPU / MLU / MUSA device,
    and its CPU autocast supports bfloat16 only. This wrapper keeps everything else of it (the autocast
    context around the forward pass, gradient clipping, the state dict with a ``loss_scaler`` entry) and
    runs the forward pass under ``torch.autocast('cpu', dtype=torch.bfloat16)``. bfloat16 has float32's
    exponent range, so gradients do not underflow and no loss scaling is done: the scaler is a disabled
    ``torch.amp.GradScaler`` (a pass-through).

    Args:
        loss_scale: accepted for config compatibility with ``AmpOptimWrapper`` (``tools/train.py --amp``
            sets ``'dynamic'``) and ignored: see above.
        dtype: the autocast dtype; only ``'bfloat16'`` (or ``None``, meaning bfloat16) is supported.
        **kwargs: the arguments of :class:`mmengine.optim.OptimWrapper`.
    """

    def __init__(self,
                 loss_scale: Union[str, float, dict] = 'dynamic',
                 dtype: Union[str, torch.dtype, None] = 'bfloat16',
                 **kwargs):
        if dtype not in (None, 'bfloat16', torch.bfloat16):
            raise ValueError(f'CPUAmpOptimWrapper: CPU autocast runs in bfloat16 only, got dtype={dtype!r}')
        # AmpOptimWrapper.__init__ asserts an accelerator; what it would build is set here instead
        OptimWrapper.__init__(self, **kwargs)
        self._scale_update_param = None
        self.loss_scaler = torch.amp.GradScaler('cpu', enabled=False)
        self.cast_dtype = torch.bfloat16
