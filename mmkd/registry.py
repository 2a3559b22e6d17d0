"""Where mmkd registers its components.

mmkd adds to the registries of the libraries it plugs into, so that a stock mmdet / mmseg config with
``custom_imports=dict(imports=['mmkd'])`` finds every mmkd component by its plain type name:

* detection components (distillers, heads, assigners, toy detection data) go to mmdet's registries;
* segmentation components go to mmseg's;
* components shared by both (losses, hooks, optimizer-wrapper constructors) go to mmengine's root
  registries, which mmdet's and mmseg's registries consult when a name is not their own;
* components with no host library (the metric-learning module: models, datasets, samplers, metrics,
  transforms) go to mmkd's own child registries of mmengine's roots below, so that a config with
  ``default_scope='mmkd'`` runs through the stock tools.
"""
from mmdet.registry import DATASETS as DET_DATASETS
from mmdet.registry import MODELS as DET_MODELS
from mmdet.registry import TASK_UTILS as DET_TASK_UTILS
from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS, OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as SHARED_MODELS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry
from mmseg.registry import DATASETS as SEG_DATASETS
from mmseg.registry import MODELS as SEG_MODELS

# mmkd's own scope: parts of the metric-learning module and whatever else has no host library
MODELS = Registry('model', parent=SHARED_MODELS, scope='mmkd', locations=['mmkd.models'])
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope='mmkd', locations=['mmkd.datasets'])
DATA_SAMPLERS = Registry('data sampler', parent=MMENGINE_DATA_SAMPLERS, scope='mmkd', locations=['mmkd.datasets'])
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, scope='mmkd', locations=['mmkd.datasets'])
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope='mmkd', locations=['mmkd.evaluation'])

__all__ = [
    'DET_MODELS', 'DET_TASK_UTILS', 'DET_DATASETS', 'SEG_MODELS', 'SEG_DATASETS', 'SHARED_MODELS', 'HOOKS',
    'OPTIM_WRAPPER_CONSTRUCTORS', 'MODELS', 'DATASETS', 'DATA_SAMPLERS', 'TRANSFORMS', 'METRICS'
]
