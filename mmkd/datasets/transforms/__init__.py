from .corruption import CORRUPTION_GROUPS, CORRUPTIONS, CorruptImage
from .embedding_transforms import CropToBBox, LowResolution, RandomCrop, TeacherView
from .formatting import PackEmbeddingInputs
from .random_resized_crop import RandomResizedCrop

__all__ = [
    'CORRUPTION_GROUPS', 'CORRUPTIONS', 'CorruptImage', 'CropToBBox', 'LowResolution', 'PackEmbeddingInputs',
    'RandomCrop', 'RandomResizedCrop', 'TeacherView'
]
