"""The metric-learning module: image-embedding networks, their distillation and self-distillation (S2SD)."""
from .embedding_distiller import EmbeddingDistiller
from .image_embedder import ImageEmbedder
from .s2sd import S2SDEmbedder, TargetBranch, cosine_similarities, similarity_kl

__all__ = [
    'ImageEmbedder', 'EmbeddingDistiller', 'S2SDEmbedder', 'TargetBranch', 'cosine_similarities', 'similarity_kl'
]
