from .build import UnsafeConfigTextError, build_in_scope, load_config, model_config
from .checkpoint import UntrustedCheckpointError, atomic_write, is_trusted, safe_torch_load, trust_checkpoint
from .distributed import prepare_distributed
from .teacher import build_teacher, load_weights_strictly

__all__ = [
    'UnsafeConfigTextError', 'UntrustedCheckpointError', 'atomic_write', 'is_trusted', 'safe_torch_load',
    'trust_checkpoint', 'build_teacher', 'build_in_scope', 'load_config', 'load_weights_strictly', 'model_config',
    'prepare_distributed'
]
