from .deployable import Deployable, deployable_of, find_model_class
from .feature_recorder import FeatureRecorder

__all__ = ['Deployable', 'FeatureRecorder', 'deployable_of', 'find_model_class']
