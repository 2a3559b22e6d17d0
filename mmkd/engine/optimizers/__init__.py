from .cpu_amp_optim_wrapper import CPUAmpOptimWrapper
from .multi_network_constructor import MultiNetworkOptimWrapperConstructor, MultiNetworkOptimWrapperDict

__all__ = ['MultiNetworkOptimWrapperConstructor', 'MultiNetworkOptimWrapperDict', 'CPUAmpOptimWrapper']
