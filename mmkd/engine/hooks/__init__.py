from .rng_state_hook import RNGStateHook
from .safe_checkpoint_hook import SafeCheckpointHook

__all__ = ['RNGStateHook', 'SafeCheckpointHook']
