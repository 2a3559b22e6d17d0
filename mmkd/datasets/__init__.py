from .toy_shapes import CLASSES as TOY_SHAPES_CLASSES
from .toy_shapes import ToyShapesDataset, generate_toy_shapes
from .unlabeled import UnlabeledDetDataset

__all__ = ['ToyShapesDataset', 'UnlabeledDetDataset', 'generate_toy_shapes', 'TOY_SHAPES_CLASSES']
