from .hooks import RNGStateHook
from .optimizers import MultiNetworkOptimWrapperConstructor, MultiNetworkOptimWrapperDict

__all__ = ['RNGStateHook', 'MultiNetworkOptimWrapperConstructor', 'MultiNetworkOptimWrapperDict']
