from .base_distiller import BaseDistiller
from .colad import CoLAD
from .det_feature_distiller import DetFeatureDistiller
from .distiller_data_preprocessor import DistillerDataPreprocessor
from .lad import LADDistiller, SoLADDistiller

__all__ = [
    'BaseDistiller', 'CoLAD', 'DetFeatureDistiller', 'DistillerDataPreprocessor', 'LADDistiller', 'SoLADDistiller'
]
