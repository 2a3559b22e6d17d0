from .lad_head import BatchedLADHead
from .paa_head import BatchedPAAHead, flatten_head_outputs

__all__ = ['BatchedPAAHead', 'BatchedLADHead', 'flatten_head_outputs']
