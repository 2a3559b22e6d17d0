from .rng_state_hook import RNGStateHook
from .safe_checkpoint_hook import SafeCheckpointHook
from .sampler_batch_check_hook import SamplerBatchCheckHook

__all__ = ['RNGStateHook', 'SafeCheckpointHook', 'SamplerBatchCheckHook']
