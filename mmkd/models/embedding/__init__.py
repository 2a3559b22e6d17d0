"""The metric-learning module: image-embedding networks and their distillation."""
from .embedding_distiller import EmbeddingDistiller
from .image_embedder import ImageEmbedder

__all__ = ['ImageEmbedder', 'EmbeddingDistiller']
