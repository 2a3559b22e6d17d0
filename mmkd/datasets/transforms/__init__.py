from .embedding_transforms import CropToBBox, LowResolution, RandomCrop, TeacherView
from .formatting import PackEmbeddingInputs
from .random_resized_crop import RandomResizedCrop

__all__ = ['CropToBBox', 'LowResolution', 'PackEmbeddingInputs', 'RandomCrop', 'RandomResizedCrop', 'TeacherView']
