"""Where mmkd registers its components.

mmkd adds to the registries of the libraries it plugs into, so that a stock mmdet / mmseg config with
``custom_imports=dict(imports=['mmkd'])`` finds every mmkd component by its plain type name:

* detection components (distillers, heads, assigners) go to mmdet's registries;
* segmentation components go to mmseg's;
* components shared by both (losses, hooks) go to mmengine's root registries, which mmdet's and
  mmseg's registries consult when a name is not their own.
"""
from mmdet.registry import MODELS as DET_MODELS
from mmdet.registry import TASK_UTILS as DET_TASK_UTILS
from mmengine.registry import HOOKS, METRICS
from mmengine.registry import MODELS as SHARED_MODELS
from mmseg.registry import MODELS as SEG_MODELS

__all__ = ['DET_MODELS', 'DET_TASK_UTILS', 'SEG_MODELS', 'SHARED_MODELS', 'HOOKS', 'METRICS']
