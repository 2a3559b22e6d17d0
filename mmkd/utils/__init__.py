from .checkpoint import UntrustedCheckpointError, atomic_write, is_trusted, safe_torch_load, trust_checkpoint
from .distributed import prepare_distributed
from .teacher import build_teacher, load_config, load_weights_strictly, model_config

__all__ = [
    'UntrustedCheckpointError', 'atomic_write', 'is_trusted', 'safe_torch_load', 'trust_checkpoint', 'build_teacher',
    'load_config', 'load_weights_strictly', 'model_config', 'prepare_distributed'
]
