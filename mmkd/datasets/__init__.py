from .gta5 import GTA5Dataset
from .retrieval import Cars196Dataset, CUB200Dataset, RetrievalDataset, SOPDataset, ToyRetrievalDataset
from .samplers import ClassBalancedSampler
from .toy_retrieval import generate_toy_retrieval
from .toy_scenes import ToyScenesDataset, generate_toy_scenes
from .toy_shapes import CLASSES as TOY_SHAPES_CLASSES
from .toy_shapes import ToyShapesDataset, generate_toy_shapes
from .transforms import (CorruptImage, CropToBBox, LowResolution, PackEmbeddingInputs, RandomCrop, RandomResizedCrop,
                         TeacherView)
from .two_domain import TwoDomainDataset
from .unlabeled import UnlabeledDetDataset

__all__ = [
    'RetrievalDataset', 'CUB200Dataset', 'Cars196Dataset', 'SOPDataset', 'ToyRetrievalDataset',
    'generate_toy_retrieval', 'ClassBalancedSampler', 'RandomCrop', 'RandomResizedCrop', 'CropToBBox', 'LowResolution',
    'TeacherView', 'PackEmbeddingInputs', 'ToyShapesDataset', 'UnlabeledDetDataset', 'generate_toy_shapes',
    'TOY_SHAPES_CLASSES', 'CorruptImage', 'GTA5Dataset', 'ToyScenesDataset', 'generate_toy_scenes', 'TwoDomainDataset'
]
