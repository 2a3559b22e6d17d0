from .deployable import Deployable, deployable_of, find_model_class, model_registry_of
from .feature_recorder import FeatureRecorder

__all__ = ['Deployable', 'FeatureRecorder', 'deployable_of', 'find_model_class', 'model_registry_of']
