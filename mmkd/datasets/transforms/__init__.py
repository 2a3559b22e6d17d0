from .embedding_transforms import CropToBBox, LowResolution, RandomCrop, TeacherView
from .formatting import PackEmbeddingInputs

__all__ = ['CropToBBox', 'LowResolution', 'PackEmbeddingInputs', 'RandomCrop', 'TeacherView']
