from .base_distiller import BaseDistiller
from .det_feature_distiller import DetFeatureDistiller

__all__ = ['BaseDistiller', 'DetFeatureDistiller']
