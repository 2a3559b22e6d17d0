"""Where mmkd registers its components.

mmkd adds to the registries of the libraries it plugs into, so that a stock mmdet / mmseg config with
``custom_imports=dict(imports=['mmkd'])`` finds every mmkd component by its plain type name:

* detection components (distillers, heads, assigners, toy detection data, the corruption transform of the
  robustness tool) go to mmdet's registries;
* segmentation components go to mmseg's;
* components shared by both (losses, hooks, optimizer wrappers and their constructors, metric wrappers) go to
  mmengine's root registries, which mmdet's and mmseg's registries consult when a name is not their own;
* components with no host library (the metric-learning module: models, datasets, samplers, metrics,
  transforms) go to mmkd's own child registries of mmengine's roots below, so that a config with
  ``default_scope='mmkd'`` runs through the stock tools.
"""
import mmengine.registry as mmengine_registry
from mmdet.registry import DATASETS as DET_DATASETS
from mmdet.registry import MODELS as DET_MODELS
from mmdet.registry import TASK_UTILS as DET_TASK_UTILS
from mmdet.registry import TRANSFORMS as DET_TRANSFORMS
from mmengine.registry import HOOKS
from mmengine.registry import METRICS as SHARED_METRICS
from mmengine.registry import MODELS as SHARED_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, Registry
from mmseg.registry import DATASETS as SEG_DATASETS
from mmseg.registry import MODELS as SEG_MODELS

SCOPE = 'mmkd'

# mmkd's own scope: parts of the metric-learning module and whatever else has no host library. Importing
# mmkd registers every mmkd component (its __init__ imports the subpackages), so that is every registry's location.
MODELS = Registry('model', parent=SHARED_MODELS, scope=SCOPE, locations=[SCOPE])
DATASETS = Registry('dataset', parent=mmengine_registry.DATASETS, scope=SCOPE, locations=[SCOPE])
DATA_SAMPLERS = Registry('data sampler', parent=mmengine_registry.DATA_SAMPLERS, scope=SCOPE, locations=[SCOPE])
TRANSFORMS = Registry('transform', parent=mmengine_registry.TRANSFORMS, scope=SCOPE, locations=[SCOPE])
METRICS = Registry('metric', parent=mmengine_registry.METRICS, scope=SCOPE, locations=[SCOPE])


def _scope_only_children() -> dict:
    """An empty 'mmkd' child for every other root registry of mmengine.

    A Runner with ``default_scope='mmkd'`` builds its loops, hooks, optimizers, visualizer, ... through
    the 'mmkd' child of each root; where there is none, mmengine falls back to the root but logs a warning
    per build. The empty child finds the same components (its parent's, and mmkd's shared ones) silently.
    """
    own = {id(r.parent) for r in (MODELS, DATASETS, DATA_SAMPLERS, TRANSFORMS, METRICS)}
    roots = {
        name: value
        for name, value in vars(mmengine_registry).items()
        if isinstance(value, Registry) and value.parent is None and id(value) not in own
    }
    return {name: Registry(root.name, parent=root, scope=SCOPE) for name, root in roots.items()}


SCOPE_ONLY_REGISTRIES = _scope_only_children()

__all__ = [
    'DET_MODELS', 'DET_TASK_UTILS', 'DET_DATASETS', 'DET_TRANSFORMS', 'SEG_MODELS', 'SEG_DATASETS', 'SHARED_MODELS',
    'SHARED_METRICS', 'HOOKS', 'OPTIM_WRAPPER_CONSTRUCTORS', 'OPTIM_WRAPPERS', 'SCOPE', 'MODELS', 'DATASETS',
    'DATA_SAMPLERS', 'TRANSFORMS', 'METRICS', 'SCOPE_ONLY_REGISTRIES'
]
