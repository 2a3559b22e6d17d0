from .feature_recorder import FeatureRecorder

__all__ = ['FeatureRecorder']
