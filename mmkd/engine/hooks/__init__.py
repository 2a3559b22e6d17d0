from .rng_state_hook import RNGStateHook
from .s2sd_feature_distillation_hook import S2SDFeatureDistillationHook
from .safe_checkpoint_hook import SafeCheckpointHook
from .sampler_batch_check_hook import SamplerBatchCheckHook

__all__ = ['RNGStateHook', 'SafeCheckpointHook', 'SamplerBatchCheckHook', 'S2SDFeatureDistillationHook']
