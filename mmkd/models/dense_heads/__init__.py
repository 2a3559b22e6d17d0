from .cop_head import COPHead
from .lad_head import BatchedLADHead
from .paa_head import BatchedPAAHead, flatten_head_outputs
from .switched_assignment import check_same_anchors, detached, switch_log_vars, switched_label_assignment

__all__ = [
    'BatchedPAAHead', 'BatchedLADHead', 'flatten_head_outputs', 'check_same_anchors', 'detached', 'switch_log_vars',
    'switched_label_assignment', 'COPHead'
]
